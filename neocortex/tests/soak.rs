//! A soak test of create/attach/lock/kill cycles, ignored by default.
//!
//! `NEOCORTEX_SOAK_SECS=30 cargo test -p neocortex --test soak -- --ignored` (CI runs it so).
// Linux only: this file counts SysV objects through `/proc/sysvipc`.
#![cfg(target_os = "linux")]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{fork, unique_key, Exit};
use neocortex::{Cortex, Semaphore};

fn objects() -> (BTreeSet<String>, BTreeSet<String>) {
    let rows = |p: &str| -> BTreeSet<String> {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().nth(1).unwrap_or_default().to_owned())
            .collect()
    };
    (rows("/proc/sysvipc/shm"), rows("/proc/sysvipc/sem"))
}

#[test]
#[ignore = "soak test: run with --ignored and NEOCORTEX_SOAK_SECS"]
fn create_attach_lock_kill_cycles_leak_nothing() {
    let secs: u64 = std::env::var("NEOCORTEX_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let key = unique_key("create_attach_lock_kill_cycles");
    let before = objects();
    let end = Instant::now() + Duration::from_secs(secs);
    let (mut cycles, mut kills, mut deaths_seen) = (0u64, 0u64, 0u64);
    while Instant::now() < end {
        let cortex: Cortex<[u64; 64], Semaphore> = Cortex::new_zeroed(key, None).unwrap();
        let children: Vec<_> = (0..3)
            .map(|_| {
                fork(move || {
                    let Ok(c) = Cortex::<[u64; 64], Semaphore>::attach(key) else {
                        return 2;
                    };
                    loop {
                        let Ok(mut g) = c.lock() else { return 3 };
                        g.iter_mut().for_each(|w| *w += 1);
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(5 + cycles % 20));
        for child in children {
            child.signal(libc::SIGKILL);
            assert_eq!(child.wait(), Exit::Signal(libc::SIGKILL));
            kills += 1;
        }
        let mut g = cortex
            .lock_timeout(Duration::from_secs(5))
            .expect("a killed holder never blocks the lock");
        if g.owner_died() {
            deaths_seen += 1;
            g.mark_consistent();
        }
        drop(g);
        drop(cortex);
        cycles += 1;
    }
    eprintln!(
        "soak: {cycles} cycles, {kills} children killed, {deaths_seen} holder deaths reported"
    );
    assert!(cycles > 0);
    assert_eq!(objects(), before, "nothing leaked over {cycles} cycles");
    common::assert_gone(key, &[], &[]);
}

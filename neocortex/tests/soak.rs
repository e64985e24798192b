//! A soak test of create/attach/lock/kill cycles, ignored by default.
//!
//! `NEOCORTEX_SOAK_SECS=30 cargo test -p neocortex --test soak -- --ignored` (CI runs it so).
// Linux only: this file counts SysV objects through `/proc/sysvipc`.
#![cfg(target_os = "linux")]

mod common;

use std::time::{Duration, Instant};

use common::{fork, unique_key, Exit, Made, LOCK_WAIT};
use neocortex::{Cortex, Semaphore};

#[test]
#[ignore = "soak test: run with --ignored and NEOCORTEX_SOAK_SECS"]
fn create_attach_lock_kill_cycles_leak_nothing() {
    let secs: u64 = std::env::var("NEOCORTEX_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let _guard = common::watchdog_for(Duration::from_secs(secs) + common::test_limit());
    let key = unique_key("create_attach_lock_kill_cycles");
    let end = Instant::now() + Duration::from_secs(secs);
    let (mut cycles, mut kills, mut deaths_seen) = (0u64, 0u64, 0u64);
    while Instant::now() < end {
        let cortex: Cortex<[u64; 64], Semaphore> = Cortex::new_zeroed(key, None).unwrap();
        let made = Made::of(&cortex);
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
            .lock_timeout(LOCK_WAIT)
            .expect("a killed holder never blocks the lock");
        if g.owner_died() {
            deaths_seen += 1;
            g.mark_consistent();
        }
        drop(g);
        drop(cortex);
        made.assert_gone();
        cycles += 1;
    }
    eprintln!(
        "soak: {cycles} cycles, {kills} children killed, {deaths_seen} holder deaths reported"
    );
    assert!(cycles > 0);
    // Three children hammer the lock when they are killed: some die holding it. A run that
    // reports no death at all has lost the reporting, not been lucky.
    assert!(
        deaths_seen > 0,
        "{kills} lock-hammering children were killed in {cycles} cycles, and not one holder \
         death was reported"
    );
}

//! A pid-based lock (`Mutex`) refuses an attacher in another pid namespace, where its holder
//! would look dead; a SysV semaphore lock works across pid namespaces.
// Linux only: this file needs pid namespaces (`unshare(CLONE_NEWPID)`) and the Linux-only `Mutex`.
#![cfg(target_os = "linux")]
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: an unexpected error fails the test with its message"
)]

mod common;

use common::{assert_gone, fork, unique_key, Exit};
use neocortex::{Cortex, CortexSync, ErrorKind, Mutex, Semaphore};

/// Attaches to `key` from a grandchild in a new pid namespace, holding the lock if it can;
/// exit 0 attached and locked, 10 refused with InvalidInput, 77 no namespace here.
fn attach_from_another_pid_namespace<L: CortexSync>(key: i32) -> Exit {
    let child = fork(move || {
        // SAFETY: unshare with a plain flag in a forked child; its next child is the first
        // process of the new pid namespace.
        if unsafe { libc::unshare(libc::CLONE_NEWPID) } != 0 {
            return 77;
        }
        let grandchild = fork(move || match Cortex::<u64, L>::attach(key) {
            Ok(c) => match c.lock() {
                Ok(mut g) => {
                    *g += 1;
                    0
                }
                Err(_) => 3,
            },
            Err(e) if e.kind() == ErrorKind::InvalidInput => 10,
            Err(_) => 11,
        });
        match grandchild.wait() {
            Exit::Code(code) => code,
            Exit::Signal(_) => 12,
        }
    });
    child.wait()
}

fn check<L: CortexSync>(name: &str, expected: Exit, value: u64) {
    let key = unique_key(name);
    let cortex: Cortex<u64, L> = Cortex::new(key, 0, None).unwrap();
    let guard = cortex.lock().unwrap();
    if expected == Exit::Code(0) {
        drop(guard);
        let outcome = attach_from_another_pid_namespace::<L>(key);
        if outcome == Exit::Code(77) {
            eprintln!("skipped: no new pid namespace here");
        } else {
            assert_eq!(outcome, expected);
            assert_eq!(cortex.read().unwrap(), value);
        }
    } else {
        // The holder is alive and holding: the other namespace must not take over.
        let outcome = attach_from_another_pid_namespace::<L>(key);
        if outcome == Exit::Code(77) {
            eprintln!("skipped: no new pid namespace here");
        } else {
            assert_eq!(outcome, expected);
        }
        drop(guard);
        assert_eq!(cortex.read().unwrap(), value);
    }
    let id = cortex.segment_id();
    drop(cortex);
    assert_gone(key, &[id], &[]);
}

#[test]
fn a_mutex_refuses_an_attacher_in_another_pid_namespace() {
    check::<Mutex>("mutex_other_pid_namespace", Exit::Code(10), 0);
}

#[test]
fn a_semaphore_works_across_pid_namespaces() {
    check::<Semaphore>("semaphore_other_pid_namespace", Exit::Code(0), 1);
}

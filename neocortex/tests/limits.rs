//! Kernel limits, lowered inside a private IPC namespace so the host is never touched:
//! creation fails with `LimitReached` and a half-made segment is rolled back.
// Linux only: this file lowers kernel limits in a private IPC namespace (`unshare`, `/proc/sys`).
#![cfg(target_os = "linux")]

mod common;

use common::in_private_ipc_namespace;
use neocortex::{Cortex, ErrorKind, Semaphore};

/// Lowers a limit of this IPC namespace; skips the test loudly when the namespace does not
/// let us (a user namespace without the right to its IPC sysctls).
fn lower_limit(path: &str, value: &str) -> bool {
    match std::fs::write(path, value) {
        Ok(()) => true,
        Err(e) => {
            common::skip(&format!("cannot lower {path} in this IPC namespace: {e}"));
            false
        }
    }
}

fn objects_in_this_namespace() -> usize {
    let (segments, sets) = common::namespace_objects();
    segments.len() + sets.len()
}

#[test]
fn too_many_segments_is_limit_reached_and_leaves_nothing() {
    let _guard = common::watchdog();
    in_private_ipc_namespace(|| {
        if !lower_limit("/proc/sys/kernel/shmmni", "2") {
            return;
        }
        let a = Cortex::<u64, Semaphore>::new(1001, 1, None).unwrap();
        let b = Cortex::<u64, Semaphore>::new(1002, 2, None).unwrap();
        let before = objects_in_this_namespace();
        match Cortex::<u64, Semaphore>::new(1003, 3, None) {
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::LimitReached, "{e}");
                assert!(!e.is_dirty(), "{e:?}");
            }
            Ok(_) => panic!("a third segment past shmmni=2"),
        }
        assert_eq!(objects_in_this_namespace(), before, "nothing left");
        drop((a, b));
        assert_eq!(objects_in_this_namespace(), 0, "the owners removed all");
    });
}

#[test]
fn too_many_semaphore_sets_rolls_the_segment_back() {
    let _guard = common::watchdog();
    in_private_ipc_namespace(|| {
        // semmsl semmns semopm semmni: one set in all.
        if !lower_limit("/proc/sys/kernel/sem", "250 32000 32 1") {
            return;
        }
        let a = Cortex::<u64, Semaphore>::new(2001, 1, None).unwrap();
        let before = objects_in_this_namespace();
        match Cortex::<u64, Semaphore>::new(2002, 2, None) {
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::LimitReached, "{e}");
                assert!(!e.is_dirty(), "{e:?}");
                let source = std::error::Error::source(&e).map(ToString::to_string);
                assert!(source.is_some_and(|s| s.starts_with("semget")), "{e}");
            }
            Ok(_) => panic!("a second semaphore set past semmni=1"),
        }
        // The segment made before the semaphore failed was removed again.
        assert_eq!(objects_in_this_namespace(), before, "rolled back");
        assert!(
            neocortex_sys::shm::shmget(2002, 0, 0).is_err(),
            "no segment on the failed key"
        );
        drop(a);
        assert_eq!(objects_in_this_namespace(), 0, "the owner removed all");
    });
}

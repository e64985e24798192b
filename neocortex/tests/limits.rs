//! Kernel limits, lowered inside a private IPC namespace so the host is never touched:
//! creation fails with `LimitReached` and a half-made segment is rolled back.
// Linux only: this file lowers kernel limits in a private IPC namespace (`unshare`, `/proc/sys`).
#![cfg(target_os = "linux")]

mod common;

use common::{fork, Exit};
use neocortex::{Cortex, ErrorKind, Semaphore};

fn write_sysctl(path: &str, value: &str) -> bool {
    std::fs::write(path, value).is_ok()
}

fn objects_in_this_namespace() -> usize {
    ["/proc/sysvipc/shm", "/proc/sysvipc/sem"]
        .iter()
        .map(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .lines()
                .skip(1)
                .count()
        })
        .sum()
}

/// Runs `body` in a child inside a fresh IPC namespace; `None` when the machine does not
/// allow one (not root, or a container without CAP_SYS_ADMIN).
fn in_private_ipc_namespace(body: impl FnOnce() -> i32) -> Option<Exit> {
    let child = fork(|| {
        // SAFETY: unshare with a plain flag, in a forked child that owns its namespaces.
        if unsafe { libc::unshare(libc::CLONE_NEWIPC) } != 0 {
            return 77;
        }
        body()
    });
    match child.wait() {
        Exit::Code(77) => None,
        other => Some(other),
    }
}

#[test]
fn too_many_segments_is_limit_reached_and_leaves_nothing() {
    let outcome = in_private_ipc_namespace(|| {
        if !write_sysctl("/proc/sys/kernel/shmmni", "2") {
            return 10;
        }
        let Ok(a) = Cortex::<u64, Semaphore>::new(1001, 1, None) else {
            return 11;
        };
        let Ok(b) = Cortex::<u64, Semaphore>::new(1002, 2, None) else {
            return 12;
        };
        let before = objects_in_this_namespace();
        match Cortex::<u64, Semaphore>::new(1003, 3, None) {
            Err(e) if e.kind() == ErrorKind::LimitReached && !e.is_dirty() => {}
            Err(_) => return 13,
            Ok(_) => return 14,
        }
        if objects_in_this_namespace() != before {
            return 15;
        }
        drop((a, b));
        if objects_in_this_namespace() != 0 {
            return 16;
        }
        0
    });
    match outcome {
        None => eprintln!("skipped: no private IPC namespace here"),
        Some(exit) => assert_eq!(exit, Exit::Code(0)),
    }
}

#[test]
fn too_many_semaphore_sets_rolls_the_segment_back() {
    let outcome = in_private_ipc_namespace(|| {
        // semmsl semmns semopm semmni: one set in all.
        if !write_sysctl("/proc/sys/kernel/sem", "250 32000 32 1") {
            return 10;
        }
        let Ok(a) = Cortex::<u64, Semaphore>::new(2001, 1, None) else {
            return 11;
        };
        let before = objects_in_this_namespace();
        match Cortex::<u64, Semaphore>::new(2002, 2, None) {
            Err(e) if e.kind() == ErrorKind::LimitReached && !e.is_dirty() => {
                if !e.to_string().contains("semget") {
                    return 12;
                }
            }
            Err(_) => return 13,
            Ok(_) => return 14,
        }
        // The segment made before the semaphore failed was removed again.
        if objects_in_this_namespace() != before {
            return 15;
        }
        if neocortex_sys::shm::shmget(2002, 0, 0).is_ok() {
            return 16;
        }
        drop(a);
        if objects_in_this_namespace() != 0 {
            return 17;
        }
        0
    });
    match outcome {
        None => eprintln!("skipped: no private IPC namespace here"),
        Some(exit) => assert_eq!(exit, Exit::Code(0)),
    }
}

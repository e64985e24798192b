//! Fault injection at every step of creation: a creator killed anywhere leaves nothing that
//! an attacher mistakes for ready, and the next `new` reclaims it; a failed step is
//! `CleanSystem` with nothing left, or `DirtySystem` naming exactly what is left.
//!
//! These tests compare every SysV object before and after, so each runs its body in a
//! private IPC namespace (`common::in_private_ipc_namespace`), where every object is its
//! own: exact whatever else runs on the machine. The failure points are armed only inside
//! those forked children, never in the test process itself.
// Linux only: this file compares the SysV objects in `/proc/sysvipc` before and after.
#![cfg(target_os = "linux")]

mod common;

use std::collections::BTreeSet;

use common::{assert_gone, capture_logs, fork, in_private_ipc_namespace, unique_key, Exit, Made};
use neocortex::{Cortex, CortexError, CortexSync, ErrorKind, Leftover, RwSemaphore, Semaphore};
use neocortex_core::failpoints::{self, Action};
use neocortex_sys::{sem, shm};

/// Segment and semaphore-set ids in this test's private IPC namespace.
fn objects() -> (BTreeSet<i32>, BTreeSet<i32>) {
    let (segments, sets) = common::namespace_objects();
    (segments.into_iter().collect(), sets.into_iter().collect())
}

const KILL_POINTS: [&str; 6] = [
    "create.shmget",
    "create.shmat",
    "create.after_header",
    "create.lock",
    "create.after_lock",
    "create.before_publish",
];

#[test]
fn a_creator_killed_at_every_step_is_never_seen_ready_and_is_reclaimed() {
    let _guard = common::watchdog();
    in_private_ipc_namespace(|| {
        for point in KILL_POINTS {
            let key = unique_key(&format!("a_creator_killed_at::{point}"));
            let before = objects();
            let child = fork(move || {
                failpoints::set(point, Some(Action::Kill));
                let _ = Cortex::<u64, Semaphore>::new(key, 1, None);
                2
            });
            assert_eq!(
                child.wait(),
                Exit::Signal(libc::SIGKILL),
                "{point}: the creator died there"
            );
            match Cortex::<u64, Semaphore>::attach(key) {
                Err(e) if point == "create.shmget" => {
                    assert_eq!(e.kind(), ErrorKind::NotFound, "{point}: {e}")
                }
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::NotInitialized, "{point}: {e}");
                    assert!(
                        e.to_string().contains("died before finishing"),
                        "{point}: {e}"
                    );
                }
                Ok(_) => panic!("{point}: a half-made segment was attached as ready"),
            }
            let cortex: Cortex<u64, Semaphore> =
                Cortex::new(key, 2, None).unwrap_or_else(|e| panic!("{point}: {e}"));
            assert_eq!(cortex.read().unwrap(), 2);
            let made = Made::of(&cortex);
            drop(cortex);
            made.assert_gone();
            assert_eq!(
                objects(),
                before,
                "{point}: the dead creator's objects were all reclaimed"
            );
        }
    });
}

#[test]
fn an_error_at_every_step_is_clean_with_nothing_left() {
    let _guard = common::watchdog();
    in_private_ipc_namespace(|| {
        let cases = [
            ("create.shmget", libc::ENOSPC, ErrorKind::LimitReached),
            ("create.shmat", libc::ENOMEM, ErrorKind::LimitReached),
            ("create.lock", libc::ENOSPC, ErrorKind::LimitReached),
            ("create.lock", libc::EACCES, ErrorKind::PermissionDenied),
        ];
        for (point, errno, kind) in cases {
            let key = unique_key(&format!("an_error_at::{point}::{errno}"));
            let before = objects();
            failpoints::set(point, Some(Action::Errno(errno)));
            let result = Cortex::<u64, Semaphore>::new(key, 1, None);
            failpoints::set(point, None);
            let err = result.expect_err(point);
            assert!(
                matches!(err, CortexError::CleanSystem { .. }),
                "{point}: {err:?}"
            );
            assert_eq!(err.kind(), kind, "{point}: {err}");
            assert_eq!(err.raw_os_error(), Some(errno));
            assert_eq!(objects(), before, "{point}: a clean error left nothing");
            assert_gone(key, &[], &[]);
        }
    });
}

/// Creation fails (a panic at a failure point, or in the user's initialiser) after the
/// lock's semaphore set exists: the rollback removes the set as well as the segment.
/// `sets`: the semaphore sets a segment with lock `L` has (the members set, and the lock's).
fn a_failure_after_the_lock_removes_its_set<L: CortexSync>(lock: &str, sets: usize) {
    for (case, point) in [
        ("panic after the lock", Some("create.after_lock")),
        ("panic before publishing", Some("create.before_publish")),
        ("panic in the initialiser", None),
    ] {
        let key = unique_key(&format!("a_failure_after_the_lock::{lock}::{case}"));
        let before = objects();
        if let Some(point) = point {
            failpoints::set(point, Some(Action::Panic));
        }
        let mut sets_during_init = Vec::new();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Cortex::<u64, L>::new_with(key, None, |v| {
                // In this namespace every set is this creation's.
                sets_during_init = common::namespace_objects().1;
                if point.is_none() {
                    panic!("the initialiser fails");
                }
                *v = 1;
            })
        }));
        if let Some(point) = point {
            failpoints::set(point, None);
        }
        assert!(result.is_err(), "{lock}, {case}: the creation panicked");
        if point != Some("create.after_lock") {
            assert_eq!(
                sets_during_init.len(),
                sets,
                "{lock}, {case}: the members' and the lock's sets existed while initialising"
            );
        }
        for &id in &sets_during_init {
            assert!(
                sem::stat(id).is_err(),
                "{lock}, {case}: semaphore set {id} was left by the rollback"
            );
        }
        assert_eq!(
            objects(),
            before,
            "{lock}, {case}: no segment and no semaphore set left"
        );
        assert_gone(key, &[], &sets_during_init);
    }
}

#[test]
fn a_failure_after_the_lock_is_made_removes_its_semaphore_set() {
    let _guard = common::watchdog();
    in_private_ipc_namespace(|| {
        a_failure_after_the_lock_removes_its_set::<Semaphore>("Semaphore", 1);
        a_failure_after_the_lock_removes_its_set::<neocortex::SysvSemaphore>("SysvSemaphore", 2);
        a_failure_after_the_lock_removes_its_set::<RwSemaphore>("RwSemaphore", 2);
    });
}

#[test]
fn a_failed_rollback_is_dirty_and_names_exactly_what_is_left() {
    let _guard = common::watchdog();
    in_private_ipc_namespace(|| {
        let key = unique_key("a_failed_rollback_is_dirty");
        let before = objects();
        failpoints::set("create.lock", Some(Action::Errno(libc::ENOSPC)));
        failpoints::set("create.rollback_rmid", Some(Action::Errno(libc::EPERM)));
        let result = Cortex::<u64, Semaphore>::new(key, 1, None);
        failpoints::set("create.lock", None);
        failpoints::set("create.rollback_rmid", None);
        let err = result.unwrap_err();
        assert!(err.is_dirty(), "{err:?}");
        let (shm_now, sem_now) = objects();
        let new_segments: Vec<i32> = shm_now.difference(&before.0).copied().collect();
        assert_eq!(sem_now, before.1, "no semaphore set was left");
        assert_eq!(new_segments.len(), 1);
        assert_eq!(
            err.leftovers(),
            &[Leftover::Segment(new_segments[0])],
            "{err}"
        );
        assert!(
            err.to_string()
                .contains(&format!("ipcrm -m {}", new_segments[0])),
            "{err}"
        );
        // A person follows the message.
        // SAFETY: an object this test made (or forged) itself, used by nobody else.
        unsafe { shm::remove(new_segments[0]) }.unwrap();
        assert_eq!(objects(), before);
        assert_gone(key, &new_segments, &[]);
    });
}

#[test]
fn an_owner_drop_that_cannot_remove_is_logged_and_leaves_what_it_says() {
    let _guard = common::watchdog();
    in_private_ipc_namespace(|| {
        let key = unique_key("an_owner_drop_that_cannot_remove");
        let cortex: Cortex<u64, Semaphore> = Cortex::new(key, 1, None).unwrap();
        let made = Made::of(&cortex);
        let shm_id = cortex.segment_id();
        failpoints::set("drop.rmid", Some(Action::Errno(libc::EPERM)));
        let ((), events) = capture_logs(|| drop(cortex));
        failpoints::set("drop.rmid", None);
        let errors: Vec<_> = events
            .iter()
            .filter(|e| e.level == tracing::Level::ERROR)
            .collect();
        assert_eq!(errors.len(), 1, "one error event: {events:?}");
        assert!(
            errors[0].text.contains(&format!("ipcrm -m {shm_id}"))
                && errors[0].text.contains("left system objects behind"),
            "the error names the segment that is left: {}",
            errors[0].text
        );
        assert_eq!(
            shm::shmget(key, 0, 0).unwrap(),
            shm_id,
            "the segment is left, as logged"
        );
        for &set in &made.sets {
            assert!(sem::stat(set).is_err(), "the lock was removed");
        }
        // SAFETY: an object this test made (or forged) itself, used by nobody else.
        unsafe { shm::remove(shm_id) }.unwrap();
        made.assert_gone();
    });
}

/// What `ipcrm` (or systemd's `RemoveIPC=yes`) already took is not an error of the owner's
/// removal: the members set gone from outside, or the segment's `IPC_RMID` answering that
/// it is gone (`EINVAL`, `EIDRM`), still ends in `Ok` and removes the rest.
#[test]
fn an_owner_removal_after_ipcrm_is_ok_and_removes_the_rest() {
    let _guard = common::watchdog();
    in_private_ipc_namespace(|| {
        let key = unique_key("an_owner_removal_after_ipcrm");
        let cortex: Cortex<u64, Semaphore> = Cortex::new(key, 1, None).unwrap();
        let made = Made::of(&cortex);
        assert_eq!(
            made.sets.len(),
            1,
            "a Semaphore segment has its members set only"
        );
        // SAFETY: what `ipcrm -s` does, to this test's own set; the test checks the aftermath.
        unsafe { sem::remove(made.sets[0]) }.unwrap();
        let (result, events) = capture_logs(|| cortex.remove());
        result.unwrap();
        assert!(
            events.iter().all(|e| e.level > tracing::Level::WARN),
            "nothing to warn about: {events:?}"
        );
        made.assert_gone();

        for errno in [libc::EINVAL, libc::EIDRM] {
            let cortex: Cortex<u64, Semaphore> = Cortex::new(key, 1, None).unwrap();
            let made = Made::of(&cortex);
            let shm_id = cortex.segment_id();
            failpoints::set("drop.rmid", Some(Action::Errno(errno)));
            let (result, events) = capture_logs(|| cortex.remove());
            failpoints::set("drop.rmid", None);
            result.unwrap_or_else(|e| panic!("errno {errno}: {e}"));
            assert!(
                events.iter().any(|e| e.level == tracing::Level::WARN
                    && e.text.contains("already removed from outside")),
                "errno {errno}: a warning says so: {events:?}"
            );
            for &set in &made.sets {
                assert!(
                    sem::stat(set).is_err(),
                    "errno {errno}: the members set was removed"
                );
            }
            // The failure point kept the segment; take it as `ipcrm` would have.
            // SAFETY: an object this test made itself, used by nobody else.
            unsafe { shm::remove(shm_id) }.unwrap();
            made.assert_gone();
        }
    });
}

/// A segment removed between attach's lookup and its mapping (`shmat` fails with `EIDRM`, or
/// `EINVAL` once the id is gone) is as good as never there: `NotFound`, saying so. Other
/// `shmat` failures keep their own kind.
#[test]
fn a_segment_removed_while_attaching_is_not_found() {
    let _guard = common::watchdog();
    in_private_ipc_namespace(|| {
        let key = unique_key("a_segment_removed_while_attaching");
        let cortex: Cortex<u64, Semaphore> = Cortex::new(key, 1, None).unwrap();
        for errno in [libc::EIDRM, libc::EINVAL] {
            failpoints::set("attach.shmat", Some(Action::Errno(errno)));
            let result = Cortex::<u64, Semaphore>::attach(key);
            failpoints::set("attach.shmat", None);
            let err = result.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::NotFound, "errno {errno}: {err}");
            assert!(err.to_string().contains("removed meanwhile"), "{err}");
        }
        failpoints::set("attach.shmat", Some(Action::Errno(libc::ENOMEM)));
        let result = Cortex::<u64, Semaphore>::attach(key);
        failpoints::set("attach.shmat", None);
        let err = result.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::LimitReached, "{err}");
        assert!(!err.to_string().contains("removed meanwhile"), "{err}");
        let other: Cortex<u64, Semaphore> = Cortex::attach(key).unwrap();
        assert_eq!(other.read().unwrap(), 1);
        let made = Made::of(&cortex);
        drop((other, cortex));
        made.assert_gone();
    });
}

/// Each way `shmget` can refuse a new segment gets its kind and a next step, and leaves
/// nothing behind; huge pages have their own (a reservation, a group), plain memory its.
#[test]
fn every_shmget_refusal_says_what_to_do() {
    use ErrorKind::{InvalidInput as Invalid, LimitReached as Limit, PermissionDenied as Denied};
    let _guard = common::watchdog();
    in_private_ipc_namespace(|| {
        let key = unique_key("every_shmget_refusal");
        let before = objects();
        // (huge pages, errno, kind, the hint; "" for none of these hints)
        let cases = [
            (false, libc::EINVAL, Invalid, "kernel.shmmax"),
            (false, libc::ENOSPC, Limit, "kernel.shmmni"),
            (false, libc::ENOMEM, Limit, "not enough memory"),
            (false, libc::EACCES, Denied, "the key is taken by"),
            (false, libc::EPERM, Denied, ""),
            (true, libc::ENOMEM, Limit, "no huge pages are free"),
            (true, libc::EPERM, Limit, "vm.hugetlb_shm_group"),
        ];
        for (huge, errno, kind, hint) in cases {
            let builder = neocortex::CortexBuilder::new(1u64).key(key);
            let builder = if huge { builder.huge_pages() } else { builder };
            failpoints::set("create.shmget", Some(Action::Errno(errno)));
            let result = builder.with_default_lock::<Semaphore>();
            failpoints::set("create.shmget", None);
            let err = result.unwrap_err();
            let text = err.to_string();
            assert_eq!(err.kind(), kind, "huge pages {huge}, errno {errno}: {text}");
            assert!(!err.is_dirty(), "{text}");
            assert!(
                text.contains(hint),
                "huge pages {huge}, errno {errno}: {text}"
            );
            for (_, _, _, other) in cases {
                if other != hint && !other.is_empty() {
                    assert!(!text.contains(other), "only its own hint: {text}");
                }
            }
            assert_eq!(objects(), before, "nothing left");
        }
    });
}

/// A rollback that finds the members set already gone (`EINVAL`, `EIDRM`: removed from
/// outside meanwhile) has nothing left to report; one that cannot remove it (`EPERM`)
/// names it.
#[test]
fn a_rollback_names_a_members_set_it_could_not_remove_and_only_that() {
    let _guard = common::watchdog();
    in_private_ipc_namespace(|| {
        let key = unique_key("a_rollback_and_the_members_set");
        let before = objects();
        for errno in [libc::EINVAL, libc::EIDRM, libc::EPERM] {
            failpoints::set("create.lock", Some(Action::Errno(libc::ENOSPC)));
            failpoints::set("create.rollback_members", Some(Action::Errno(errno)));
            let result = Cortex::<u64, Semaphore>::new(key, 1, None);
            failpoints::set("create.lock", None);
            failpoints::set("create.rollback_members", None);
            let err = result.unwrap_err();
            let (shm_now, sem_now) = objects();
            assert_eq!(shm_now, before.0, "errno {errno}: the segment was removed");
            // The failure point kept the set; it is the only new one.
            let sets: Vec<i32> = sem_now.difference(&before.1).copied().collect();
            assert_eq!(sets.len(), 1, "errno {errno}");
            if errno == libc::EPERM {
                assert!(err.is_dirty(), "{err:?}");
                assert_eq!(err.leftovers(), &[Leftover::SemaphoreSet(sets[0])], "{err}");
            } else {
                assert!(!err.is_dirty(), "errno {errno}: nothing to report: {err:?}");
            }
            // SAFETY: an object this test made itself, used by nobody else.
            unsafe { sem::remove(sets[0]) }.unwrap();
            assert_eq!(objects(), before);
        }
    });
}

/// A segment left ready by a creator that detached and exited: stale, for `remove_stale`.
fn orphan(key: i32) -> i32 {
    let child = fork(|| match Cortex::<u64, Semaphore>::new(key, 7, None) {
        Ok(c) => match c.detach() {
            Ok(()) => 0,
            Err(_) => 3,
        },
        Err(_) => 2,
    });
    assert_eq!(child.wait(), Exit::Code(0));
    shm::shmget(key, 0, 0).expect("the orphan's segment")
}

/// Reclaiming a stale segment whose `IPC_RMID` fails keeps it whole (its lock and members
/// set too: it is still usable) and names it; one that finds it already gone from outside
/// (`EIDRM`, `EINVAL`) removes the rest and is done.
#[test]
fn a_reclaim_that_cannot_remove_the_segment_keeps_it_whole() {
    let _guard = common::watchdog();
    in_private_ipc_namespace(|| {
        let key = unique_key("a_reclaim_that_cannot_remove");
        let base = objects();
        let id = orphan(key);
        let before = objects();
        failpoints::set("reclaim.rmid", Some(Action::Errno(libc::EPERM)));
        let result = Cortex::<u64, Semaphore>::remove_stale(key);
        failpoints::set("reclaim.rmid", None);
        let err = result.unwrap_err();
        assert!(err.is_dirty(), "{err:?}");
        assert_eq!(err.leftovers(), &[Leftover::Segment(id)], "{err}");
        assert_eq!(
            objects(),
            before,
            "the segment and its members set are kept"
        );
        let again: Cortex<u64, Semaphore> = Cortex::attach(key).unwrap();
        assert_eq!(again.read().unwrap(), 7, "and still usable");
        drop(again);
        // Its members set removed from outside meanwhile: the rest goes, and that is all.
        let sets: Vec<i32> = objects().1.difference(&base.1).copied().collect();
        assert_eq!(sets.len(), 1);
        // SAFETY: what `ipcrm -s` does, to this test's own set; the test checks the aftermath.
        unsafe { sem::remove(sets[0]) }.unwrap();
        Cortex::<u64, Semaphore>::remove_stale(key).unwrap();
        assert_eq!(objects(), base);

        for errno in [libc::EIDRM, libc::EINVAL] {
            let id = orphan(key);
            failpoints::set("reclaim.rmid", Some(Action::Errno(errno)));
            let result = Cortex::<u64, Semaphore>::remove_stale(key);
            failpoints::set("reclaim.rmid", None);
            result.unwrap_or_else(|e| panic!("errno {errno}: {e}"));
            let (segments, sets) = objects();
            assert_eq!(sets, base.1, "errno {errno}: the members set was removed");
            assert_eq!(
                segments.difference(&base.0).copied().collect::<Vec<_>>(),
                [id],
                "errno {errno}: only the segment that the failure point kept"
            );
            // SAFETY: an object this test made itself, used by nobody else.
            unsafe { shm::remove(id) }.unwrap();
            assert_eq!(objects(), base);
        }
    });
}

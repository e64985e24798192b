//! Unit tests of the error model: messages, kinds, leftovers.

use super::*;

fn sys(errno: Errno) -> OsError {
    SysError {
        call: "shmget",
        errno,
    }
    .os()
}

#[test]
fn errno_classification() {
    let cases = [
        (Errno::ENOENT, ErrorKind::NotFound),
        (Errno::EEXIST, ErrorKind::AlreadyExists),
        (Errno::EACCES, ErrorKind::PermissionDenied),
        (Errno::EPERM, ErrorKind::PermissionDenied),
        (Errno::ENOSPC, ErrorKind::LimitReached),
        (Errno::ENOMEM, ErrorKind::LimitReached),
        (Errno::EIDRM, ErrorKind::LockRemoved),
        (Errno::EINVAL, ErrorKind::InvalidInput),
        (Errno::EAGAIN, ErrorKind::WouldBlock),
        (Errno(libc::EBADF), ErrorKind::Other),
    ];
    for (errno, kind) in cases {
        assert_eq!(ErrorKind::from_raw_os_error(errno.raw()), kind, "{errno:?}");
        assert_eq!(
            CortexError::clean("create segment", 1, sys(errno)).kind(),
            kind
        );
    }
    assert_eq!(ErrorKind::OwnerDied.to_string(), "owner died");
    assert_eq!(ErrorKind::LockRemoved.to_string(), "lock removed");
}

#[test]
fn messages_name_operation_key_and_leftovers_and_leave_the_cause_to_source() {
    let e = CortexError::dirty(
        "remove segment",
        0x2a,
        sys(Errno::EPERM),
        vec![Leftover::Segment(77), Leftover::SemaphoreSet(78)],
    );
    let text = e.to_string();
    assert!(
        text.starts_with("remove segment on key 42 (0x0000002a) failed and left behind"),
        "{text}"
    );
    assert!(
        text.contains("ipcrm -m 77") && text.contains("ipcrm -s 78"),
        "{text}"
    );
    assert!(
        !text.contains("not permitted"),
        "the cause is the source's: {text}"
    );
    assert!(e.is_dirty());
    assert_eq!(e.raw_os_error(), Some(libc::EPERM));
    assert_eq!(e.leftovers().len(), 2);
    let source = std::error::Error::source(&e)
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(
        source.starts_with("shmget failed: Operation not permitted"),
        "{source}"
    );
    // A removal seen in the header has no system call behind it.
    let removed = CortexError::lock_removed(5, None);
    assert_eq!(
        (removed.kind(), removed.raw_os_error()),
        (ErrorKind::LockRemoved, None)
    );
    assert!(std::error::Error::source(&removed).is_none());
    let died = CortexError::OwnerDied { key: 5, pid: -1 };
    assert!(died.to_string().contains("a holder died"), "{died}");
}

#[test]
fn os_errors_come_from_numbers_and_io_errors() {
    let e = OsError::from_io("futex", &std::io::Error::from_raw_os_error(libc::EINTR));
    assert_eq!((e.call(), e.raw_os_error()), ("futex", libc::EINTR));
    assert_eq!(e, OsError::new("futex", libc::EINTR));
    assert!(format!("{e:?}").contains("errno: 4"), "{e:?}");
}

#[test]
fn combine_names_every_leftover() {
    assert!(CortexError::combine([Ok(()), Ok(())]).is_ok());
    let sem = CortexError::dirty(
        "drop",
        1,
        sys(Errno::EPERM),
        vec![Leftover::SemaphoreSet(4)],
    );
    let shm = CortexError::dirty("drop", 1, sys(Errno::EPERM), vec![Leftover::Segment(5)]);
    let e = CortexError::combine([Err(sem), Ok(()), Err(shm)]).unwrap_err();
    assert_eq!(
        e.leftovers(),
        &[Leftover::SemaphoreSet(4), Leftover::Segment(5)]
    );
    assert!(e.is_dirty());
    let clean = CortexError::clean("drop", 1, sys(Errno::EINVAL));
    let e = CortexError::combine([Err(clean)]).unwrap_err();
    assert!(!e.is_dirty());
}

#[test]
fn clean_errors_carry_hints_and_are_not_dirty() {
    let e = CortexError::clean_with_hint(
        "attach",
        5,
        ErrorKind::NotFound,
        sys(Errno::ENOENT),
        "create it first with Cortex::new",
    );
    assert!(!e.is_dirty());
    assert_eq!(
        e.to_string(),
        "attach on key 5 (0x00000005) failed: create it first with Cortex::new"
    );
    assert!(e.leftovers().is_empty());
    assert_eq!(e.key(), 5);
    let t = CortexError::Timeout {
        key: 5,
        after: Duration::from_millis(3),
        waiting_for: "the lock",
    };
    assert_eq!((t.kind(), t.raw_os_error()), (ErrorKind::Timeout, None));
}

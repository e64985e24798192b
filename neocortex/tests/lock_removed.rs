//! A lock removed from outside (`ipcrm`, systemd `RemoveIPC=yes`) is a clean `LockRemoved`,
//! never a panic or a hang.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: an unexpected error fails the test with its message"
)]

mod common;

use std::time::Duration;

use common::{fork, unique_key, Made, Pipe};
use neocortex::{Cortex, CortexSync, ErrorKind, InPlace, Semaphore, SysvSemaphore};
use neocortex_sys::sem;

#[test]
fn every_access_after_ipcrm_is_lock_removed_and_drops_do_not_panic() {
    let _guard = common::watchdog();
    let key = unique_key("every_access_after_ipcrm");
    let owner: Cortex<u64, SysvSemaphore> = Cortex::new(key, 1, None).unwrap();
    let other: Cortex<u64, SysvSemaphore> = Cortex::attach(key).unwrap();
    let made = Made::of(&owner);
    // SAFETY: what `ipcrm -s` does, to the lock's own set; the test checks the aftermath.
    unsafe { sem::remove(owner.raw_lock().set_id()) }.unwrap();
    for err in [
        owner.read().unwrap_err(),
        owner.write(2).unwrap_err(),
        other.lock().map(drop).unwrap_err(),
        other.try_lock().map(drop).unwrap_err(),
        other
            .lock_timeout(Duration::from_millis(10))
            .map(drop)
            .unwrap_err(),
        other.update(|v| *v).unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::LockRemoved, "{err}");
        assert!(!err.is_dirty());
        assert!(err.to_string().contains("removed"), "{err}");
    }
    // A new attacher cannot use it either.
    assert_eq!(
        Cortex::<u64, SysvSemaphore>::attach(key)
            .unwrap_err()
            .kind(),
        ErrorKind::LockRemoved
    );
    drop(other);
    drop(owner); // removes the segment; the missing semaphore is only a warning
    made.assert_gone();
}

/// A waiter blocked on a lock whose semaphore set is removed from outside (`ipcrm -s`):
/// the lock's own set for `SysvSemaphore`, the members set (through which a futex lock's
/// waiters ask about the holder) for `Semaphore`.
fn a_blocked_waiter_is_woken_with_lock_removed<L: CortexSync<Access = InPlace>>(
    name: &str,
    set_of: impl Fn(&Cortex<u64, L>) -> i32,
) {
    let key = unique_key(name);
    let owner: Cortex<u64, L> = Cortex::new(key, 1, None).unwrap();
    let made = Made::of(&owner);
    let guard = owner.lock().unwrap();
    let waiting = Pipe::new();
    let child = fork(|| {
        let Ok(c) = Cortex::<u64, L>::attach(key) else {
            return 2;
        };
        waiting.send(1);
        let code = match c.lock() {
            Err(e) if e.kind() == ErrorKind::LockRemoved => 0,
            Err(_) => 3,
            Ok(_) => 4,
        };
        code
    });
    waiting.recv();
    common::wait_until_waiting_for_lock(child.pid());
    // SAFETY: what `ipcrm -s` does; the test checks the aftermath.
    unsafe { sem::remove(set_of(&owner)) }.unwrap();
    child.expect_success("woken by the removal");
    drop(guard); // releasing a removed lock logs a warning, no panic
    drop(owner);
    made.assert_gone();
}

#[test]
fn a_blocked_sysv_waiter_is_woken_with_lock_removed() {
    let _guard = common::watchdog();
    a_blocked_waiter_is_woken_with_lock_removed::<SysvSemaphore>("blocked_sysv_waiter", |c| {
        c.raw_lock().set_id()
    });
}

#[test]
fn a_blocked_futex_waiter_is_woken_with_lock_removed() {
    let _guard = common::watchdog();
    a_blocked_waiter_is_woken_with_lock_removed::<Semaphore>("blocked_futex_waiter", |c| {
        c.members_set_id()
    });
}

#[test]
#[cfg(target_os = "linux")] // futex sleeps, seen in /proc
fn a_waiter_for_a_change_is_told_when_the_owner_removes_the_segment() {
    let _guard = common::watchdog();
    let key = unique_key("a_waiter_for_a_change_is_told");
    let owner: Cortex<u64, Semaphore> = Cortex::new(key, 1, None).unwrap();
    let made = Made::of(&owner);
    let seen = owner.version();
    let watching = Pipe::new();
    let waiter = fork(|| {
        let mine: Cortex<u64, Semaphore> = Cortex::attach(key).unwrap();
        watching.send(1);
        match mine.wait_for_change(seen, Duration::from_secs(20)) {
            // Woken by the removal, which moved the counter (not by a periodic check).
            Err(e) if e.kind() == ErrorKind::LockRemoved && mine.version() > seen => 0,
            other => {
                common::write_stderr(&format!("the waiter got {other:?}\n"));
                1
            }
        }
    });
    watching.recv();
    common::wait_until_asleep_in(waiter.pid(), &[libc::SYS_futex], "waiting for a change");
    owner.remove().unwrap();
    waiter.expect_success("the waiter saw LockRemoved, not a new version");
    made.assert_gone();
}

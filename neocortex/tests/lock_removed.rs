//! A lock removed from outside (`ipcrm`, systemd `RemoveIPC=yes`) is a clean `LockRemoved`,
//! never a panic or a hang.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: an unexpected error fails the test with its message"
)]

mod common;
#[path = "../examples/custom_lock/spinlock.rs"]
mod spinlock;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::{fork, unique_key, Made, Pipe};
use neocortex::{
    Acquired, Cortex, CortexResult, CortexSync, ErrorKind, InPlace, LockContext, Permission,
    Remaining, RwSemaphore, Semaphore, SysvSemaphore, Wait,
};
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

/// A holder dies holding the lock, the next holder leaves the value unrepaired, then the
/// owner removes the segment: every access of a process still attached is `LockRemoved`
/// (the segment is gone for good), not `OwnerDied` (which asks for a repair that can no
/// longer help), also where the lock itself is still free to take.
fn removal_after_a_holders_death_is_lock_removed<L: CortexSync<Access = InPlace>>(name: &str) {
    let key = unique_key(name);
    let owner: Cortex<u64, L> = Cortex::new(key, 1, None).unwrap();
    let made = Made::of(&owner);
    let attached = Pipe::new();
    let go = Pipe::new();
    let later = fork(|| {
        let Ok(c) = Cortex::<u64, L>::attach(key) else {
            return 2;
        };
        // Locked once: this process has its member token before the removal.
        if c.lock().is_err() {
            return 3;
        }
        attached.send(1);
        go.recv();
        let removed = |r: Result<(), neocortex::CortexError>| matches!(r, Err(e) if e.kind() == ErrorKind::LockRemoved);
        let all = [
            removed(c.read().map(drop)),
            removed(c.lock_timeout(common::LOCK_WAIT).map(drop)),
            removed(c.lock_shared().map(drop)),
            removed(c.update(|v| *v += 1)),
            removed(c.write(3)),
        ];
        if all.iter().all(|&r| r) {
            0
        } else {
            eprintln!("accesses after a holder's death and the removal: {all:?}");
            5
        }
    });
    attached.recv();
    let holding = Pipe::new();
    let holder = fork(|| {
        let Ok(c) = Cortex::<u64, L>::attach(key) else {
            return 2;
        };
        let Ok(_g) = c.lock() else { return 3 };
        holding.send(1);
        common::park()
    });
    holding.recv();
    holder.signal(libc::SIGKILL);
    assert_eq!(holder.wait(), common::Exit::Signal(libc::SIGKILL));
    let guard = owner.lock_timeout(common::LOCK_WAIT).unwrap();
    assert!(guard.owner_died());
    drop(guard); // not repaired
    owner.remove().unwrap();
    go.send(1);
    later.expect_success("LockRemoved for every access, not OwnerDied");
    made.assert_gone();
}

#[test]
fn removal_after_a_holders_death_is_lock_removed_for_every_lock() {
    let _guard = common::watchdog();
    removal_after_a_holders_death_is_lock_removed::<Semaphore>("death_then_removal_semaphore");
    removal_after_a_holders_death_is_lock_removed::<SysvSemaphore>("death_then_removal_sysv");
    removal_after_a_holders_death_is_lock_removed::<RwSemaphore>("death_then_removal_rw");
    removal_after_a_holders_death_is_lock_removed::<spinlock::SpinLock>(
        "death_then_removal_spinlock",
    );
}

neocortex::shm_safe! {
    /// [`Oblivious`]'s word: 0 free, 1 held.
    #[derive(Debug)]
    pub struct FlagState {
        word: AtomicU32,
    }
}

/// A lock that keeps nothing of its own about removal (its `destroy` does nothing, and
/// taking it needs no kernel object): the header's removed mark, which a waiter asks the
/// context about (`is_removed`, as the contract says), is all that tells its users.
#[derive(Debug)]
struct Oblivious;

// SAFETY: exclusion by CAS of the word from 0 to 1 (Acquire) and a store of 0 (Release);
// the word is the only state; no holder of it dies in this test (a dead holder would block
// it: it never takes over); waits honour `Wait`.
unsafe impl CortexSync for Oblivious {
    type Settings = ();
    type State = FlagState;
    type Access = InPlace;
    const KIND: &'static str = "test-oblivious";
    fn permission(_: &()) -> Permission {
        Permission::OwnerOnly
    }
    fn create(_: &LockContext<'_>, _: &FlagState, _: &()) -> CortexResult<Self> {
        Ok(Oblivious)
    }
    fn attach(_: &LockContext<'_>, _: &FlagState) -> CortexResult<Self> {
        Ok(Oblivious)
    }
    fn lock(&self, cx: &LockContext<'_>, state: &FlagState, wait: Wait) -> CortexResult<Acquired> {
        loop {
            if state
                .word
                .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return Ok(Acquired::Released);
            }
            if cx.is_removed() {
                return Err(neocortex::CortexError::lock_removed(cx.key(), None));
            }
            if matches!(wait.remaining(), Remaining::NoWait | Remaining::Expired) {
                return Err(wait.gave_up(cx.key()));
            }
            std::thread::yield_now();
        }
    }
    unsafe fn unlock(&self, _: &LockContext<'_>, state: &FlagState) -> CortexResult<()> {
        state.word.store(0, Ordering::Release);
        Ok(())
    }
    fn destroy(_: &LockContext<'_>, _: &FlagState) -> CortexResult<()> {
        Ok(())
    }
}

/// A holder that panicked left the value unrepaired, then the owner removed the segment;
/// the lock itself is still free to take. A process still attached gets `LockRemoved` from
/// every access: the segment is gone for good, and `OwnerDied` would ask for a repair that
/// can no longer help.
#[test]
fn removal_trumps_an_unrepaired_value_for_a_lock_that_knows_nothing_of_removal() {
    let _guard = common::watchdog();
    let key = unique_key("removal_trumps_unrepaired");
    let owner: Cortex<u64, Oblivious> = Cortex::new(key, 1, None).unwrap();
    let made = Made::of(&owner);
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut guard = owner.lock().unwrap();
        *guard = 2;
        panic!("a holder panics mid-update (this panic is the test's)");
    }));
    assert!(panicked.is_err());
    assert_eq!(owner.read().unwrap_err().kind(), ErrorKind::OwnerDied);
    // A lock that does not say who holds it is reported as naming nobody.
    let oblivious = [neocortex::inspect::LockKind::of::<Oblivious>()];
    let info = neocortex::inspect::segment_with(key, &oblivious).unwrap();
    assert_eq!(info.neocortex.unwrap().holder, None);
    let attached = Pipe::new();
    let go = Pipe::new();
    let later = fork(|| {
        let Ok(c) = Cortex::<u64, Oblivious>::attach(key) else {
            return 2;
        };
        attached.send(1);
        go.recv();
        let removed = |r: Result<(), neocortex::CortexError>| matches!(r, Err(e) if e.kind() == ErrorKind::LockRemoved);
        let all = [
            removed(c.read().map(drop)),
            removed(c.lock().map(drop)),
            removed(c.lock_shared().map(drop)),
            removed(c.update(|v| *v += 1)),
            removed(c.write(3)),
        ];
        if all.iter().all(|&r| r) {
            0
        } else {
            eprintln!("accesses after the removal: {all:?}");
            5
        }
    });
    attached.recv();
    owner.remove().unwrap();
    go.send(1);
    later.expect_success("LockRemoved for every access, not OwnerDied");
    made.assert_gone();
}

/// A waiter of a lock whose only word on removal is the context's `is_removed` leaves with
/// `LockRemoved` when the owner removes the segment, while the holder still holds it.
#[test]
fn a_waiter_that_asks_the_context_leaves_on_removal() {
    let _guard = common::watchdog();
    let key = unique_key("a_waiter_that_asks_the_context");
    let owner: Cortex<u64, Oblivious> = Cortex::new(key, 1, None).unwrap();
    let made = Made::of(&owner);
    let holding = Pipe::new();
    let holder = fork(|| {
        let Ok(c) = Cortex::<u64, Oblivious>::attach(key) else {
            return 2;
        };
        let Ok(_g) = c.lock() else { return 3 };
        holding.send(1);
        common::park()
    });
    holding.recv();
    let waiter = fork(|| {
        let Ok(c) = Cortex::<u64, Oblivious>::attach(key) else {
            return 2;
        };
        let code = match c.lock() {
            Err(e) if e.kind() == ErrorKind::LockRemoved => 0,
            Err(_) => 3,
            Ok(_) => 4,
        };
        code
    });
    common::wait_until_spinning(waiter.pid());
    owner.remove().unwrap();
    assert_eq!(
        waiter.wait_timeout(common::LOCK_WAIT),
        common::Exit::Code(0),
        "the waiter left with LockRemoved"
    );
    drop(holder);
    made.assert_gone();
}

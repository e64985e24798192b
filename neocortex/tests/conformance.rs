//! One lock conformance suite, run across processes for every lock.
//!
//! Each case is a generic function over the lock type; the `conformance!` macro instantiates
//! all of them for one lock.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: an unexpected error fails the test with its message"
)]

mod common;
#[path = "../examples/custom_lock/spinlock.rs"]
mod spinlock;

use std::time::{Duration, Instant};

use common::{assert_lock_free, fork, park, unique_key, Exit, Made, Pipe, LOCK_WAIT};
use neocortex::{Cortex, CortexSync, ErrorKind, InPlace, ShmSafe};

type Counter<L> = Cortex<u64, L>;

/// How a test learns that a child now waits for the lock: asleep in the kernel for the
/// kernel-backed locks, burning CPU for the example spinlock.
type WaitingCheck = fn(libc::pid_t);

/// Every lock in this suite: the leak oracle asks it for its kernel objects.
pub trait Lock: CortexSync<Access = InPlace> {}
impl<L: CortexSync<Access = InPlace>> Lock for L {}

/// Drops the owner's handle and checks that its segment and semaphore sets are gone.
fn finish<T: ShmSafe, L: Lock>(cortex: Cortex<T, L>) {
    let made = Made::of(&cortex);
    drop(cortex);
    made.assert_gone();
}

/// Four processes each add 20 000 under the lock with a read-modify-write that would lose
/// updates without exclusion.
pub fn four_processes_lose_no_update<L: Lock>(name: &str) {
    const PER_CHILD: u64 = 20_000;
    let key = unique_key(name);
    let cortex: Counter<L> = Cortex::new(key, 0, None).unwrap();
    let start = Pipe::new();
    let children: Vec<_> = (0..4)
        .map(|_| {
            fork(|| {
                let Ok(c) = Counter::<L>::attach(key) else {
                    return 2;
                };
                start.recv();
                for i in 0..PER_CHILD {
                    let Ok(mut g) = c.lock() else { return 3 };
                    let v = *g;
                    if i % 64 == 0 {
                        std::thread::yield_now();
                    }
                    *g = v + 1;
                }
                0
            })
        })
        .collect();
    start.release(4);
    for child in children {
        child.expect_success("add under the lock");
    }
    assert_eq!(cortex.read().unwrap(), 4 * PER_CHILD);
    finish(cortex);
}

/// Dropping a guard releases the lock; so does unwinding out of a panic, which also marks
/// the value as possibly half-written until it is repaired.
pub fn release_on_drop_and_on_panic<L: Lock>(name: &str) {
    let key = unique_key(name);
    let cortex: Counter<L> = Cortex::new(key, 0, None).unwrap();
    drop(cortex.lock().unwrap());
    let child = fork(move || {
        let Ok(c) = Counter::<L>::attach(key) else {
            return 2;
        };
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut g = c.lock().unwrap();
            *g = 13;
            panic!("in the critical section");
        }));
        if panicked.is_ok() {
            return 3;
        }
        0
    });
    child.expect_success("panic holding the lock");
    let mut guard = cortex.try_lock().unwrap().expect("released by unwinding");
    assert!(
        guard.owner_died(),
        "a panic inside the critical section is reported"
    );
    assert_eq!(*guard, 13);
    *guard = 0;
    guard.mark_consistent();
    drop(guard);
    assert!(
        !cortex.lock_timeout(LOCK_WAIT).unwrap().owner_died(),
        "repaired"
    );
    assert_lock_free(&cortex, "before an untimed access");
    assert_eq!(cortex.read().unwrap(), 0);
    finish(cortex);
}

/// A holder SIGKILLed mid-update: the next acquire succeeds and reports it; until the value
/// is marked consistent every guard reports it and by-value reads refuse it.
pub fn holder_killed_mid_update<L: Lock>(name: &str) {
    let key = unique_key(name);
    let cortex: Counter<L> = Cortex::new(key, 100, None).unwrap();
    let holding = Pipe::new();
    let child = fork(|| {
        let Ok(c) = Counter::<L>::attach(key) else {
            return 2;
        };
        let Ok(mut g) = c.lock() else { return 3 };
        *g = 101; // half of an update
        holding.send(1);
        park()
    });
    holding.recv();
    let child_pid = child.pid();
    child.signal(libc::SIGKILL);
    assert_eq!(child.wait(), Exit::Signal(libc::SIGKILL));
    // The very first access after the death, a shared one, already knows. Timed: a lock
    // that does not recover from a dead holder fails the test instead of hanging it.
    let shared = cortex.lock_shared_timeout(LOCK_WAIT).unwrap();
    assert!(
        shared.owner_died(),
        "the first (shared) access reports the death"
    );
    drop(shared);
    assert_lock_free(&cortex, "before an untimed access");
    let err = cortex.read().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OwnerDied, "{err}");
    let guard = cortex.lock_timeout(LOCK_WAIT).unwrap();
    assert!(guard.owner_died());
    assert_eq!(guard.dead_owner_pid(), Some(child_pid));
    assert_eq!(*guard, 101, "the half-written value is there to repair");
    drop(guard);
    assert_lock_free(&cortex, "before an untimed access");
    let err = cortex.read().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OwnerDied, "{err}");
    assert_lock_free(&cortex, "before an untimed access");
    assert_eq!(
        cortex.update(|v| *v).unwrap_err().kind(),
        ErrorKind::OwnerDied
    );
    let mut guard = cortex.lock_timeout(LOCK_WAIT).unwrap();
    assert!(guard.owner_died(), "still reported until repaired");
    *guard = 100;
    guard.mark_consistent();
    drop(guard);
    assert!(!cortex.lock_timeout(LOCK_WAIT).unwrap().owner_died());
    assert_lock_free(&cortex, "before an untimed access");
    assert_eq!(cortex.read().unwrap(), 100);
    finish(cortex);
}

/// A holder SIGKILLed mid-update, and the first access after it is an exclusive one: it
/// must already report the death (the shared path is not the only one that records it).
pub fn holder_killed_then_first_access_exclusive<L: Lock>(name: &str) {
    let key = unique_key(name);
    let cortex: Counter<L> = Cortex::new(key, 100, None).unwrap();
    let holding = Pipe::new();
    let child = fork(|| {
        let Ok(c) = Counter::<L>::attach(key) else {
            return 2;
        };
        let Ok(mut g) = c.lock() else { return 3 };
        *g = 101; // half of an update
        holding.send(1);
        park()
    });
    holding.recv();
    let child_pid = child.pid();
    child.signal(libc::SIGKILL);
    assert_eq!(child.wait(), Exit::Signal(libc::SIGKILL));
    let mut guard = cortex
        .lock_timeout(LOCK_WAIT)
        .expect("a killed holder never blocks the lock");
    assert!(
        guard.owner_died(),
        "the first access after the death, an exclusive one, reports it"
    );
    assert_eq!(guard.dead_owner_pid(), Some(child_pid));
    assert_eq!(*guard, 101);
    *guard = 100;
    guard.mark_consistent();
    drop(guard);
    let guard = cortex.lock_timeout(LOCK_WAIT).unwrap();
    assert!(!guard.owner_died(), "repaired");
    drop(guard);
    assert_lock_free(&cortex, "before an untimed access");
    assert_eq!(cortex.read().unwrap(), 100);
    finish(cortex);
}

/// `write()` replaces the whole value, so it repairs a value a dead holder left.
pub fn write_repairs_after_owner_death<L: Lock>(name: &str) {
    let key = unique_key(name);
    let cortex: Counter<L> = Cortex::new(key, 1, None).unwrap();
    let child = fork(move || {
        let Ok(c) = Counter::<L>::attach(key) else {
            return 2;
        };
        let Ok(g) = c.lock() else { return 3 };
        std::mem::forget(g);
        // SAFETY: ends the child at once, still holding the lock.
        unsafe { libc::_exit(0) }
    });
    child.expect_success("exit holding the lock");
    // Timed first: a lock that stays taken after its holder's exit fails here instead of
    // hanging in `write`.
    let probe = cortex.lock_timeout(LOCK_WAIT).unwrap();
    assert!(probe.owner_died());
    drop(probe);
    assert_lock_free(&cortex, "before an untimed access");
    cortex.write(2).unwrap();
    assert_lock_free(&cortex, "before an untimed access");
    assert_eq!(cortex.read().unwrap(), 2);
    finish(cortex);
}

/// While another process holds the lock: `try_lock` is `None` at once, and `lock_timeout`
/// gives up with `Timeout`, never before the timeout.
pub fn try_and_timeout_while_held<L: Lock>(name: &str) {
    let key = unique_key(name);
    let cortex: Counter<L> = Cortex::new(key, 0, None).unwrap();
    let holding = Pipe::new();
    let release = Pipe::new();
    let child = fork(|| {
        let Ok(c) = Counter::<L>::attach(key) else {
            return 2;
        };
        let Ok(g) = c.lock() else { return 3 };
        holding.send(1);
        release.recv();
        drop(g);
        0
    });
    holding.recv();
    assert!(cortex.try_lock().unwrap().is_none());
    assert!(
        cortex.try_lock_shared().unwrap().is_none(),
        "no reader while a writer holds it"
    );
    for timeout in [Duration::ZERO, Duration::from_millis(200)] {
        let start = Instant::now();
        let err = cortex.lock_timeout(timeout).unwrap_err();
        let waited = start.elapsed();
        assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
        assert_eq!(err.key(), key, "the error names the segment's key: {err}");
        assert!(
            waited >= timeout,
            "gave up after {waited:?}, before {timeout:?}"
        );
        assert!(err.to_string().contains(&format!("{timeout:?}")), "{err}");
    }
    release.send(1);
    child.expect_success("hold then release");
    assert!(cortex.try_lock().unwrap().is_some());
    finish(cortex);
}

/// On a FREE lock, every non-blocking or timed acquire succeeds, a zero timeout included:
/// an expired deadline still gets its one attempt (as `pthread_mutex_timedlock` does).
pub fn zero_timeout_on_a_free_lock_succeeds<L: Lock>(name: &str) {
    let key = unique_key(name);
    let cortex: Counter<L> = Cortex::new(key, 0, None).unwrap();
    for round in 0..3 {
        for timeout in [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::from_millis(200),
        ] {
            let guard = cortex
                .lock_timeout(timeout)
                .unwrap_or_else(|e| panic!("round {round}: lock_timeout({timeout:?}): {e}"));
            drop(guard);
            let guard = cortex
                .lock_shared_timeout(timeout)
                .unwrap_or_else(|e| panic!("round {round}: lock_shared_timeout({timeout:?}): {e}"));
            drop(guard);
        }
        assert!(
            cortex.try_lock().unwrap().is_some(),
            "try_lock on a free lock"
        );
        assert!(
            cortex.try_lock_shared().unwrap().is_some(),
            "try_lock_shared on a free lock"
        );
        // And from another process, which has never touched the lock before.
        let child = fork(move || {
            let Ok(c) = Counter::<L>::attach(key) else {
                return 2;
            };
            match c.lock_timeout(Duration::ZERO) {
                Ok(mut g) => *g += 1,
                Err(_) => return 3,
            }
            let code = match c.lock_shared_timeout(Duration::ZERO) {
                Ok(_) => 0,
                Err(_) => 4,
            };
            code
        });
        child.expect_success("zero timeouts on a free lock");
    }
    assert_eq!(cortex.read().unwrap(), 3);
    finish(cortex);
}

/// A waiter that is stopped and continued (which interrupts its wait) still gets the lock.
pub fn stopped_and_continued_waiter_gets_the_lock<L: Lock>(
    name: &str,
    waiting_for_lock: WaitingCheck,
) {
    let key = unique_key(name);
    let cortex: Counter<L> = Cortex::new(key, 0, None).unwrap();
    let guard = cortex.lock().unwrap();
    let waiting = Pipe::new();
    let child = fork(|| {
        let Ok(c) = Counter::<L>::attach(key) else {
            return 2;
        };
        waiting.send(1);
        // One waiter without a timeout, then one with.
        match c.lock() {
            Ok(mut g) => *g += 1,
            Err(_) => return 3,
        }
        match c.lock_timeout(Duration::from_secs(20)) {
            Ok(mut g) => *g += 1,
            Err(_) => return 4,
        }
        0
    });
    waiting.recv();
    waiting_for_lock(child.pid());
    child.signal(libc::SIGSTOP);
    common::wait_until_stopped(child.pid());
    child.signal(libc::SIGCONT);
    // Back to waiting, not gone off with an error.
    waiting_for_lock(child.pid());
    drop(guard);
    child.expect_success("wait through SIGSTOP/SIGCONT");
    assert_eq!(cortex.read().unwrap(), 2);
    finish(cortex);
}

/// A waiter killed while waiting leaves the lock as it was.
pub fn waiter_killed_while_waiting<L: Lock>(name: &str, waiting_for_lock: WaitingCheck) {
    let key = unique_key(name);
    let cortex: Counter<L> = Cortex::new(key, 0, None).unwrap();
    let guard = cortex.lock().unwrap();
    let waiting = Pipe::new();
    let child = fork(|| {
        let Ok(c) = Counter::<L>::attach(key) else {
            return 2;
        };
        waiting.send(1);
        let _g = c.lock();
        3
    });
    waiting.recv();
    waiting_for_lock(child.pid());
    child.signal(libc::SIGKILL);
    assert_eq!(child.wait(), Exit::Signal(libc::SIGKILL));
    drop(guard);
    let next = fork(move || {
        let Ok(c) = Counter::<L>::attach(key) else {
            return 2;
        };
        let code = match c.lock_timeout(LOCK_WAIT) {
            Ok(g) if !g.owner_died() => 0,
            Ok(_) => 3,
            Err(_) => 4,
        };
        code
    });
    next.expect_success("lock after a killed waiter");
    // And still exclusive: held here, refused there.
    let _held = cortex.lock_timeout(LOCK_WAIT).unwrap();
    let probe = fork(move || {
        let Ok(c) = Counter::<L>::attach(key) else {
            return 2;
        };
        let code = match c.try_lock() {
            Ok(None) => 0,
            _ => 3,
        };
        code
    });
    probe.expect_success("still exclusive");
    drop(_held);
    finish(cortex);
}

/// For locks with shared access: two processes hold shared guards at once, and a writer
/// waits until both are gone.
pub fn shared_holders_coexist_and_a_writer_waits<L: Lock>(
    name: &str,
    waiting_for_lock: WaitingCheck,
) {
    assert!(L::SHARED, "only for locks with shared access");
    let key = unique_key(name);
    let cortex: Counter<L> = Cortex::new(key, 5, None).unwrap();
    let holding = Pipe::new();
    let release = Pipe::new();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            fork(|| {
                let Ok(c) = Counter::<L>::attach(key) else {
                    return 2;
                };
                let Ok(g) = c.lock_shared_timeout(Duration::from_secs(10)) else {
                    return 3;
                };
                holding.send(1);
                release.recv();
                if *g != 5 {
                    return 4;
                }
                drop(g);
                0
            })
        })
        .collect();
    // Both readers hold their shared guards at the same time.
    holding.recv();
    holding.recv();
    // A third reader gets in too; a writer does not.
    assert!(cortex.try_lock_shared().unwrap().is_some(), "readers share");
    assert!(
        cortex.try_lock().unwrap().is_none(),
        "a writer waits for readers"
    );
    let err = cortex.lock_timeout(Duration::from_millis(100)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    let writer = fork(move || {
        let Ok(c) = Counter::<L>::attach(key) else {
            return 2;
        };
        let code = match c.lock_timeout(Duration::from_secs(20)) {
            Ok(mut g) if *g == 5 => {
                *g = 6;
                0
            }
            Ok(_) => 3,
            Err(_) => 4,
        };
        code
    });
    waiting_for_lock(writer.pid());
    release.release(2);
    for reader in readers {
        reader.expect_success("hold shared");
    }
    writer.expect_success("write after the readers");
    assert_eq!(cortex.read().unwrap(), 6);
    finish(cortex);
}

/// The owner removes the segment while others are attached: a waiter blocked in `lock()`
/// is woken with `LockRemoved`, and every later access of an attached process fails with
/// `LockRemoved` (nobody keeps writing an orphan unknowingly).
pub fn removed_while_attached_is_lock_removed<L: Lock>(name: &str, waiting_for_lock: WaitingCheck) {
    let key = unique_key(name);
    let owner: Counter<L> = Cortex::new(key, 0, None).unwrap();
    let made = Made::of(&owner);
    let holding = Pipe::new();
    let holder = fork(|| {
        let Ok(c) = Counter::<L>::attach(key) else {
            return 2;
        };
        let Ok(_g) = c.lock() else { return 3 };
        holding.send(1);
        park()
    });
    holding.recv();
    let waiter = fork(move || {
        let Ok(c) = Counter::<L>::attach(key) else {
            return 2;
        };
        let code = match c.lock() {
            Err(e) if e.kind() == ErrorKind::LockRemoved => 0,
            Err(_) => 3,
            Ok(_) => 4,
        };
        code
    });
    waiting_for_lock(waiter.pid());
    let attached = Pipe::new();
    let go = Pipe::new();
    let later = fork(|| {
        let Ok(c) = Counter::<L>::attach(key) else {
            return 2;
        };
        attached.send(1);
        go.recv();
        let removed = |r: Result<(), neocortex::CortexError>| matches!(r, Err(e) if e.kind() == ErrorKind::LockRemoved);
        let all = [
            removed(c.read().map(drop)),
            removed(c.write(1)),
            removed(c.update(|v| *v += 1)),
            removed(c.try_lock().map(drop)),
            removed(c.lock_timeout(LOCK_WAIT).map(drop)),
            removed(c.lock_shared().map(drop)),
        ];
        if all.iter().all(|&r| r) {
            0
        } else {
            eprintln!("accesses after removal: {all:?}");
            5
        }
    });
    attached.recv();
    owner.remove().unwrap();
    waiter.expect_success("a blocked waiter is woken by the removal");
    go.send(1);
    later.expect_success("every access after the removal is LockRemoved");
    drop(holder);
    made.assert_gone();
}

macro_rules! conformance {
    ($name:ident, $lock:ty, $waiting:expr) => {
        mod $name {
            fn key_name(case: &str) -> String {
                format!("{}::{case}", stringify!($name))
            }

            #[test]
            fn holder_killed_then_first_access_exclusive() {
                let _guard = crate::common::watchdog();
                super::holder_killed_then_first_access_exclusive::<$lock>(&key_name(
                    "killed_holder_exclusive",
                ));
            }

            #[test]
            fn zero_timeout_on_a_free_lock_succeeds() {
                let _guard = crate::common::watchdog();
                super::zero_timeout_on_a_free_lock_succeeds::<$lock>(&key_name("zero_timeout"));
            }

            #[test]
            fn four_processes_lose_no_update() {
                let _guard = crate::common::watchdog();
                super::four_processes_lose_no_update::<$lock>(&key_name("no_lost_update"));
            }

            #[test]
            fn release_on_drop_and_on_panic() {
                let _guard = crate::common::watchdog();
                super::release_on_drop_and_on_panic::<$lock>(&key_name("release"));
            }

            #[test]
            fn holder_killed_mid_update() {
                let _guard = crate::common::watchdog();
                super::holder_killed_mid_update::<$lock>(&key_name("killed_holder"));
            }

            #[test]
            fn write_repairs_after_owner_death() {
                let _guard = crate::common::watchdog();
                super::write_repairs_after_owner_death::<$lock>(&key_name("write_repairs"));
            }

            #[test]
            fn try_and_timeout_while_held() {
                let _guard = crate::common::watchdog();
                super::try_and_timeout_while_held::<$lock>(&key_name("try_timeout"));
            }

            #[test]
            fn stopped_and_continued_waiter_gets_the_lock() {
                let _guard = crate::common::watchdog();
                super::stopped_and_continued_waiter_gets_the_lock::<$lock>(
                    &key_name("sigstop"),
                    $waiting,
                );
            }

            #[test]
            fn removed_while_attached_is_lock_removed() {
                let _guard = crate::common::watchdog();
                super::removed_while_attached_is_lock_removed::<$lock>(
                    &key_name("removed_while_attached"),
                    $waiting,
                );
            }

            #[test]
            fn waiter_killed_while_waiting() {
                let _guard = crate::common::watchdog();
                super::waiter_killed_while_waiting::<$lock>(&key_name("killed_waiter"), $waiting);
            }
        }
    };
}

conformance!(
    semaphore,
    neocortex::Semaphore,
    crate::common::wait_until_waiting_for_lock
);
conformance!(
    rw_semaphore,
    neocortex::RwSemaphore,
    crate::common::wait_until_waiting_for_lock
);
conformance!(
    sysv_semaphore,
    neocortex::SysvSemaphore,
    crate::common::wait_until_waiting_for_lock
);
// The example spinlock never sleeps in the kernel: a waiter shows itself by spinning.
conformance!(
    example_spinlock,
    crate::spinlock::SpinLock,
    crate::common::wait_until_spinning
);

#[test]
fn rw_semaphore_shared_holders_coexist_and_a_writer_waits() {
    let _guard = common::watchdog();
    shared_holders_coexist_and_a_writer_waits::<neocortex::RwSemaphore>(
        "rw_semaphore::shared",
        common::wait_until_waiting_for_lock,
    );
}

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

use common::{assert_gone, fork, park, unique_key, Exit, Pipe};
use neocortex::{Cortex, CortexSync, ErrorKind, ShmSafe};

type Counter<L> = Cortex<u64, L>;

fn finish<T: ShmSafe, L: CortexSync>(key: i32, cortex: Cortex<T, L>) {
    let id = cortex.segment_id();
    drop(cortex);
    assert_gone(key, &[id], &[]);
}

/// Four processes each add 20 000 under the lock with a read-modify-write that would lose
/// updates without exclusion.
pub fn four_processes_lose_no_update<L: CortexSync>(name: &str) {
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
    finish(key, cortex);
}

/// Dropping a guard releases the lock; so does unwinding out of a panic, which also marks
/// the value as possibly half-written until it is repaired.
pub fn release_on_drop_and_on_panic<L: CortexSync>(name: &str) {
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
    assert!(!cortex.lock().unwrap().owner_died(), "repaired");
    assert_eq!(cortex.read().unwrap(), 0);
    finish(key, cortex);
}

/// A holder SIGKILLed mid-update: the next acquire succeeds and reports it; until the value
/// is marked consistent every guard reports it and by-value reads refuse it.
pub fn holder_killed_mid_update<L: CortexSync>(name: &str) {
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
    // The very first access after the death, a shared one, already knows.
    let err = cortex.read().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OwnerDied, "{err}");
    let guard = cortex.lock_timeout(Duration::from_secs(2)).unwrap();
    assert!(guard.owner_died());
    assert_eq!(guard.dead_owner_pid(), Some(child_pid));
    assert_eq!(*guard, 101, "the half-written value is there to repair");
    drop(guard);
    let err = cortex.read().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OwnerDied, "{err}");
    assert_eq!(
        cortex.update(|v| *v).unwrap_err().kind(),
        ErrorKind::OwnerDied
    );
    let mut guard = cortex.lock().unwrap();
    assert!(guard.owner_died(), "still reported until repaired");
    *guard = 100;
    guard.mark_consistent();
    drop(guard);
    assert!(!cortex.lock().unwrap().owner_died());
    assert_eq!(cortex.read().unwrap(), 100);
    finish(key, cortex);
}

/// `write()` replaces the whole value, so it repairs a value a dead holder left.
pub fn write_repairs_after_owner_death<L: CortexSync>(name: &str) {
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
    cortex.write(2).unwrap();
    assert_eq!(cortex.read().unwrap(), 2);
    finish(key, cortex);
}

/// While another process holds the lock: `try_lock` is `None` at once, and `lock_timeout`
/// gives up with `Timeout`, never before the timeout.
pub fn try_and_timeout_while_held<L: CortexSync>(name: &str) {
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
        assert!(
            waited >= timeout,
            "gave up after {waited:?}, before {timeout:?}"
        );
        assert!(err.to_string().contains(&format!("{timeout:?}")), "{err}");
    }
    release.send(1);
    child.expect_success("hold then release");
    assert!(cortex.try_lock().unwrap().is_some());
    finish(key, cortex);
}

/// A waiter that is stopped and continued (which interrupts its wait) still gets the lock.
pub fn stopped_and_continued_waiter_gets_the_lock<L: CortexSync>(name: &str) {
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
    std::thread::sleep(Duration::from_millis(50));
    child.signal(libc::SIGSTOP);
    std::thread::sleep(Duration::from_millis(50));
    child.signal(libc::SIGCONT);
    std::thread::sleep(Duration::from_millis(50));
    drop(guard);
    child.expect_success("wait through SIGSTOP/SIGCONT");
    assert_eq!(cortex.read().unwrap(), 2);
    finish(key, cortex);
}

/// A waiter killed while waiting leaves the lock as it was.
pub fn waiter_killed_while_waiting<L: CortexSync>(name: &str) {
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
    std::thread::sleep(Duration::from_millis(50));
    child.signal(libc::SIGKILL);
    assert_eq!(child.wait(), Exit::Signal(libc::SIGKILL));
    drop(guard);
    let next = fork(move || {
        let Ok(c) = Counter::<L>::attach(key) else {
            return 2;
        };
        let code = match c.lock_timeout(Duration::from_secs(5)) {
            Ok(g) if !g.owner_died() => 0,
            Ok(_) => 3,
            Err(_) => 4,
        };
        code
    });
    next.expect_success("lock after a killed waiter");
    // And still exclusive: held here, refused there.
    let _held = cortex.lock().unwrap();
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
    finish(key, cortex);
}

/// For locks with shared access: two processes hold shared guards at once, and a writer
/// waits until both are gone.
pub fn shared_holders_coexist_and_a_writer_waits<L: CortexSync>(name: &str) {
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
    std::thread::sleep(Duration::from_millis(50));
    release.release(2);
    for reader in readers {
        reader.expect_success("hold shared");
    }
    writer.expect_success("write after the readers");
    assert_eq!(cortex.read().unwrap(), 6);
    finish(key, cortex);
}

macro_rules! conformance {
    ($name:ident, $lock:ty) => {
        mod $name {
            fn key_name(case: &str) -> String {
                format!("{}::{case}", stringify!($name))
            }

            #[test]
            fn four_processes_lose_no_update() {
                super::four_processes_lose_no_update::<$lock>(&key_name("no_lost_update"));
            }

            #[test]
            fn release_on_drop_and_on_panic() {
                super::release_on_drop_and_on_panic::<$lock>(&key_name("release"));
            }

            #[test]
            fn holder_killed_mid_update() {
                super::holder_killed_mid_update::<$lock>(&key_name("killed_holder"));
            }

            #[test]
            fn write_repairs_after_owner_death() {
                super::write_repairs_after_owner_death::<$lock>(&key_name("write_repairs"));
            }

            #[test]
            fn try_and_timeout_while_held() {
                super::try_and_timeout_while_held::<$lock>(&key_name("try_timeout"));
            }

            #[test]
            fn stopped_and_continued_waiter_gets_the_lock() {
                super::stopped_and_continued_waiter_gets_the_lock::<$lock>(&key_name("sigstop"));
            }

            #[test]
            fn waiter_killed_while_waiting() {
                super::waiter_killed_while_waiting::<$lock>(&key_name("killed_waiter"));
            }
        }
    };
}

conformance!(semaphore, neocortex::Semaphore);
conformance!(rw_semaphore, neocortex::RwSemaphore);
#[cfg(target_os = "linux")]
conformance!(mutex, neocortex::Mutex);

#[test]
fn rw_semaphore_shared_holders_coexist_and_a_writer_waits() {
    shared_holders_coexist_and_a_writer_waits::<neocortex::RwSemaphore>("rw_semaphore::shared");
}
conformance!(example_spinlock, crate::spinlock::SpinLock);

//! [`Semaphore`]: a SysV semaphore with `SEM_UNDO`, the crash-safe exclusive lock.

use neocortex_core::{CortexResult, CortexSync, Key, Permission, Wait};

use crate::sysv::{self, Op, SemaphoreState};

/// The seed crate's name for the permission of a segment and its semaphore.
pub type SemaphorePermission = Permission;

/// Settings of a [`Semaphore`] (or [`RwSemaphore`](crate::RwSemaphore)) lock: the permission
/// mode, which also governs the segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SemaphoreSettings {
    /// Who may use the segment and the lock. Defaults to [`Permission::OwnerOnly`].
    pub mode: SemaphorePermission,
}

/// An exclusive lock made of one SysV semaphore, taken and released with `SEM_UNDO`.
///
/// - **Crash-safe:** when a holder's process dies (even by `SIGKILL`), the kernel undoes its
///   hold, so the lock never stays taken; the next guard reports
///   [`owner_died`](neocortex_core::CortexGuard::owner_died).
/// - **Per process:** the kernel's undo record belongs to a process, so a *thread* that ends
///   without unwinding (e.g. `pthread_exit`) while holding the lock keeps it held until its
///   process exits. Rust panics unwind and release it.
/// - **Cost:** two system calls per lock and unlock (see the benchmarks); for speed use the
///   futex `Mutex`.
/// - The set is private (`IPC_PRIVATE`): its id is stored in the segment, so no second key
///   space is used and no foreign set can be picked up by key.
///
/// Interrupted waits (a signal, `SIGSTOP`/`SIGCONT`) are retried with the remaining time; a
/// set removed from outside gives [`CortexError::LockRemoved`](neocortex_core::CortexError::LockRemoved).
#[derive(Debug)]
pub struct Semaphore {
    id: i32,
}

impl Semaphore {
    /// The semaphore of the set: 1 when free, 0 when held.
    const SEM: u16 = 0;

    /// The semaphore set's id.
    pub fn id(&self) -> i32 {
        self.id
    }
}

// SAFETY: the contract, point by point:
// 1. Exclusion: the set's one semaphore starts at 1 and `lock` decrements it by 1, which the
//    kernel lets happen only while it is 1, so at most one holder in any process at a time;
//    `unlock` gives the 1 back. Shared holds are exclusive holds (SHARED is false).
// 2. Ordering: semop runs under the set's kernel lock, a full barrier between the releasing
//    and the acquiring process.
// 3. State: the set id is recorded in `SemaphoreState` inside the segment; zero-filled means
//    "no set yet", which `attach` refuses and `destroy` skips.
// 4. Holder death: every operation uses SEM_UNDO, so the kernel adds a dead holder's 1 back.
// 5. Waits: `sysv::acquire` uses IPC_NOWAIT for `Wait::Never`, semtimedop with the time left
//    for a deadline, retries EINTR with the recomputed time left, and maps EIDRM/EINVAL to
//    `LockRemoved`.
unsafe impl CortexSync for Semaphore {
    type Settings = SemaphoreSettings;
    type State = SemaphoreState;
    const KIND: &'static str = "sysv-semaphore";

    fn permission(settings: &SemaphoreSettings) -> Permission {
        settings.mode
    }

    fn create(
        key: Key,
        state: &SemaphoreState,
        settings: &SemaphoreSettings,
    ) -> CortexResult<Self> {
        sysv::create(key, state, settings.mode, &[1]).map(|id| Self { id })
    }

    fn attach(key: Key, state: &SemaphoreState) -> CortexResult<Self> {
        sysv::attach(key, state, 1).map(|id| Self { id })
    }

    fn lock(&self, key: Key, _state: &SemaphoreState, wait: Wait) -> CortexResult<()> {
        sysv::acquire(key, self.id, [Op::add(Self::SEM, -1)], wait)
    }

    unsafe fn unlock(&self, key: Key, _state: &SemaphoreState) -> CortexResult<()> {
        sysv::apply_now("unlock", key, self.id, [Op::add(Self::SEM, 1)])
    }

    fn destroy(key: Key, state: &SemaphoreState) -> CortexResult<()> {
        sysv::destroy(key, state)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use neocortex_core::ErrorKind;
    use neocortex_sys::{sem, Errno};

    use super::*;
    use crate::sysv::RemoveOnDrop;

    #[test]
    fn excludes_times_out_and_is_removed() {
        let key = Key(0x5345_0001);
        let state = Box::new(SemaphoreState::zeroed());
        let lock = Semaphore::create(key, &state, &SemaphoreSettings::default()).expect("create");
        let _cleanup = RemoveOnDrop(key, &state);
        let id = lock.id();
        assert_eq!(sem::stat(id).expect("stat").nsems, 1);
        let other = Semaphore::attach(key, &state).expect("attach");
        assert_eq!(other.id(), id);

        lock.lock(key, &state, Wait::Never).expect("free");
        assert_eq!(sem::get_value(id, 0).expect("getval"), 0);
        let busy = other.lock(key, &state, Wait::Never).expect_err("held");
        assert_eq!(busy.kind(), ErrorKind::WouldBlock);
        let started = Instant::now();
        let late = other
            .lock(key, &state, Wait::timeout(Duration::from_millis(50)))
            .expect_err("held");
        assert_eq!(late.kind(), ErrorKind::Timeout);
        assert!(started.elapsed() >= Duration::from_millis(50));
        // SAFETY: this process took the lock above and has not released it.
        unsafe { lock.unlock(key, &state) }.expect("unlock");
        assert_eq!(sem::get_value(id, 0).expect("getval"), 1);
        other
            .lock(key, &state, Wait::timeout(Duration::from_secs(5)))
            .expect("free again");
        // SAFETY: taken just above through `other`.
        unsafe { other.unlock(key, &state) }.expect("unlock");

        Semaphore::destroy(key, &state).expect("destroy");
        assert_eq!(sem::stat(id).expect_err("removed").errno, Errno::EINVAL);
        let removed = lock.lock(key, &state, Wait::Never).expect_err("removed");
        assert_eq!(removed.kind(), ErrorKind::LockRemoved);
    }

    #[test]
    fn threads_do_not_lose_updates() {
        use std::sync::atomic::{AtomicU64, Ordering};
        let key = Key(0x5345_0002);
        let state = SemaphoreState::zeroed();
        let lock = Semaphore::create(key, &state, &SemaphoreSettings::default()).expect("create");
        let _cleanup = RemoveOnDrop(key, &state);
        let counter = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..500 {
                        lock.lock(key, &state, Wait::Forever).expect("lock");
                        // A non-atomic increment: only the lock keeps it from losing updates.
                        let v = counter.load(Ordering::Relaxed);
                        std::thread::yield_now();
                        counter.store(v + 1, Ordering::Relaxed);
                        // SAFETY: taken just above on this thread, in this process.
                        unsafe { lock.unlock(key, &state) }.expect("unlock");
                    }
                });
            }
        });
        assert_eq!(counter.load(Ordering::Relaxed), 2000);
        let id = lock.id();
        Semaphore::destroy(key, &state).expect("destroy");
        assert_eq!(sem::stat(id).expect_err("removed").errno, Errno::EINVAL);
    }
}

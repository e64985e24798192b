//! [`Semaphore`]: a SysV semaphore with `SEM_UNDO`, the crash-safe exclusive lock.

use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};

use neocortex_core::{
    CortexError, CortexResult, CortexSync, Key, Leftover, Permission, Remaining, Wait,
};
use neocortex_sys::{sem, Errno, SysError, IPC_PRIVATE};

/// The seed crate's name for the permission of a segment and its semaphore.
pub type SemaphorePermission = Permission;

/// Settings of a [`Semaphore`] lock: the permission mode, which also governs the segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SemaphoreSettings {
    /// Who may use the segment and the lock. Defaults to [`Permission::OwnerOnly`].
    pub mode: SemaphorePermission,
}

neocortex_core::shm_safe! {
    /// The [`Semaphore`]'s state in the segment: the id of its semaphore set.
    #[derive(Debug)]
    pub struct SemaphoreState {
        /// 1 once `id` holds a semaphore set id (0 in a fresh segment).
        valid: AtomicU32,
        /// The set's id, as `ipcs -s` lists it.
        id: AtomicI32,
    }
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
/// set removed from outside gives [`CortexError::LockRemoved`].
#[derive(Debug)]
pub struct Semaphore {
    id: i32,
}

impl Semaphore {
    /// The semaphore set's id.
    pub fn id(&self) -> i32 {
        self.id
    }

    fn op(delta: i16, nowait: bool) -> libc::sembuf {
        let mut flags = libc::SEM_UNDO;
        if nowait {
            flags |= libc::IPC_NOWAIT;
        }
        libc::sembuf {
            sem_num: 0,
            sem_op: delta,
            sem_flg: flags as libc::c_short,
        }
    }

    fn stored_id(state: &SemaphoreState) -> Option<i32> {
        (state.valid.load(Ordering::Acquire) == 1).then(|| state.id.load(Ordering::Relaxed))
    }
}

fn lock_error(key: Key, e: SysError) -> CortexError {
    if e.errno == Errno::EIDRM || e.errno == Errno::EINVAL {
        CortexError::LockRemoved { key, source: e }
    } else {
        CortexError::clean("lock", key, e)
    }
}

// SAFETY: exclusion: a semaphore of value 1 decremented by one holder at a time; semop is
// a full barrier in the kernel, so acquire/release ordering holds; the state (the set id)
// lives in the segment; a dead holder's decrement is undone by SEM_UNDO; waits use
// semtimedop with the remaining time after EINTR and map EIDRM/EINVAL to LockRemoved.
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
        let flags = libc::IPC_CREAT | libc::IPC_EXCL | settings.mode.flags();
        let id = sem::semget(IPC_PRIVATE, 1, flags)
            .map_err(|e| CortexError::clean("create semaphore", key, e))?;
        // Record the id first, so a creator killed from here on leaves a findable set.
        state.id.store(id, Ordering::Relaxed);
        state.valid.store(1, Ordering::Release);
        // SETVAL is safe here: nobody else knows this private set yet.
        if let Err(e) = sem::set_value(id, 0, 1) {
            state.valid.store(0, Ordering::Release);
            return Err(match sem::remove(id) {
                Ok(()) => CortexError::clean("create semaphore", key, e),
                Err(_) => {
                    CortexError::dirty("create semaphore", key, e, vec![Leftover::SemaphoreSet(id)])
                }
            });
        }
        Ok(Self { id })
    }

    fn attach(key: Key, state: &SemaphoreState) -> CortexResult<Self> {
        let Some(id) = Self::stored_id(state) else {
            return Err(CortexError::ForeignSegment {
                key,
                reason: "a ready segment without a semaphore id".into(),
            });
        };
        match sem::stat(id) {
            Ok(ds) if ds.sem_nsems == 1 => Ok(Self { id }),
            Ok(ds) => Err(CortexError::ForeignSegment {
                key,
                reason: format!(
                    "semaphore set {id} has {} semaphores, expected 1",
                    ds.sem_nsems
                ),
            }),
            Err(e) => Err(lock_error(key, e)),
        }
    }

    fn lock(&self, key: Key, _state: &SemaphoreState, wait: Wait) -> CortexResult<()> {
        loop {
            let result = match wait.remaining() {
                Remaining::NoWait => sem::semop(self.id, &mut [Self::op(-1, true)]),
                Remaining::Forever => sem::semop(self.id, &mut [Self::op(-1, false)]),
                Remaining::For(left) => {
                    sem::semtimedop(self.id, &mut [Self::op(-1, false)], Some(left))
                }
                Remaining::Expired => return Err(wait.gave_up(key)),
            };
            match result {
                Ok(()) => return Ok(()),
                // A signal or SIGSTOP/SIGCONT: try again with what is left of the wait.
                Err(e) if e.errno == Errno::EINTR => continue,
                Err(e) if e.errno == Errno::EAGAIN => return Err(wait.gave_up(key)),
                Err(e) => return Err(lock_error(key, e)),
            }
        }
    }

    unsafe fn unlock(&self, key: Key, _state: &SemaphoreState) -> CortexResult<()> {
        loop {
            match sem::semop(self.id, &mut [Self::op(1, false)]) {
                Ok(()) => return Ok(()),
                Err(e) if e.errno == Errno::EINTR => continue,
                Err(e) => return Err(lock_error(key, e)),
            }
        }
    }

    fn destroy(key: Key, state: &SemaphoreState) -> CortexResult<()> {
        let Some(id) = Self::stored_id(state) else {
            return Ok(());
        };
        match sem::remove(id) {
            Ok(()) => Ok(()),
            Err(e) if e.errno == Errno::EINVAL || e.errno == Errno::EIDRM => {
                tracing::warn!(%key, semid = id, "semaphore set was already removed from outside");
                Ok(())
            }
            Err(e) => Err(CortexError::dirty(
                "remove semaphore",
                key,
                e,
                vec![Leftover::SemaphoreSet(id)],
            )),
        }
    }
}

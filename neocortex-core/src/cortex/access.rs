//! Access to the value: guards, and the by-value `read`, `write` and `update`.

use std::time::Duration;

use super::{none_if_would_block, Cortex};
use crate::error::CortexResult;
use crate::guard::{CortexGuard, CortexReadGuard};
use crate::marker::ShmSafe;
use crate::sync::{CortexSync, Wait};

impl<T: ShmSafe, L: CortexSync> Cortex<T, L> {
    /// Locks exclusively, waiting as long as it takes.
    ///
    /// The guard derefs to the value in place. Check [`CortexGuard::owner_died`]: it is true
    /// when a holder died or panicked while holding the lock, so the value may be half-written.
    ///
    /// # Errors
    ///
    /// `LockRemoved` when the lock was removed from outside, `PermissionDenied`.
    #[inline]
    pub fn lock(&self) -> CortexResult<CortexGuard<'_, T, L>> {
        CortexGuard::acquire(self, Wait::Forever)
    }

    /// Locks exclusively if the lock is free right now.
    ///
    /// # Errors
    ///
    /// As [`lock`](Self::lock); a held lock is `Ok(None)`.
    pub fn try_lock(&self) -> CortexResult<Option<CortexGuard<'_, T, L>>> {
        none_if_would_block(CortexGuard::acquire(self, Wait::Never))
    }

    /// Locks exclusively, giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// `Timeout`, and as [`lock`](Self::lock).
    pub fn lock_timeout(&self, timeout: Duration) -> CortexResult<CortexGuard<'_, T, L>> {
        CortexGuard::acquire(self, Wait::timeout(timeout))
    }

    /// Locks for reading. With a lock whose [`CortexSync::SHARED`] is true, several readers
    /// hold it at once; with an exclusive-only lock (`Semaphore`) this is an exclusive hold
    /// that only gives `&T`.
    ///
    /// # Errors
    ///
    /// As [`lock`](Self::lock).
    #[inline]
    pub fn lock_shared(&self) -> CortexResult<CortexReadGuard<'_, T, L>> {
        CortexReadGuard::acquire(self, Wait::Forever)
    }

    /// [`lock_shared`](Self::lock_shared) if it is free for reading right now.
    ///
    /// # Errors
    ///
    /// As [`lock`](Self::lock); a held lock is `Ok(None)`.
    pub fn try_lock_shared(&self) -> CortexResult<Option<CortexReadGuard<'_, T, L>>> {
        none_if_would_block(CortexReadGuard::acquire(self, Wait::Never))
    }

    /// [`lock_shared`](Self::lock_shared), giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// `Timeout`, and as [`lock`](Self::lock).
    pub fn lock_shared_timeout(
        &self,
        timeout: Duration,
    ) -> CortexResult<CortexReadGuard<'_, T, L>> {
        CortexReadGuard::acquire(self, Wait::timeout(timeout))
    }

    /// A copy of the value, read under the shared lock.
    ///
    /// # Errors
    ///
    /// `OwnerDied` while a holder's death has left the value unrepaired (use
    /// [`lock`](Self::lock) to look at it and mark it consistent), and as
    /// [`lock`](Self::lock).
    #[inline]
    pub fn read(&self) -> CortexResult<T>
    where
        T: Copy,
    {
        let guard = self.lock_shared()?;
        guard.refuse_if_inconsistent()?;
        Ok(*guard)
    }

    /// Replaces the value under the exclusive lock. A whole new value also repairs a value
    /// left half-written by a dead holder, so this marks it consistent.
    ///
    /// `value` passes through the stack; write large values in place with
    /// [`lock`](Self::lock).
    ///
    /// # Errors
    ///
    /// As [`lock`](Self::lock).
    #[inline]
    pub fn write(&self, value: T) -> CortexResult<()> {
        let mut guard = self.lock()?;
        *guard = value;
        guard.mark_consistent();
        Ok(())
    }

    /// Runs `f` on the value in place under the exclusive lock and returns its result.
    ///
    /// # Errors
    ///
    /// `OwnerDied` while the value is unrepaired (see [`read`](Self::read)), and as
    /// [`lock`](Self::lock).
    pub fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> CortexResult<R> {
        let mut guard = self.lock()?;
        guard.refuse_if_inconsistent()?;
        Ok(f(&mut guard))
    }
}

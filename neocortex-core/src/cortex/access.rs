//! Access to the value: guards (for locks that exclude readers too), and the by-value
//! `read`, `write` and `update` that every lock offers.

use std::time::Duration;

use super::{none_if_would_block, Cortex};
use crate::error::{CortexError, CortexResult};
use crate::guard::{CortexGuard, CortexReadGuard};
use crate::marker::{ShmSafe, Value};
use crate::sync::{Access, CortexSync, InPlace, LockContext, Wait};

/// Guards: only for locks whose readers lock too ([`InPlace`]). A `SeqLock` value is only
/// ever copied, so these methods do not exist for it:
///
/// ```compile_fail,E0599
/// use neocortex::{Cortex, SeqLock};
/// let c: Cortex<u64, SeqLock> = Cortex::attach(1).unwrap();
/// let guard = c.lock(); // no method `lock` for a SeqLock: it hands out no &mut T
/// ```
///
/// while the same with an in-place lock compiles:
///
/// ```no_run
/// use neocortex::{Cortex, Semaphore};
/// let c: Cortex<u64, Semaphore> = Cortex::attach(1).unwrap();
/// let guard = c.lock();
/// ```
impl<T: ?Sized + Value, L: CortexSync<Access = InPlace>> Cortex<T, L> {
    /// Locks exclusively, waiting as long as it takes.
    ///
    /// The guard derefs to the value in place. Check [`CortexGuard::owner_died`]: it is true
    /// when a holder died or panicked while holding the lock, so the value may be half-written.
    ///
    /// ```
    /// use neocortex::{Cortex, Semaphore};
    ///
    /// let key = neocortex::random_key()?;
    /// let counter: Cortex<u64, Semaphore> = Cortex::new(key, 0, None)?;
    /// *counter.lock()? += 1;
    /// assert_eq!(counter.read()?, 1);
    /// # Ok::<(), neocortex::CortexError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `LockRemoved` when the segment was removed, `PermissionDenied`, `LimitReached` (every
    /// member slot taken).
    #[inline]
    pub fn lock(&self) -> CortexResult<CortexGuard<'_, T, L>> {
        CortexGuard::acquire(self, Wait::Forever)
    }

    /// Locks exclusively if the lock is free right now (or its holder is dead).
    ///
    /// # Errors
    ///
    /// As [`lock`](Self::lock); a held lock is `Ok(None)`.
    pub fn try_lock(&self) -> CortexResult<Option<CortexGuard<'_, T, L>>> {
        none_if_would_block(CortexGuard::acquire(self, Wait::Never))
    }

    /// Locks exclusively, giving up after `timeout` (a zero timeout still takes a free
    /// lock).
    ///
    /// ```
    /// use std::time::Duration;
    /// use neocortex::{Cortex, ErrorKind, Semaphore};
    ///
    /// let key = neocortex::random_key()?;
    /// let cortex: Cortex<u64, Semaphore> = Cortex::new(key, 0, None)?;
    /// let held = cortex.lock()?;
    /// std::thread::scope(|s| {
    ///     let waited = s.spawn(|| cortex.lock_timeout(Duration::from_millis(10)).map(drop));
    ///     assert_eq!(waited.join().unwrap().unwrap_err().kind(), ErrorKind::Timeout);
    /// });
    /// drop(held);
    /// # Ok::<(), neocortex::CortexError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `Timeout`, and as [`lock`](Self::lock).
    pub fn lock_timeout(&self, timeout: Duration) -> CortexResult<CortexGuard<'_, T, L>> {
        CortexGuard::acquire(self, Wait::timeout(timeout))
    }

    /// Locks for reading. With a lock whose [`CortexSync::SHARED`] is true (`RwSemaphore`),
    /// several readers hold it at once; with an exclusive-only lock this is an exclusive hold
    /// that only gives `&T`.
    ///
    /// ```
    /// use neocortex::{Cortex, RwSemaphore};
    ///
    /// let key = neocortex::random_key()?;
    /// let shared: Cortex<[u8; 64], RwSemaphore> = Cortex::new(key, [7; 64], None)?;
    /// let (a, b) = (shared.lock_shared()?, shared.lock_shared()?); // two readers at once
    /// assert_eq!(a[0], b[63]);
    /// # Ok::<(), neocortex::CortexError>(())
    /// ```
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
}

impl<T: ShmSafe, L: CortexSync> Cortex<T, L> {
    /// A copy of the value: read under the shared lock, or (with `SeqLock`) copied without
    /// locking and retried if a write overlapped.
    ///
    /// ```
    /// use neocortex::{Cortex, Semaphore};
    ///
    /// let key = neocortex::random_key()?;
    /// let cortex: Cortex<(), Semaphore> = Cortex::new(key, (), None)?;
    /// assert_eq!(cortex.read()?, ());
    /// # Ok::<(), neocortex::CortexError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `OwnerDied` while a holder's death has left the value unrepaired (repair it with
    /// [`write`](Self::write), or look at it through a guard and mark it consistent),
    /// `LockRemoved`, and as [`lock`](Self::lock).
    #[inline]
    pub fn read(&self) -> CortexResult<T>
    where
        T: Copy,
    {
        // Each path writes straight into the caller's result: no copy of the value in this
        // frame (a large value must fit a thread's stack even in a debug build).
        if <L::Access as Access>::OPTIMISTIC {
            self.read_optimistic()
        } else {
            self.read_locked()
        }
    }

    /// `read()` under the lock: a guard without the guard, lock, copy, unlock, in
    /// straight-line code (a copy of a `Copy` value cannot panic, and no handle outlives this
    /// call, so no fork check).
    #[inline]
    fn read_locked(&self) -> CortexResult<T>
    where
        T: Copy,
    {
        let cx = self.lock_cx();
        let state = self.lock_state();
        let acquired = self.lock.lock_shared(&cx, state, Wait::Forever)?;
        let header = self.header();
        let dead = crate::guard::dead_owner_seen_shared::<L>(header, acquired);
        if header.is_removed() || dead.is_some() {
            return Err(self.refuse_read(&cx, dead));
        }
        let src = self.value_ptr().as_ptr();
        super::copy_out::copied(|dst| {
            // SAFETY: the lock is held shared (an exclusive hold for exclusive-only locks),
            // so no `&mut T` exists in any process; `src` is aligned and inside the segment,
            // any bytes are a valid T, and `dst` has room for one T (and is not in the
            // segment).
            unsafe { std::ptr::copy_nonoverlapping(src, dst, 1) };
            self.release_shared(&cx);
            Ok(())
        })
    }

    /// `read()` of a removed segment or of a value a dead holder left unrepaired: the error,
    /// after releasing the shared hold just taken.
    #[cold]
    #[inline(never)]
    fn refuse_read(&self, cx: &LockContext<'_>, dead: Option<i32>) -> CortexError {
        self.release_shared(cx);
        match dead {
            Some(pid) if !self.header().is_removed() => CortexError::OwnerDied {
                key: self.key(),
                pid,
            },
            _ => CortexError::lock_removed(self.key(), None),
        }
    }

    /// Copies the value into `out`, as [`read`](Self::read) does, but without returning it
    /// by value: for a large value that a program reads again and again into the same
    /// place, this is the one copy (a value returned by value is moved again by the caller).
    ///
    /// ```
    /// use neocortex::{Cortex, SeqLock};
    ///
    /// let key = neocortex::random_key()?;
    /// let frame: Cortex<[u8; 4096], SeqLock> = Cortex::new(key, [7; 4096], None)?;
    /// let mut mine = [0u8; 4096];
    /// frame.read_into(&mut mine)?;
    /// assert_eq!(mine[4095], 7);
    /// # Ok::<(), neocortex::CortexError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`read`](Self::read); `out` is then unspecified (a partial copy).
    pub fn read_into(&self, out: &mut T) -> CortexResult<()> {
        if <L::Access as Access>::OPTIMISTIC {
            return self.read_optimistic_into(std::slice::from_mut(out));
        }
        let guard = CortexReadGuard::acquire(self, Wait::Forever)?;
        guard.refuse_if_inconsistent()?;
        crate::marker::copy_bits(std::slice::from_ref(&*guard), std::slice::from_mut(out));
        Ok(())
    }

    /// Replaces the value under the exclusive lock. A whole new value also repairs a value
    /// left half-written by a dead holder, so this marks it consistent.
    ///
    /// `value` is copied into the segment once, from where the caller put it.
    ///
    /// ```
    /// use neocortex::{Cortex, Semaphore};
    ///
    /// let key = neocortex::random_key()?;
    /// let cortex: Cortex<f64, Semaphore> = Cortex::new(key, 1.0, None)?;
    /// cortex.write(12.34)?;
    /// assert_eq!(cortex.read()?, 12.34);
    /// # Ok::<(), neocortex::CortexError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`lock`](Self::lock).
    #[inline]
    pub fn write(&self, value: T) -> CortexResult<()> {
        if <L::Access as Access>::OPTIMISTIC {
            return self.write_optimistic(&value);
        }
        let mut guard = CortexGuard::acquire(self, Wait::Forever)?;
        *guard = value;
        guard.mark_consistent();
        Ok(())
    }
}

impl<T: ?Sized + Value, L: CortexSync> Cortex<T, L> {
    /// Runs `f` on the value under the exclusive lock and returns its result: in place, or
    /// (with `SeqLock`) on a copy that is then written back.
    ///
    /// ```
    /// use neocortex::{Cortex, Semaphore};
    ///
    /// let key = neocortex::random_key()?;
    /// let cortex: Cortex<[u64; 4], Semaphore> = Cortex::new(key, [1, 2, 3, 4], None)?;
    /// let sum = cortex.update(|v| {
    ///     v[0] = 10;
    ///     v.iter().sum::<u64>()
    /// })?;
    /// assert_eq!(sum, 19);
    /// # Ok::<(), neocortex::CortexError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `OwnerDied` while the value is unrepaired (see [`read`](Self::read)), and as
    /// [`lock`](Self::lock).
    pub fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> CortexResult<R> {
        if <L::Access as Access>::OPTIMISTIC {
            return self.update_optimistic(f);
        }
        let mut guard = CortexGuard::acquire(self, Wait::Forever)?;
        guard.refuse_if_inconsistent()?;
        Ok(f(&mut guard))
    }
}

impl<T: ?Sized + Value, L: CortexSync> Cortex<T, L> {
    /// Replaces the whole value with what `f` writes into its elements (zero-filled first
    /// for an optimistic lock), under the exclusive lock; repairs like `write`.
    pub(crate) fn replace_with(&self, f: impl FnOnce(&mut [T::Elem])) -> CortexResult<()> {
        if <L::Access as Access>::OPTIMISTIC {
            let mut elems: Vec<T::Elem> = crate::marker::zeroed_vec(self.len);
            f(&mut elems);
            return self.write_optimistic_from(&elems);
        }
        let mut guard = CortexGuard::acquire(self, Wait::Forever)?;
        f(T::as_elems_mut(&mut guard));
        guard.mark_consistent();
        Ok(())
    }
}

impl<T: ?Sized + Value, L: CortexSync> Cortex<T, L> {
    /// Releases a shared hold this thread took through this handle (in `read()`).
    #[inline(always)]
    fn release_shared(&self, cx: &LockContext<'_>) {
        // SAFETY: every caller took the shared hold just before, in this thread, through
        // this handle.
        if let Err(e) = unsafe { self.lock.unlock_shared(cx, self.lock_state()) } {
            release_failed(&e);
        }
    }
}

/// Logs a release that failed (the lock vanished meanwhile); the next access reports it.
#[cold]
#[inline(never)]
fn release_failed(e: &CortexError) {
    tracing::warn!(error = %e, "releasing the shared lock failed");
}

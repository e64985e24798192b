//! Guards: access to the value in place while the lock is held.

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use neocortex_sys::process::current_pid;

use crate::cortex::Cortex;
use crate::error::{CortexError, CortexResult};
use crate::header::Header;
use crate::marker::Value;
use crate::sync::{Acquired, CortexSync, Wait};

/// Exclusive access to the value of a [`Cortex`], in place. Releases the lock on drop.
///
/// Dropped in a forked child, it does nothing: the lock belongs to the parent. A guard
/// through which the value was borrowed mutably bumps the segment's
/// [`version`](Cortex::version) when it is dropped, waking whoever
/// [waits for a change](Cortex::wait_for_change).
///
/// A guard is neither `Send` nor `Sync`: the thread that took the lock releases it.
///
/// ```
/// use neocortex::{Cortex, Semaphore};
///
/// let key = neocortex::random_key()?;
/// let cortex: Cortex<[u64; 4], Semaphore> = Cortex::new(key, [0; 4], None)?;
/// let mut guard = cortex.lock()?;
/// if guard.owner_died() {
///     *guard = [0; 4]; // repair from what you know
///     guard.mark_consistent();
/// }
/// guard[0] += 1;
/// drop(guard);
/// assert_eq!(cortex.read()?[0], 1);
/// # Ok::<(), neocortex::CortexError>(())
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct CortexGuard<'a, T: ?Sized + Value, L: CortexSync> {
    cortex: &'a Cortex<T, L>,
    pid: i32,
    dead_owner: Option<i32>,
    panicking_at_acquire: bool,
    changed: bool,
    /// Not `Send`: a lock may identify its holder by thread.
    _not_send: PhantomData<*const ()>,
}

/// Shared (read) access to the value of a [`Cortex`], in place. Releases the lock on drop.
///
/// With a lock whose readers share ([`RwSemaphore`](https://docs.rs/neocortex)), several
/// processes hold one at once; with an exclusive-only lock it is an exclusive hold that
/// gives only `&T`.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct CortexReadGuard<'a, T: ?Sized + Value, L: CortexSync> {
    cortex: &'a Cortex<T, L>,
    pid: i32,
    dead_owner: Option<i32>,
    _not_send: PhantomData<*const ()>,
}

/// Records what a successful exclusive acquire means for the value's consistency.
#[inline]
pub(crate) fn note_exclusive<L: CortexSync>(
    header: &Header,
    acquired: Acquired,
    pid: i32,
    key: i32,
) {
    if L::DETECTS_DEAD_HOLDERS {
        if let Acquired::FromDeadHolder { pid: dead } = acquired {
            header.mark_inconsistent(dead.unwrap_or(-1));
            tracing::warn!(
                key,
                dead_pid = dead.unwrap_or(-1),
                "took the lock over from a holder that died holding it; the value may be half-written"
            );
        }
    } else {
        let previous = header.take_holder(pid);
        if previous != 0 {
            tracing::warn!(
                key,
                dead_pid = previous,
                "the previous holder died holding the lock; the value may be half-written"
            );
        }
    }
}

/// Fails an acquire on a segment marked removed, releasing what was just taken.
#[inline]
pub(crate) fn refuse_if_removed(
    header: &Header,
    key: i32,
    release: impl FnOnce(),
) -> CortexResult<()> {
    if header.is_removed() {
        release();
        return Err(CortexError::lock_removed(key, None));
    }
    Ok(())
}

impl<'a, T: ?Sized + Value, L: CortexSync> CortexGuard<'a, T, L> {
    #[inline]
    pub(crate) fn acquire(cortex: &'a Cortex<T, L>, wait: Wait) -> CortexResult<Self> {
        let cx = cortex.lock_cx();
        let state = cortex.lock_state();
        let acquired = cortex.raw_lock().lock(&cx, state, wait)?;
        let header = cortex.header();
        refuse_if_removed(header, cx.key(), || {
            // SAFETY: the lock was taken just above by this thread, through this handle.
            let _ = unsafe { cortex.raw_lock().unlock(&cx, state) };
        })?;
        let pid = current_pid();
        note_exclusive::<L>(header, acquired, pid, cx.key());
        crate::failpoints::reach("lock.acquired");
        Ok(Self {
            cortex,
            pid,
            dead_owner: header.dead_holder(),
            panicking_at_acquire: std::thread::panicking(),
            changed: false,
            _not_send: PhantomData,
        })
    }

    /// Whether a holder died (killed, aborted) or panicked while holding the lock and the
    /// value has not been marked consistent since: it may be half-written. Repair it, then
    /// call [`mark_consistent`](Self::mark_consistent); until then every guard reports it.
    pub fn owner_died(&self) -> bool {
        self.dead_owner.is_some()
    }

    /// The pid of the holder that died (as that process saw itself; -1 when not known),
    /// while the value is unrepaired.
    pub fn dead_owner_pid(&self) -> Option<i32> {
        self.dead_owner
    }

    /// Declares the value consistent again after a holder's death.
    pub fn mark_consistent(&mut self) {
        self.cortex.header().mark_consistent();
        self.dead_owner = None;
    }

    pub(crate) fn refuse_if_inconsistent(&self) -> CortexResult<()> {
        refuse_if_dead(self.cortex.key(), self.dead_owner)
    }
}

impl<T: ?Sized + Value, L: CortexSync> Deref for CortexGuard<'_, T, L> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the exclusive lock is held for the guard's lifetime (CortexSync contract),
        // the pointer is aligned and inside the segment, and the elements are ShmSafe, valid
        // for any bytes.
        unsafe { self.cortex.value_ptr().as_ref() }
    }
}

impl<T: ?Sized + Value, L: CortexSync> DerefMut for CortexGuard<'_, T, L> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        self.changed = true;
        // SAFETY: as in `deref`; the exclusive hold and `&mut self` make this the only
        // reference to the value in any process.
        unsafe { self.cortex.value_ptr().as_mut() }
    }
}

impl<T: ?Sized + Value, L: CortexSync> Drop for CortexGuard<'_, T, L> {
    #[inline]
    fn drop(&mut self) {
        // The pid cache is right in every child, including one made by a raw `clone`
        // (`current_pid` uses a page the kernel wipes in children).
        if current_pid() != self.pid {
            // A forked child inherited this guard: the lock is the parent's.
            return;
        }
        let header = self.cortex.header();
        if std::thread::panicking() && !self.panicking_at_acquire {
            header.mark_inconsistent(self.pid);
            self.changed = true;
        }
        if !L::DETECTS_DEAD_HOLDERS {
            header.clear_holder();
        }
        if self.changed {
            // Under the lock, so that a reader holding it sees a version that matches the
            // value; the waiters are woken once the lock is free for them.
            self.cortex.note_change();
        }
        let cx = self.cortex.lock_cx();
        // SAFETY: this guard holds the lock exclusively in this process (pid checked above).
        let result = unsafe { self.cortex.raw_lock().unlock(&cx, self.cortex.lock_state()) };
        if let Err(e) = result {
            tracing::warn!(error = %e, "releasing the lock failed");
        }
        if self.changed {
            self.cortex.wake_watchers();
        }
    }
}

impl<T: ?Sized + Value + std::fmt::Debug, L: CortexSync> std::fmt::Debug for CortexGuard<'_, T, L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CortexGuard")
            .field("value", &&**self)
            .field("owner_died", &self.owner_died())
            .finish()
    }
}

impl<'a, T: ?Sized + Value, L: CortexSync> CortexReadGuard<'a, T, L> {
    #[inline]
    pub(crate) fn acquire(cortex: &'a Cortex<T, L>, wait: Wait) -> CortexResult<Self> {
        let cx = cortex.lock_cx();
        let state = cortex.lock_state();
        let acquired = cortex.raw_lock().lock_shared(&cx, state, wait)?;
        let header = cortex.header();
        refuse_if_removed(header, cx.key(), || {
            // SAFETY: the shared hold was taken just above by this thread.
            let _ = unsafe { cortex.raw_lock().unlock_shared(&cx, state) };
        })?;
        let dead_owner = dead_owner_seen_shared::<L>(header, acquired);
        Ok(Self {
            cortex,
            pid: current_pid(),
            dead_owner,
            _not_send: PhantomData,
        })
    }

    /// Whether the value may be half-written by a holder that died; see
    /// [`CortexGuard::owner_died`].
    pub fn owner_died(&self) -> bool {
        self.dead_owner.is_some()
    }

    pub(crate) fn refuse_if_inconsistent(&self) -> CortexResult<()> {
        refuse_if_dead(self.cortex.key(), self.dead_owner)
    }
}

impl<T: ?Sized + Value, L: CortexSync> Deref for CortexReadGuard<'_, T, L> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: a shared hold excludes every exclusive holder (CortexSync contract), so no
        // `&mut T` exists anywhere while this `&T` lives; pointer aligned and in bounds.
        unsafe { self.cortex.value_ptr().as_ref() }
    }
}

impl<T: ?Sized + Value, L: CortexSync> Drop for CortexReadGuard<'_, T, L> {
    #[inline]
    fn drop(&mut self) {
        if current_pid() != self.pid {
            return;
        }
        let cx = self.cortex.lock_cx();
        // SAFETY: this guard holds the lock shared in this process (pid checked above).
        let result = unsafe {
            self.cortex
                .raw_lock()
                .unlock_shared(&cx, self.cortex.lock_state())
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "releasing the shared lock failed");
        }
    }
}

impl<T: ?Sized + Value + std::fmt::Debug, L: CortexSync> std::fmt::Debug
    for CortexReadGuard<'_, T, L>
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CortexReadGuard")
            .field("value", &&**self)
            .field("owner_died", &self.owner_died())
            .finish()
    }
}

/// Under a shared hold just taken: the holder that died holding the lock, if the value is
/// unrepaired (recording a takeover the lock reports).
#[inline]
pub(crate) fn dead_owner_seen_shared<L: CortexSync>(
    header: &Header,
    acquired: Acquired,
) -> Option<i32> {
    if L::DETECTS_DEAD_HOLDERS {
        if let Acquired::FromDeadHolder { pid } = acquired {
            header.mark_inconsistent(pid.unwrap_or(-1));
        }
        header.dead_holder()
    } else {
        header.dead_holder_seen_shared()
    }
}

/// `OwnerDied` while a dead holder's value is unrepaired: what by-value access returns.
#[inline]
pub(crate) fn refuse_if_dead(key: i32, dead_owner: Option<i32>) -> CortexResult<()> {
    match dead_owner {
        Some(pid) => Err(CortexError::OwnerDied { key, pid }),
        None => Ok(()),
    }
}

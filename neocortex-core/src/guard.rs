//! Guards: access to the value in place while the lock is held.

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use neocortex_sys::process::current_pid;

use crate::cortex::Cortex;
use crate::error::{CortexError, CortexResult};
use crate::marker::ShmSafe;
use crate::sync::{CortexSync, Wait};

/// Exclusive access to the value of a [`Cortex`], in place. Releases the lock on drop.
///
/// Dropped in a forked child, it does nothing: the lock belongs to the parent.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct CortexGuard<'a, T: ShmSafe, L: CortexSync> {
    cortex: &'a Cortex<T, L>,
    pid: i32,
    dead_owner: Option<i32>,
    panicking_at_acquire: bool,
    /// Not `Send`: a lock may identify its holder by thread.
    _not_send: PhantomData<*const ()>,
}

/// Shared (read) access to the value of a [`Cortex`], in place. Releases the lock on drop.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct CortexReadGuard<'a, T: ShmSafe, L: CortexSync> {
    cortex: &'a Cortex<T, L>,
    pid: i32,
    dead_owner: Option<i32>,
    _not_send: PhantomData<*const ()>,
}

impl<'a, T: ShmSafe, L: CortexSync> CortexGuard<'a, T, L> {
    #[inline]
    pub(crate) fn acquire(cortex: &'a Cortex<T, L>, wait: Wait) -> CortexResult<Self> {
        cortex
            .raw_lock()
            .lock(cortex.key_typed(), cortex.lock_state(), wait)?;
        let pid = current_pid();
        let header = cortex.header();
        header.take_holder(pid);
        crate::failpoints::reach("lock.acquired");
        Ok(Self {
            cortex,
            pid,
            dead_owner: header.dead_holder(),
            panicking_at_acquire: std::thread::panicking(),
            _not_send: PhantomData,
        })
    }

    /// Whether a holder died (killed, aborted) or panicked while holding the lock and the
    /// value has not been marked consistent since: it may be half-written. Repair it, then
    /// call [`mark_consistent`](Self::mark_consistent); until then every guard reports it.
    pub fn owner_died(&self) -> bool {
        self.dead_owner.is_some()
    }

    /// The pid of the holder that died, while the value is unrepaired.
    pub fn dead_owner_pid(&self) -> Option<i32> {
        self.dead_owner
    }

    /// Declares the value consistent again after a holder's death.
    pub fn mark_consistent(&mut self) {
        self.cortex.header().mark_consistent();
        self.dead_owner = None;
    }

    pub(crate) fn refuse_if_inconsistent(&self) -> CortexResult<()> {
        refuse_if_dead(self.cortex.key_typed(), self.dead_owner)
    }
}

impl<T: ShmSafe, L: CortexSync> Deref for CortexGuard<'_, T, L> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the exclusive lock is held for the guard's lifetime (CortexSync contract),
        // the pointer is aligned and inside the segment, and T: ShmSafe is valid for any bytes.
        unsafe { self.cortex.value_ptr().as_ref() }
    }
}

impl<T: ShmSafe, L: CortexSync> DerefMut for CortexGuard<'_, T, L> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; the exclusive hold and `&mut self` make this the only
        // reference to the value in any process.
        unsafe { self.cortex.value_ptr().as_mut() }
    }
}

impl<T: ShmSafe, L: CortexSync> Drop for CortexGuard<'_, T, L> {
    #[inline]
    fn drop(&mut self) {
        if current_pid() != self.pid {
            // A forked child inherited this guard: the lock is the parent's.
            return;
        }
        let header = self.cortex.header();
        if std::thread::panicking() && !self.panicking_at_acquire {
            header.mark_inconsistent(self.pid);
        }
        header.clear_holder();
        // SAFETY: this guard holds the lock exclusively in this process (pid checked above).
        let result = unsafe {
            self.cortex
                .raw_lock()
                .unlock(self.cortex.key_typed(), self.cortex.lock_state())
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "neocortex: releasing the lock failed");
        }
    }
}

impl<T: ShmSafe + std::fmt::Debug, L: CortexSync> std::fmt::Debug for CortexGuard<'_, T, L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CortexGuard")
            .field("value", &**self)
            .field("owner_died", &self.owner_died())
            .finish()
    }
}

impl<'a, T: ShmSafe, L: CortexSync> CortexReadGuard<'a, T, L> {
    #[inline]
    pub(crate) fn acquire(cortex: &'a Cortex<T, L>, wait: Wait) -> CortexResult<Self> {
        cortex
            .raw_lock()
            .lock_shared(cortex.key_typed(), cortex.lock_state(), wait)?;
        Ok(Self {
            cortex,
            pid: current_pid(),
            dead_owner: cortex.header().dead_holder_seen_shared(),
            _not_send: PhantomData,
        })
    }

    /// Whether the value may be half-written by a holder that died; see
    /// [`CortexGuard::owner_died`].
    pub fn owner_died(&self) -> bool {
        self.dead_owner.is_some()
    }

    pub(crate) fn refuse_if_inconsistent(&self) -> CortexResult<()> {
        refuse_if_dead(self.cortex.key_typed(), self.dead_owner)
    }
}

impl<T: ShmSafe, L: CortexSync> Deref for CortexReadGuard<'_, T, L> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: a shared hold excludes every exclusive holder (CortexSync contract), so no
        // `&mut T` exists anywhere while this `&T` lives; pointer aligned and in bounds.
        unsafe { self.cortex.value_ptr().as_ref() }
    }
}

impl<T: ShmSafe, L: CortexSync> Drop for CortexReadGuard<'_, T, L> {
    #[inline]
    fn drop(&mut self) {
        if current_pid() != self.pid {
            return;
        }
        // SAFETY: this guard holds the lock shared in this process (pid checked above).
        let result = unsafe {
            self.cortex
                .raw_lock()
                .unlock_shared(self.cortex.key_typed(), self.cortex.lock_state())
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "neocortex: releasing the shared lock failed");
        }
    }
}

impl<T: ShmSafe + std::fmt::Debug, L: CortexSync> std::fmt::Debug for CortexReadGuard<'_, T, L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CortexReadGuard")
            .field("value", &**self)
            .field("owner_died", &self.owner_died())
            .finish()
    }
}

/// `OwnerDied` while a dead holder's value is unrepaired: what by-value access returns.
fn refuse_if_dead(key: crate::Key, dead_owner: Option<i32>) -> CortexResult<()> {
    match dead_owner {
        Some(pid) => Err(CortexError::OwnerDied { key, pid }),
        None => Ok(()),
    }
}

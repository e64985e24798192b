//! The settings every built-in lock takes: the permission of the segment and the lock.

use neocortex_core::Permission;

/// The seed crate's name for the permission of a segment and its lock.
pub type SemaphorePermission = Permission;

/// Settings of every built-in lock ([`Semaphore`](crate::Semaphore),
/// [`SysvSemaphore`](crate::SysvSemaphore), [`RwSemaphore`](crate::RwSemaphore),
/// [`SeqLock`](crate::SeqLock)): the permission mode, which governs the segment, its members
/// set and the lock's kernel objects alike.
///
/// ```
/// use neocortex::{Cortex, Semaphore, SemaphorePermission, SemaphoreSettings};
///
/// let key = neocortex::random_key()?;
/// let settings = SemaphoreSettings { mode: SemaphorePermission::OwnerAndGroup };
/// let cortex: Cortex<_, Semaphore> = Cortex::new(key, 42.0_f64, Some(&settings))?;
/// # Ok::<(), neocortex::CortexError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SemaphoreSettings {
    /// Who may use the segment and the lock. Defaults to [`Permission::OwnerOnly`].
    pub mode: SemaphorePermission,
}

/// The settings of a [`Mutex`](crate::Mutex): the same as a [`Semaphore`](crate::Semaphore)'s.
pub type MutexSettings = SemaphoreSettings;

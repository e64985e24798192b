//! The lock contract: what a lock must do to guard a value in a shared segment.

use std::fmt::Debug;
use std::time::{Duration, Instant};

use crate::error::{CortexError, CortexResult};
use crate::key::Key;
use crate::marker::ShmSafe;
use crate::mode::Permission;

/// How long an acquire may wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Do not wait: fail with [`ErrorKind::WouldBlock`](crate::ErrorKind::WouldBlock).
    Never,
    /// Wait until the deadline, then fail with [`ErrorKind::Timeout`](crate::ErrorKind::Timeout).
    Until {
        /// When to give up.
        deadline: Instant,
        /// The timeout the caller gave, for the error message.
        requested: Duration,
    },
    /// Wait as long as it takes.
    Forever,
}

/// What is left of a [`Wait`] now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Remaining {
    /// Do not block.
    NoWait,
    /// Block at most this long (never zero).
    For(Duration),
    /// Block without limit.
    Forever,
    /// The deadline has passed.
    Expired,
}

impl Wait {
    /// A wait of `timeout` from now. A timeout too large for an `Instant` waits forever.
    pub fn timeout(timeout: Duration) -> Self {
        match Instant::now().checked_add(timeout) {
            Some(deadline) => Self::Until {
                deadline,
                requested: timeout,
            },
            None => Self::Forever,
        }
    }

    /// What is left now; recompute after every interrupted wait.
    pub fn remaining(&self) -> Remaining {
        match *self {
            Self::Never => Remaining::NoWait,
            Self::Forever => Remaining::Forever,
            Self::Until { deadline, .. } => match deadline.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Remaining::For(left),
                _ => Remaining::Expired,
            },
        }
    }

    /// The error for giving up: `WouldBlock` for [`Wait::Never`], else `Timeout`.
    pub fn gave_up(&self, key: Key) -> CortexError {
        match *self {
            Self::Never => CortexError::WouldBlock { key },
            Self::Until { requested, .. } => CortexError::Timeout {
                key,
                after: requested,
            },
            Self::Forever => CortexError::Timeout {
                key,
                after: Duration::MAX,
            },
        }
    }
}

/// A lock whose state lives in a shared segment and that excludes across processes.
///
/// `Cortex<T, L>` stores an `L::State` in the segment, right after the header. The creating
/// process calls [`create`](Self::create) once on a zero-filled state before any other
/// process can see the segment as ready; every other process calls
/// [`attach`](Self::attach) on the ready state. Each process keeps the returned `Self` as
/// its handle (a kernel id, or nothing).
///
/// Owner death is tracked by `Cortex`, not by the lock: the holder's pid is written to the
/// header under the exclusive lock and cleared on release, so a lock only has to make sure
/// that a dead holder does not block the others forever.
///
/// # Safety
///
/// Implementors promise, and `Cortex` relies on it for the soundness of `&mut T`:
///
/// 1. **Exclusion across processes.** Between a successful [`lock`](Self::lock) and the
///    matching [`unlock`](Self::unlock), no other caller in *any* process attached to the
///    same segment succeeds in `lock` or `lock_shared`. Shared holders exclude exclusive ones
///    the same way. (A lock that parks waiters in a per-process table, like `parking_lot`,
///    does not qualify.)
/// 2. **Acquire/release ordering.** `lock` synchronises-with the previous `unlock` so the
///    value written under the lock is visible to the next holder.
/// 3. **State in the segment.** All shared lock state is in `Self::State` (or a kernel
///    object whose id is stored there); `State` must be valid when zero-filled before
///    `create` runs, and every field that changes after `create` must be an atomic, since
///    other processes write it while this one holds a `&State`.
/// 4. **No deadlock on holder death.** If a process dies holding the lock, a later `lock`
///    must eventually succeed (a SysV `SEM_UNDO` release or a takeover by a waiter).
/// 5. **Honest waits.** [`Wait::Never`] never blocks; [`Wait::Until`] gives up after the
///    deadline (retrying interrupted waits with the remaining time); a removed kernel object
///    is reported as [`CortexError::LockRemoved`].
pub unsafe trait CortexSync: Sized + Send + Sync + Debug + 'static {
    /// Options given at creation, e.g. the permission mode.
    type Settings: Default + Debug;

    /// The lock's state inside the segment; zero-filled before [`create`](Self::create).
    type State: ShmSafe;

    /// A short stable name, part of the segment's layout fingerprint: attaching with another
    /// lock kind is a `LayoutMismatch`.
    const KIND: &'static str;

    /// Whether [`lock_shared`](Self::lock_shared) lets several holders in at once. When
    /// `false`, shared access falls back to exclusive access.
    const SHARED: bool = false;

    /// Whether the lock identifies holders by pid (so every process using it must see the
    /// same pids, i.e. share one pid namespace). For such locks, attach refuses a segment
    /// whose creator pid, as the kernel reports it to the attaching process, differs from the
    /// pid the creator recorded: the attacher lives in another pid namespace, where a live
    /// holder would look dead.
    const PID_BASED: bool = false;

    /// The mode for the segment and the lock, from the settings.
    fn permission(settings: &Self::Settings) -> Permission;

    /// Sets up the lock in a zero-filled `state` (creating kernel objects with `mode`).
    ///
    /// # Errors
    ///
    /// A system error from creating the lock; it must leave nothing behind
    /// (`CleanSystem`) or name what it left (`DirtySystem`).
    fn create(key: Key, state: &Self::State, settings: &Self::Settings) -> CortexResult<Self>;

    /// Opens the lock of a ready segment.
    ///
    /// # Errors
    ///
    /// The lock's kernel object is gone or not accessible.
    fn attach(key: Key, state: &Self::State) -> CortexResult<Self>;

    /// Acquires the lock exclusively, waiting as `wait` says.
    ///
    /// # Errors
    ///
    /// `WouldBlock`, `Timeout`, `LockRemoved`, `PermissionDenied`.
    fn lock(&self, key: Key, state: &Self::State, wait: Wait) -> CortexResult<()>;

    /// Releases an exclusive hold.
    ///
    /// # Errors
    ///
    /// `LockRemoved` when the lock vanished meanwhile.
    ///
    /// # Safety
    ///
    /// The calling process holds the lock exclusively, through this handle.
    unsafe fn unlock(&self, key: Key, state: &Self::State) -> CortexResult<()>;

    /// Acquires the lock for shared (read) access. Defaults to [`lock`](Self::lock).
    ///
    /// # Errors
    ///
    /// As [`lock`](Self::lock).
    fn lock_shared(&self, key: Key, state: &Self::State, wait: Wait) -> CortexResult<()> {
        self.lock(key, state, wait)
    }

    /// Releases a shared hold. Defaults to [`unlock`](Self::unlock).
    ///
    /// # Errors
    ///
    /// As [`unlock`](Self::unlock).
    ///
    /// # Safety
    ///
    /// The calling process holds the lock shared, through this handle.
    unsafe fn unlock_shared(&self, key: Key, state: &Self::State) -> CortexResult<()> {
        // SAFETY: forwarded; when SHARED is false a shared hold is an exclusive one.
        unsafe { self.unlock(key, state) }
    }

    /// Removes the lock's kernel objects, if any. Called by the owner before the segment is
    /// removed, and when reclaiming a stale segment whose `state` may be half set up.
    ///
    /// # Errors
    ///
    /// The removal failed; the error names what is left.
    fn destroy(key: Key, state: &Self::State) -> CortexResult<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_time_shrinks_and_expires() {
        assert_eq!(Wait::Never.remaining(), Remaining::NoWait);
        assert_eq!(Wait::Forever.remaining(), Remaining::Forever);
        assert_eq!(Wait::timeout(Duration::MAX), Wait::Forever);
        let w = Wait::timeout(Duration::from_secs(60));
        match w.remaining() {
            Remaining::For(left) => assert!(left <= Duration::from_secs(60)),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            Wait::timeout(Duration::ZERO).remaining(),
            Remaining::Expired
        );
        assert!(matches!(
            Wait::Never.gave_up(Key(1)),
            CortexError::WouldBlock { .. }
        ));
        let timeout = Wait::timeout(Duration::from_millis(5)).gave_up(Key(1));
        assert_eq!(
            timeout.to_string(),
            "key 1 (0x00000001): lock not acquired within 5ms"
        );
    }
}

//! The error model: what failed, on which key, and whether anything was left behind.

use std::fmt;
use std::time::Duration;

use neocortex_sys::{Errno, SysError};

use crate::key::Key;

/// A failed system call: which call, and the OS error number it returned.
///
/// Third-party locks make one from their own failed calls with [`OsError::new`],
/// [`OsError::last`] or [`OsError::from_io`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct OsError {
    call: &'static str,
    errno: i32,
}

impl OsError {
    /// `call` failed with the OS error number `errno`.
    pub fn new(call: &'static str, errno: i32) -> Self {
        Self { call, errno }
    }

    /// `call` just failed: reads the calling thread's `errno`.
    pub fn last(call: &'static str) -> Self {
        Self::from_io(call, &std::io::Error::last_os_error())
    }

    /// `call` failed with `error` (its OS error number, or 0 if it has none).
    pub fn from_io(call: &'static str, error: &std::io::Error) -> Self {
        Self::new(call, error.raw_os_error().unwrap_or(0))
    }

    /// The failed call, e.g. `"shmget"`.
    pub fn call(&self) -> &'static str {
        self.call
    }

    /// The OS error number.
    pub fn raw_os_error(&self) -> i32 {
        self.errno
    }
}

/// `e.os()`: a `-sys` error as an [`OsError`].
pub(crate) trait IntoOs {
    fn os(self) -> OsError;
}

impl IntoOs for SysError {
    fn os(self) -> OsError {
        OsError::new(self.call, self.errno.raw())
    }
}

impl fmt::Display for OsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} failed: {}",
            self.call,
            std::io::Error::from_raw_os_error(self.errno)
        )
    }
}

impl fmt::Debug for OsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "OsError {{ call: {:?}, errno: {} ({}) }}",
            self.call,
            self.errno,
            std::io::Error::from_raw_os_error(self.errno)
        )
    }
}

impl std::error::Error for OsError {}

/// Result of a neocortex operation.
pub type CortexResult<T> = Result<T, CortexError>;

/// What kind of failure an error is, for callers that branch on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Nothing exists on the key (attach before create, or after the owner removed it).
    NotFound,
    /// Something already exists on the key.
    AlreadyExists,
    /// The caller lacks the permission bits or ownership the call needs.
    PermissionDenied,
    /// The segment holds another type, another lock kind, or is not a neocortex segment.
    LayoutMismatch,
    /// The segment's creator has not finished (or never finished) initialising it.
    NotInitialized,
    /// The lock was not acquired within the given time.
    Timeout,
    /// The lock is held and the caller asked not to wait.
    WouldBlock,
    /// The lock's kernel object was removed from outside (`ipcrm`, systemd `RemoveIPC`).
    LockRemoved,
    /// A holder died holding the lock and the value has not been marked consistent since.
    OwnerDied,
    /// A system limit was reached (`shmmni`, `shmall`, `semmni`, memory).
    LimitReached,
    /// An argument was invalid (a reserved key, a size the kernel refuses).
    InvalidInput,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// The usual meaning of an OS error number from a SysV IPC call.
    pub fn from_raw_os_error(errno: i32) -> Self {
        match Errno(errno) {
            Errno::ENOENT => Self::NotFound,
            Errno::EEXIST => Self::AlreadyExists,
            Errno::EACCES | Errno::EPERM => Self::PermissionDenied,
            Errno::ENOSPC | Errno::ENOMEM => Self::LimitReached,
            Errno::EIDRM => Self::LockRemoved,
            Errno::EINVAL | Errno::ERANGE | Errno::EFBIG => Self::InvalidInput,
            Errno::EAGAIN => Self::WouldBlock,
            _ => Self::Other,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotFound => "not found",
            Self::AlreadyExists => "already exists",
            Self::PermissionDenied => "permission denied",
            Self::LayoutMismatch => "layout mismatch",
            Self::NotInitialized => "not initialized",
            Self::Timeout => "timed out",
            Self::WouldBlock => "would block",
            Self::LockRemoved => "lock removed",
            Self::OwnerDied => "owner died",
            Self::LimitReached => "limit reached",
            Self::InvalidInput => "invalid input",
            Self::Other => "other error",
        })
    }
}

/// A SysV object that a failed or best-effort operation left behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Leftover {
    /// A shared memory segment, by id (`ipcrm -m ID` removes it).
    Segment(i32),
    /// A semaphore set, by id (`ipcrm -s ID` removes it).
    SemaphoreSet(i32),
    /// A mapping of a segment in this process, at this address.
    Mapping(usize),
}

impl fmt::Display for Leftover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Segment(id) => write!(f, "shared memory segment id {id} (`ipcrm -m {id}`)"),
            Self::SemaphoreSet(id) => write!(f, "semaphore set id {id} (`ipcrm -s {id}`)"),
            Self::Mapping(addr) => write!(
                f,
                "a mapping at {addr:#x} in process {}",
                std::process::id()
            ),
        }
    }
}

/// The objects left behind by a dirty failure.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Leftovers(pub Vec<Leftover>);

impl fmt::Display for Leftovers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, item) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{item}")?;
        }
        Ok(())
    }
}

/// Every error neocortex returns.
///
/// The two system variants keep the seed crate's names: [`CleanSystem`](Self::CleanSystem)
/// means the system is exactly as before the call; [`DirtySystem`](Self::DirtySystem) means
/// something survived and the error names it so a person can remove it. The other variants
/// made no change to the system either.
///
/// Every message names the operation, the key (in decimal and as `ipcs` shows it) and what
/// to do next. The failed system call, where there is one, is the error's
/// [`source`](std::error::Error::source), not repeated in the message, so that error
/// reporters that print the chain (`anyhow`'s `{:#}`) print each cause once.
///
/// ```
/// use neocortex::{Cortex, ErrorKind, Semaphore};
///
/// // Nothing on this key: attach says so, and what to do.
/// let key = neocortex::random_key()?;
/// let err = Cortex::<u64, Semaphore>::attach(key).unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::NotFound);
/// assert!(!err.is_dirty(), "nothing was left behind");
/// assert_eq!(err.key(), key);
/// assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
/// println!("{err}"); // attach on key ... failed: nothing is on the key: create it first ...
/// # Ok::<(), neocortex::CortexError>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CortexError {
    /// A system call failed and nothing was left behind.
    #[error("{op} on {k} failed{hint}", k = Key(*key))]
    CleanSystem {
        /// This crate's operation, e.g. `"create segment"`.
        op: &'static str,
        /// The key it was for.
        key: i32,
        /// The classification of the failure.
        kind: ErrorKind,
        /// What to do about it, starting with `": "`, or empty.
        hint: Hint,
        /// The failed call and its OS error number.
        #[source]
        source: OsError,
    },
    /// A system call failed and something was left behind.
    #[error("{op} on {k} failed and left behind {leftovers}: remove them by hand", k = Key(*key))]
    DirtySystem {
        /// This crate's operation.
        op: &'static str,
        /// The key it was for.
        key: i32,
        /// The classification of the failure.
        kind: ErrorKind,
        /// What survived the failure.
        leftovers: Leftovers,
        /// The failed call and its OS error number.
        #[source]
        source: OsError,
    },
    /// The segment on the key holds another type or lock than the caller asked for.
    #[error(
        "{k} holds {found}, but {expected} was asked for: attach with the segment's own type \
         and lock, or use another key",
        k = Key(*key)
    )]
    LayoutMismatch {
        /// The key.
        key: i32,
        /// What the caller's types need, e.g. "`f64` (8 bytes, align 8) with lock `semaphore`".
        expected: String,
        /// What the segment holds.
        found: String,
    },
    /// The segment on the key was not made by neocortex, or its header is damaged, or it is
    /// outside the trust the caller gave (another user's, or writable by everyone).
    #[error("{k} holds a segment this process does not use: {reason}; it was left untouched", k = Key(*key))]
    ForeignSegment {
        /// The key.
        key: i32,
        /// What was wrong with it, and what to do.
        reason: String,
    },
    /// The segment's creator has not finished initialising it.
    #[error("{k}: the segment was not ready after {waited:?}: {detail}", k = Key(*key))]
    NotInitialized {
        /// The key.
        key: i32,
        /// How long attach waited.
        waited: Duration,
        /// The creator's state, and what to do.
        detail: String,
    },
    /// The lock was not acquired, or nothing changed, in time.
    #[error(
        "{k}: waited {after:?} for {waiting_for} in vain: retry, wait longer, or find who holds \
         the lock with `neocortex inspect`",
        k = Key(*key)
    )]
    Timeout {
        /// The key.
        key: i32,
        /// The timeout the caller gave.
        after: Duration,
        /// What was waited for: `"the lock"` or `"a change"`.
        waiting_for: &'static str,
    },
    /// The lock is held and the caller asked not to wait.
    #[error("{k}: the lock is held by another holder (try again, or wait with a timeout)", k = Key(*key))]
    WouldBlock {
        /// The key.
        key: i32,
    },
    /// The segment (or its lock) was removed while this handle was attached.
    #[error(
        "{k}: the segment was removed while this handle was attached (by its owner, `ipcrm` or \
         systemd's RemoveIPC); it cannot be locked any more: drop this handle and attach to, \
         or create, the new segment",
        k = Key(*key)
    )]
    LockRemoved {
        /// The key.
        key: i32,
        /// The call that found it gone, if one did (else the segment's header said so).
        #[source]
        source: Option<OsError>,
    },
    /// The key is taken, and the segment on it was left alone; the reason says by what and
    /// what to do.
    #[error("{k} is taken: {reason}", k = Key(*key))]
    Occupied {
        /// The key.
        key: i32,
        /// What is on the key, and what to do.
        reason: String,
    },
    /// A holder died or panicked holding the lock and the value was not repaired since; a
    /// by-value access refuses it. Use a guard (or `write`) to repair it.
    #[error(
        "{k}: {who} died or panicked holding the lock; the value may be half-written (lock \
         it, repair the value and call mark_consistent(), or replace it with write())",
        k = Key(*key),
        who = match pid { -1 => "a holder".to_string(), pid => format!("pid {pid}") }
    )]
    OwnerDied {
        /// The key.
        key: i32,
        /// The holder that died, as it saw its own pid; -1 when not known.
        pid: i32,
    },
    /// An argument was refused before any system call.
    #[error("{k}: {reason}", k = Key(*key))]
    InvalidInput {
        /// The key.
        key: i32,
        /// Why, and what to do instead.
        reason: String,
    },
}

/// A hint appended to an error message: what the user can do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hint(pub String);

impl Hint {
    /// No hint.
    pub fn none() -> Self {
        Self(String::new())
    }
}

impl fmt::Display for Hint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            Ok(())
        } else {
            write!(f, ": {}", self.0)
        }
    }
}

impl CortexError {
    /// A clean system error (nothing left behind), classified from its OS error number.
    pub fn clean(op: &'static str, key: i32, source: OsError) -> Self {
        let kind = ErrorKind::from_raw_os_error(source.errno);
        Self::CleanSystem {
            op,
            key,
            kind,
            hint: Hint::none(),
            source,
        }
    }

    /// A clean system error with a hint on what to do.
    pub fn clean_with_hint(
        op: &'static str,
        key: i32,
        kind: ErrorKind,
        source: OsError,
        hint: impl Into<String>,
    ) -> Self {
        Self::CleanSystem {
            op,
            key,
            kind,
            hint: Hint(hint.into()),
            source,
        }
    }

    /// A dirty system error naming what was left behind.
    pub fn dirty(op: &'static str, key: i32, source: OsError, leftovers: Vec<Leftover>) -> Self {
        let kind = ErrorKind::from_raw_os_error(source.errno);
        Self::DirtySystem {
            op,
            key,
            kind,
            leftovers: Leftovers(leftovers),
            source,
        }
    }

    /// The segment or its lock was removed: `source` is the call that found it gone, if any.
    pub fn lock_removed(key: i32, source: Option<OsError>) -> Self {
        Self::LockRemoved { key, source }
    }

    /// Combines the results of several cleanup steps into one: the first error, made dirty
    /// with the leftovers of every failed step, so that nothing left behind goes unnamed.
    pub(crate) fn combine(results: impl IntoIterator<Item = CortexResult<()>>) -> CortexResult<()> {
        let mut first: Option<Self> = None;
        let mut leftovers = Vec::new();
        for result in results {
            if let Err(e) = result {
                leftovers.extend_from_slice(e.leftovers());
                first.get_or_insert(e);
            }
        }
        match first {
            None => Ok(()),
            Some(e) if leftovers.len() == e.leftovers().len() => Err(e),
            Some(
                Self::CleanSystem {
                    op,
                    key,
                    kind,
                    source,
                    ..
                }
                | Self::DirtySystem {
                    op,
                    key,
                    kind,
                    source,
                    ..
                },
            ) => Err(Self::DirtySystem {
                op,
                key,
                kind,
                leftovers: Leftovers(leftovers),
                source,
            }),
            Some(other) => Err(other),
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::CleanSystem { kind, .. } | Self::DirtySystem { kind, .. } => *kind,
            Self::LayoutMismatch { .. } | Self::ForeignSegment { .. } => ErrorKind::LayoutMismatch,
            Self::Occupied { .. } => ErrorKind::AlreadyExists,
            Self::OwnerDied { .. } => ErrorKind::OwnerDied,
            Self::NotInitialized { .. } => ErrorKind::NotInitialized,
            Self::Timeout { .. } => ErrorKind::Timeout,
            Self::WouldBlock { .. } => ErrorKind::WouldBlock,
            Self::LockRemoved { .. } => ErrorKind::LockRemoved,
            Self::InvalidInput { .. } => ErrorKind::InvalidInput,
        }
    }

    /// Whether something was left behind (a [`DirtySystem`](Self::DirtySystem) error).
    pub fn is_dirty(&self) -> bool {
        matches!(self, Self::DirtySystem { .. })
    }

    /// What was left behind, if anything.
    pub fn leftovers(&self) -> &[Leftover] {
        match self {
            Self::DirtySystem { leftovers, .. } => &leftovers.0,
            _ => &[],
        }
    }

    /// The OS error number behind this error, if a system call failed.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Self::CleanSystem { source, .. } | Self::DirtySystem { source, .. } => {
                Some(source.errno)
            }
            Self::LockRemoved { source, .. } => source.map(|s| s.errno),
            _ => None,
        }
    }

    /// The key the error is about.
    pub fn key(&self) -> i32 {
        match self {
            Self::CleanSystem { key, .. }
            | Self::DirtySystem { key, .. }
            | Self::LayoutMismatch { key, .. }
            | Self::ForeignSegment { key, .. }
            | Self::NotInitialized { key, .. }
            | Self::Timeout { key, .. }
            | Self::WouldBlock { key }
            | Self::Occupied { key, .. }
            | Self::OwnerDied { key, .. }
            | Self::LockRemoved { key, .. }
            | Self::InvalidInput { key, .. } => *key,
        }
    }
}

#[cfg(test)]
mod tests;

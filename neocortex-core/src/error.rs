//! The error model: what failed, on which key, and whether anything was left behind.

use std::fmt;
use std::time::Duration;

use neocortex_sys::{Errno, SysError};

use crate::key::Key;

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
    /// The usual meaning of an `errno` from a SysV IPC call.
    pub fn from_errno(errno: Errno) -> Self {
        match errno {
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

/// A SysV object that a failed or best-effort operation left behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CortexError {
    /// A system call failed and nothing was left behind.
    #[error("{op} on {key}: {source}{hint}")]
    CleanSystem {
        /// This crate's operation, e.g. `"create segment"`.
        op: &'static str,
        /// The key it was for.
        key: Key,
        /// The classification of the failure.
        kind: ErrorKind,
        /// What to do about it, starting with `"; "`, or empty.
        hint: Hint,
        /// The failed call and its `errno`.
        #[source]
        source: SysError,
    },
    /// A system call failed and something was left behind.
    #[error("{op} on {key}: {source}; left behind: {leftovers}")]
    DirtySystem {
        /// This crate's operation.
        op: &'static str,
        /// The key it was for.
        key: Key,
        /// The classification of the failure.
        kind: ErrorKind,
        /// What survived the failure.
        leftovers: Leftovers,
        /// The failed call and its `errno`.
        #[source]
        source: SysError,
    },
    /// The segment on the key is not what the caller asked for.
    #[error("{key} holds {found}, but {expected} was asked for")]
    LayoutMismatch {
        /// The key.
        key: Key,
        /// What the caller's types need, e.g. "`f64` (8 bytes, align 8) with lock `semaphore`".
        expected: String,
        /// What the segment holds.
        found: String,
    },
    /// The segment on the key was not made by neocortex, or its header is damaged.
    #[error(
        "{key} holds a segment that is not a neocortex segment ({reason}); it was left untouched"
    )]
    ForeignSegment {
        /// The key.
        key: Key,
        /// What was wrong with it.
        reason: String,
    },
    /// The segment's creator has not finished initialising it.
    #[error("{key}: the segment was not ready after {waited:?} ({detail})")]
    NotInitialized {
        /// The key.
        key: Key,
        /// How long attach waited.
        waited: Duration,
        /// The creator's state, and what to do.
        detail: String,
    },
    /// The lock was not acquired in time.
    #[error("{key}: lock not acquired within {after:?}")]
    Timeout {
        /// The key.
        key: Key,
        /// The timeout the caller gave.
        after: Duration,
    },
    /// The lock is held and the caller asked not to wait.
    #[error("{key}: lock is held by another holder")]
    WouldBlock {
        /// The key.
        key: Key,
    },
    /// The lock's kernel object is gone.
    #[error("{key}: the lock was removed from outside this handle ({source}); the segment cannot be locked any more")]
    LockRemoved {
        /// The key.
        key: Key,
        /// The call that found it gone.
        #[source]
        source: SysError,
    },
    /// The key is taken, and the segment on it was left alone; the reason says by what.
    #[error("{key} is taken: {reason}")]
    Occupied {
        /// The key.
        key: Key,
        /// What is on the key, and what to do.
        reason: String,
    },
    /// A holder died or panicked holding the lock and the value was not repaired since; a
    /// by-value access refuses it. Use a guard to look, repair and mark it consistent.
    #[error(
        "{key}: pid {pid} died or panicked holding the lock; the value may be half-written \
             (lock it, repair the value and call mark_consistent())"
    )]
    OwnerDied {
        /// The key.
        key: Key,
        /// The holder that died.
        pid: i32,
    },
    /// An argument was refused before any system call.
    #[error("{key}: {reason}")]
    InvalidInput {
        /// The key.
        key: Key,
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
            write!(f, "; {}", self.0)
        }
    }
}

impl CortexError {
    /// A clean system error, classified from its `errno`.
    pub fn clean(op: &'static str, key: Key, source: SysError) -> Self {
        let kind = ErrorKind::from_errno(source.errno);
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
        key: Key,
        kind: ErrorKind,
        source: SysError,
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
    pub fn dirty(op: &'static str, key: Key, source: SysError, leftovers: Vec<Leftover>) -> Self {
        let kind = ErrorKind::from_errno(source.errno);
        Self::DirtySystem {
            op,
            key,
            kind,
            leftovers: Leftovers(leftovers),
            source,
        }
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
            Self::CleanSystem { source, .. }
            | Self::DirtySystem { source, .. }
            | Self::LockRemoved { source, .. } => Some(source.errno.raw()),
            _ => None,
        }
    }

    /// The key the error is about.
    pub fn key(&self) -> Key {
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
mod tests {
    use super::*;

    fn sys(errno: Errno) -> SysError {
        SysError {
            call: "shmget",
            errno,
        }
    }

    #[test]
    fn errno_classification() {
        let cases = [
            (Errno::ENOENT, ErrorKind::NotFound),
            (Errno::EEXIST, ErrorKind::AlreadyExists),
            (Errno::EACCES, ErrorKind::PermissionDenied),
            (Errno::EPERM, ErrorKind::PermissionDenied),
            (Errno::ENOSPC, ErrorKind::LimitReached),
            (Errno::ENOMEM, ErrorKind::LimitReached),
            (Errno::EIDRM, ErrorKind::LockRemoved),
            (Errno::EINVAL, ErrorKind::InvalidInput),
            (Errno(libc::EBADF), ErrorKind::Other),
        ];
        for (errno, kind) in cases {
            assert_eq!(ErrorKind::from_errno(errno), kind, "{errno:?}");
            assert_eq!(
                CortexError::clean("create segment", Key(1), sys(errno)).kind(),
                kind
            );
        }
    }

    #[test]
    fn messages_name_operation_key_call_and_leftovers() {
        let e = CortexError::dirty(
            "remove segment",
            Key(0x2a),
            sys(Errno::EPERM),
            vec![Leftover::Segment(77), Leftover::SemaphoreSet(78)],
        );
        let text = e.to_string();
        assert!(
            text.starts_with("remove segment on key 42 (0x0000002a): shmget failed"),
            "{text}"
        );
        assert!(
            text.contains("ipcrm -m 77") && text.contains("ipcrm -s 78"),
            "{text}"
        );
        assert!(e.is_dirty());
        assert_eq!(e.raw_os_error(), Some(libc::EPERM));
        assert_eq!(e.leftovers().len(), 2);
        let source = std::error::Error::source(&e)
            .map(ToString::to_string)
            .unwrap_or_default();
        assert!(
            source.starts_with("shmget failed: Operation not permitted"),
            "{source}"
        );
    }

    #[test]
    fn combine_names_every_leftover() {
        assert!(CortexError::combine([Ok(()), Ok(())]).is_ok());
        let sem = CortexError::dirty(
            "drop",
            Key(1),
            sys(Errno::EPERM),
            vec![Leftover::SemaphoreSet(4)],
        );
        let shm = CortexError::dirty(
            "drop",
            Key(1),
            sys(Errno::EPERM),
            vec![Leftover::Segment(5)],
        );
        let e = CortexError::combine([Err(sem), Ok(()), Err(shm)]).unwrap_err();
        assert_eq!(
            e.leftovers(),
            &[Leftover::SemaphoreSet(4), Leftover::Segment(5)]
        );
        assert!(e.is_dirty());
        let clean = CortexError::clean("drop", Key(1), sys(Errno::EINVAL));
        let e = CortexError::combine([Err(clean)]).unwrap_err();
        assert!(!e.is_dirty());
    }

    #[test]
    fn clean_errors_carry_hints_and_are_not_dirty() {
        let e = CortexError::clean_with_hint(
            "attach",
            Key(5),
            ErrorKind::NotFound,
            sys(Errno::ENOENT),
            "create it first with Cortex::new",
        );
        assert!(!e.is_dirty());
        assert!(
            e.to_string()
                .ends_with("; create it first with Cortex::new"),
            "{e}"
        );
        assert!(e.leftovers().is_empty());
        assert_eq!(e.key(), Key(5));
        let t = CortexError::Timeout {
            key: Key(5),
            after: Duration::from_millis(3),
        };
        assert_eq!((t.kind(), t.raw_os_error()), (ErrorKind::Timeout, None));
    }
}

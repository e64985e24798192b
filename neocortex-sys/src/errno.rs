//! `errno` as a value, captured right after the failing call.

use std::fmt;

/// An OS error number, as `errno` held it right after a failing call.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct Errno(pub libc::c_int);

impl Errno {
    /// Permission denied.
    pub const EACCES: Self = Self(libc::EACCES);
    /// Resource temporarily unavailable (also a semaphore timeout).
    pub const EAGAIN: Self = Self(libc::EAGAIN);
    /// The object exists already.
    pub const EEXIST: Self = Self(libc::EEXIST);
    /// Value too large (a semaphore number out of range).
    pub const EFBIG: Self = Self(libc::EFBIG);
    /// The identifier was removed.
    pub const EIDRM: Self = Self(libc::EIDRM);
    /// Interrupted by a signal.
    pub const EINTR: Self = Self(libc::EINTR);
    /// Invalid argument (also: an id that no longer exists).
    pub const EINVAL: Self = Self(libc::EINVAL);
    /// No such object.
    pub const ENOENT: Self = Self(libc::ENOENT);
    /// Out of memory or address space.
    pub const ENOMEM: Self = Self(libc::ENOMEM);
    /// A system-wide limit was reached.
    pub const ENOSPC: Self = Self(libc::ENOSPC);
    /// Operation not permitted.
    pub const EPERM: Self = Self(libc::EPERM);
    /// Result out of range.
    pub const ERANGE: Self = Self(libc::ERANGE);
    /// No such process.
    pub const ESRCH: Self = Self(libc::ESRCH);
    /// A futex wait timed out.
    pub const ETIMEDOUT: Self = Self(libc::ETIMEDOUT);

    /// Reads the calling thread's `errno`.
    pub fn last() -> Self {
        Self(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }

    /// The raw number.
    pub fn raw(self) -> libc::c_int {
        self.0
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Errno({}: {})",
            self.0,
            std::io::Error::from_raw_os_error(self.0)
        )
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&std::io::Error::from_raw_os_error(self.0), f)
    }
}

/// A failed system call: which call, and the `errno` it left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SysError {
    /// The call, as a person would type it in a search (`"shmget"`, `"semctl(IPC_RMID)"`).
    pub call: &'static str,
    /// What the kernel said.
    pub errno: Errno,
}

impl SysError {
    /// Captures `errno` for `call`. Call it first thing after the failure.
    pub fn last(call: &'static str) -> Self {
        Self {
            call,
            errno: Errno::last(),
        }
    }
}

impl fmt::Display for SysError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {}", self.call, self.errno)
    }
}

impl std::error::Error for SysError {}

impl From<SysError> for std::io::Error {
    fn from(e: SysError) -> Self {
        std::io::Error::from_raw_os_error(e.errno.0)
    }
}

/// Result of a raw call.
pub type SysResult<T> = Result<T, SysError>;

/// Turns the `-1` convention into a `Result`, capturing `errno` for `call`.
pub(crate) fn check(ret: libc::c_int, call: &'static str) -> SysResult<libc::c_int> {
    if ret == -1 {
        Err(SysError::last(call))
    } else {
        Ok(ret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_call_and_error() {
        let e = SysError {
            call: "shmget",
            errno: Errno::ENOENT,
        };
        let text = e.to_string();
        assert!(text.starts_with("shmget failed: "), "{text}");
        assert!(text.contains("No such file"), "{text}");
    }

    #[test]
    fn check_keeps_success_and_captures_failure() {
        assert_eq!(check(7, "x"), Ok(7));
        // SAFETY: close(-1) is a harmless call that fails with EBADF and sets errno.
        let ret = unsafe { libc::close(-1) };
        let err = check(ret, "close").unwrap_err();
        assert_eq!(err.errno, Errno(libc::EBADF));
        assert_eq!(err.call, "close");
    }
}

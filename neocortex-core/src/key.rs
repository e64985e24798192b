//! Keys: the `key_t` that names a segment system-wide.

use std::fmt;

/// A System V IPC key, shown as in messages (decimal, and hex as `ipcs` lists it).
///
/// Key 0 is `IPC_PRIVATE`, which always creates a new anonymous object: it cannot name a
/// segment to attach to, so neocortex refuses it. Negative keys are ordinary keys.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Key(pub(crate) i32);

impl Key {
    /// The raw key, as `ipcs` lists it (the `key_t` of Linux and macOS; `neocortex-sys`
    /// widens it for FreeBSD's 64-bit `key_t`).
    pub(crate) fn raw(self) -> i32 {
        self.0
    }

    /// Whether the key can name a shared segment (everything but `IPC_PRIVATE`).
    pub(crate) fn is_shareable(self) -> bool {
        self.0 != neocortex_sys::IPC_PRIVATE
    }

    /// A random shareable key from the kernel's random source.
    ///
    /// # Errors
    ///
    /// The `getrandom(2)` error (Linux, FreeBSD), which does not happen on a booted system;
    /// elsewhere the source (`arc4random_buf(3)`) cannot fail.
    pub(crate) fn random() -> Result<Self, neocortex_sys::SysError> {
        loop {
            let mut bytes = [0u8; 4];
            neocortex_sys::random::fill(&mut bytes)?;
            let key = Self(i32::from_ne_bytes(bytes));
            if key.is_shareable() {
                return Ok(key);
            }
        }
    }
}

/// A random key that no segment uses right now (checked with `shmget`), drawn from the
/// kernel's random source: for tests and examples that need a fresh key to pass around.
/// (Another process may take it before you do; `CortexBuilder::random_key` draws again
/// when that happens.)
///
/// ```
/// let key = neocortex_core::random_key()?;
/// assert_ne!(key, 0);
/// # Ok::<(), neocortex_core::CortexError>(())
/// ```
///
/// # Errors
///
/// `Other` if the kernel's random source fails, which does not happen on a booted system.
pub fn random_key() -> crate::CortexResult<i32> {
    use crate::error::IntoOs;
    loop {
        let key =
            Key::random().map_err(|e| crate::CortexError::clean("draw a random key", 0, e.os()))?;
        match neocortex_sys::shm::shmget(key.raw(), 0, 0) {
            Err(e) if e.errno == neocortex_sys::Errno::ENOENT => return Ok(key.raw()),
            _ => continue,
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `ipcs` prints keys in hex; show both so a person can find it there.
        write!(f, "key {} ({:#010x})", self.0, self.0)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_matches_ipcs() {
        assert_eq!(Key(-1).to_string(), "key -1 (0xffffffff)");
        assert!(!Key(0).is_shareable());
        assert!(Key(-5).is_shareable());
    }
}

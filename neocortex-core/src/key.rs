//! Keys: the `key_t` that names a segment system-wide.

use std::fmt;

/// A System V IPC key, as `ipcs` lists it.
///
/// Key 0 is `IPC_PRIVATE`, which always creates a new anonymous object: it cannot name a
/// segment to attach to, so neocortex refuses it. Negative keys are ordinary keys.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(pub i32);

impl Key {
    /// The raw key, as `ipcs` lists it (the `key_t` of Linux and macOS; `neocortex-sys`
    /// widens it for FreeBSD's 64-bit `key_t`).
    pub fn raw(self) -> i32 {
        self.0
    }

    /// Whether the key can name a shared segment (everything but `IPC_PRIVATE`).
    pub fn is_shareable(self) -> bool {
        self.0 != neocortex_sys::IPC_PRIVATE
    }

    /// A random shareable key from the kernel's random source.
    ///
    /// # Errors
    ///
    /// The `getrandom(2)` error (Linux, FreeBSD), which does not happen on a booted system;
    /// elsewhere the source (`arc4random_buf(3)`) cannot fail.
    pub fn random() -> Result<Self, neocortex_sys::SysError> {
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

impl From<i32> for Key {
    fn from(raw: i32) -> Self {
        Self(raw)
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

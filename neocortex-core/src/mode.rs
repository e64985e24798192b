//! Permission modes for a segment and its lock.

/// Who may use a segment and its lock, as SysV mode bits.
///
/// The same mode governs the segment and the lock. The kernel applies it as given (the umask
/// does not apply to SysV IPC). Note that neocortex needs read *and* write access to use a
/// segment (taking the lock writes to it), so the read-only variants keep others out in
/// practice while letting them see the segment in `ipcs`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Permission {
    /// `0600`: only the creating user. The default.
    #[default]
    OwnerOnly,
    /// `0660`: the creating user and its group.
    OwnerAndGroup,
    /// `0666`: everyone may read and write.
    ReadWriteForOthers,
    /// `0644`: others may read.
    ReadOnlyForOthers,
    /// `0777` (execute bits mean nothing to SysV IPC; this is `0666` in effect).
    FullAccessForEveryone,
    /// Any mode bits, masked to `0o777`.
    Custom(u16),
}

impl Permission {
    /// The mode bits.
    pub fn bits(self) -> u16 {
        match self {
            Self::OwnerOnly => 0o600,
            Self::OwnerAndGroup => 0o660,
            Self::ReadWriteForOthers => 0o666,
            Self::FullAccessForEveryone => 0o777,
            Self::ReadOnlyForOthers => 0o644,
            Self::Custom(bits) => bits & 0o777,
        }
    }

    /// The bits as a flag word for `shmget`/`semget`.
    pub fn flags(self) -> libc::c_int {
        libc::c_int::from(self.bits())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_owner_only_and_custom_is_masked() {
        assert_eq!(Permission::default().bits(), 0o600);
        assert_eq!(Permission::Custom(0o7777).bits(), 0o777);
        assert_eq!(Permission::OwnerAndGroup.flags(), 0o660);
    }
}

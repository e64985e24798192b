//! Types and constants the `libc` crate does not provide on every target.

/// The key that always creates a new private object, `IPC_PRIVATE` (0).
///
/// `shmget(IPC_PRIVATE, ..)` creates a fresh segment even without `IPC_CREAT`.
pub const IPC_PRIVATE: libc::key_t = 0;

/// The fourth argument of `semctl(2)`.
///
/// The caller defines this union, says the man page; `libc` has no definition for Linux.
#[repr(C)]
#[derive(Clone, Copy)]
pub union semun {
    /// For `SETVAL`.
    pub val: libc::c_int,
    /// For `IPC_STAT` and `IPC_SET`.
    pub buf: *mut libc::semid_ds,
    /// For `GETALL` and `SETALL`.
    pub array: *mut libc::c_ushort,
}

impl std::fmt::Debug for semun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("semun { .. }")
    }
}

// The union is passed through varargs where the kernel expects a pointer-sized word.
static_assertions::assert_eq_size!(semun, *mut libc::c_void);
static_assertions::assert_eq_align!(semun, *mut libc::c_void);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semun_fields_share_offset_zero() {
        let u = semun { val: 0x1234_5678 };
        // SAFETY: `val` is the field that was written just above.
        let low = unsafe { u.val };
        assert_eq!(low, 0x1234_5678);
        assert_eq!(std::mem::offset_of!(libc::sembuf, sem_num), 0);
        assert_eq!(std::mem::size_of::<libc::sembuf>(), 6);
    }
}

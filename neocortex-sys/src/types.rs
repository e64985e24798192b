//! Types and constants the `libc` crate does not provide on every target, and the widening
//! helpers that turn the kernel's per-platform field types into fixed ones.

/// The key that always creates a new private object, `IPC_PRIVATE` (0).
///
/// `shmget(IPC_PRIVATE, ..)` creates a fresh segment even without `IPC_CREAT`.
///
/// Keys are 32-bit here on every platform; FreeBSD's 64-bit `key_t` gets them sign-extended.
pub const IPC_PRIVATE: i32 = 0;

/// The kernel's `key_t` for a 32-bit key.
///
/// `key_t` is an `int` on Linux and macOS and a `long` on FreeBSD; there the key is
/// sign-extended, as FreeBSD's own `ftok(3)` result is (so `-1`, `ftok`'s error value, stays
/// `-1`). Keys wider than 32 bits cannot be named through this crate.
pub(crate) fn key_t(key: i32) -> libc::key_t {
    sign_extend(key)
}

/// Generic so that the identity conversion on Linux and macOS is not a separate code path.
fn sign_extend<K: From<i32>>(key: i32) -> K {
    K::from(key)
}

/// `SEM_UNDO` for `sembuf.sem_flg`: the kernel reverts the operation when the process exits.
///
/// `libc` lacks it for FreeBSD, whose `<sys/sem.h>` defines it as `010000` (as macOS does).
#[cfg(not(target_os = "freebsd"))]
pub const SEM_UNDO: libc::c_int = libc::SEM_UNDO;
/// `SEM_UNDO` for `sembuf.sem_flg`: the kernel reverts the operation when the process exits.
///
/// `libc` lacks it for FreeBSD, whose `<sys/sem.h>` defines it as `010000` (as macOS does).
#[cfg(target_os = "freebsd")]
pub const SEM_UNDO: libc::c_int = 0o10000;

/// The `semctl(2)` commands this crate uses. `libc` lacks them for FreeBSD; the values there
/// are those of FreeBSD's `<sys/sem.h>` (the BSD numbering, which macOS shares).
#[cfg(not(target_os = "freebsd"))]
pub(crate) mod semctl_cmd {
    pub(crate) use libc::{GETALL, GETNCNT, GETPID, GETVAL, SETVAL};
}
/// The `semctl(2)` commands this crate uses. `libc` lacks them for FreeBSD; the values there
/// are those of FreeBSD's `<sys/sem.h>` (the BSD numbering, which macOS shares).
#[cfg(target_os = "freebsd")]
pub(crate) mod semctl_cmd {
    pub(crate) const GETNCNT: libc::c_int = 3;
    pub(crate) const GETPID: libc::c_int = 4;
    pub(crate) const GETVAL: libc::c_int = 5;
    pub(crate) const GETALL: libc::c_int = 6;
    pub(crate) const SETVAL: libc::c_int = 8;
}

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

/// Widens a kernel count or size whose C type differs between systems to `u64`.
///
/// `shm_segsz` is a `size_t`; `shm_nattch` is an `unsigned long` on Linux, an
/// `unsigned short` on macOS, an `unsigned int` on FreeBSD 12 and later and an `int` on
/// FreeBSD 11; `sem_nsems` is an `unsigned long` on Linux and an `unsigned short` on the
/// BSDs. Every value a kernel reports fits; a negative one (only possible where the type is
/// signed) reads as 0. Generic so that no call site holds a conversion that is the identity
/// on one platform and a narrowing on another.
pub(crate) fn widen_count<T: TryInto<u64>>(value: T) -> u64 {
    value.try_into().unwrap_or(0)
}

/// Widens a signed C type whose width differs between systems to `i64`: `time_t` and
/// `suseconds_t` (64 bits on every 64-bit target, 32 on some 32-bit ones), `key_t`.
pub(crate) fn widen_signed<T: Into<i64>>(value: T) -> i64 {
    value.into()
}

/// The permission and state bits of `ipc_perm.mode` (`unsigned short` on Linux x86_64,
/// `mode_t` elsewhere) as `u16`; every bit the kernels define fits (Linux's highest is
/// `SHM_LOCKED`, `02000`). A value that does not fit reads as 0: no permission at all.
pub(crate) fn mode_bits<T: TryInto<u16>>(value: T) -> u16 {
    value.try_into().unwrap_or(0)
}

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

    #[test]
    fn widening_is_lossless_and_negative_counts_read_as_zero() {
        assert_eq!(widen_count(u64::MAX), u64::MAX);
        assert_eq!(widen_count(usize::MAX), usize::MAX as u64);
        assert_eq!(widen_count(7u16), 7);
        assert_eq!(widen_count(-1i32), 0);
        assert_eq!(widen_signed(-5i32), -5);
        assert_eq!(widen_signed(i64::MIN), i64::MIN);
        assert_eq!(mode_bits(0o1600u32), 0o1600);
        assert_eq!(mode_bits(0x1_0000u32), 0);
    }

    #[test]
    fn keys_keep_their_value() {
        assert_eq!(widen_signed(key_t(-1)), -1);
        assert_eq!(widen_signed(key_t(i32::MAX)), i64::from(i32::MAX));
        assert_eq!(widen_signed(key_t(IPC_PRIVATE)), 0);
    }

    #[test]
    fn sem_undo_and_nowait_fit_a_sem_flg() {
        let flags = SEM_UNDO | libc::IPC_NOWAIT;
        assert!(libc::c_short::try_from(flags).is_ok());
        assert_eq!(SEM_UNDO & libc::IPC_NOWAIT, 0);
    }
}

//! Shared memory segments: `shmget(2)`, `shmat(2)`, `shmdt(2)`, `shmctl(2)`.
//!
//! Mapping a segment and removing one are `unsafe`: a mapping hands out memory that other
//! processes write, and a removal takes a segment from under the processes using it.
//!
//! ```compile_fail,E0133
//! let _ = neocortex_sys::shm::attach(0, 0); // a call to an unsafe function
//! ```
//!
//! ```compile_fail,E0133
//! let _ = neocortex_sys::shm::remove(0);
//! ```
//!
//! ```no_run
//! // SAFETY: an illustration; segment 0 is not used by this program.
//! let _ = unsafe { neocortex_sys::shm::remove(0) };
//! ```

use std::ptr::NonNull;

use crate::errno::{check, SysError, SysResult};
use crate::types::{key_t, mode_bits, widen_count, widen_signed};

/// What `shmctl(IPC_STAT)` says about a segment, in fixed types on every platform.
///
/// `shmid_ds` differs between systems (field types, the `ipc_perm` layout, macOS packs it to
/// 4 bytes); [`stat`] converts it here so that no caller depends on one platform's layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShmStat {
    /// The real size of the segment in bytes (`shm_segsz`).
    pub size: u64,
    /// How many attachments the segment has (`shm_nattch`).
    pub attached: u64,
    /// The pid of the creator (`shm_cpid`); 0 on Linux for a creator in another pid namespace.
    pub cpid: i32,
    /// The last change, in seconds since the epoch (`shm_ctime`): creation, or the last
    /// `IPC_SET`.
    pub ctime: i64,
    /// The owner's uid (`shm_perm.uid`).
    pub uid: u32,
    /// The creator's uid (`shm_perm.cuid`).
    pub cuid: u32,
    /// The mode bits (`shm_perm.mode`): permissions, and on Linux the state bits `SHM_DEST`
    /// (`01000`, removed but still attached) and `SHM_LOCKED` (`02000`).
    pub mode: u16,
}

impl ShmStat {
    fn from_raw(ds: &libc::shmid_ds) -> Self {
        // Fields are read by value: macOS's `shmid_ds` is `packed(4)`, so no reference to a
        // field of it may be taken.
        Self {
            size: widen_count(ds.shm_segsz),
            attached: widen_count(ds.shm_nattch),
            cpid: ds.shm_cpid,
            ctime: widen_signed(ds.shm_ctime),
            uid: ds.shm_perm.uid,
            cuid: ds.shm_perm.cuid,
            mode: mode_bits(ds.shm_perm.mode),
        }
    }
}

/// `shmget(2)`: finds or creates the segment for `key`.
///
/// Note that the kernel accepts any `size` up to the real size of an existing segment, so the
/// caller must check the real size ([`ShmStat::size`], see [`stat`]) before trusting it.
///
/// # Errors
///
/// The `errno` of `shmget`: `ENOENT`, `EEXIST`, `EACCES`, `EINVAL`, `ENOSPC`, `ENOMEM`, ...
pub fn shmget(key: i32, size: usize, flags: libc::c_int) -> SysResult<libc::c_int> {
    let key = key_t(key);
    // SAFETY: shmget takes plain values and touches no memory of ours.
    check(unsafe { libc::shmget(key, size, flags) }, "shmget")
}

/// `shmat(id, NULL, flags)`: maps the segment at an address the kernel chooses.
///
/// The returned memory is shared with every other process attached to the segment; reading
/// or writing it is up to the caller's own synchronisation.
///
/// # Errors
///
/// The `errno` of `shmat`: `EACCES`, `EINVAL` (no such id), `EIDRM`, `ENOMEM`.
///
/// # Safety
///
/// Other processes may write the memory at any time: the caller must touch it only through
/// atomics or under a lock every user of the segment honours, must write through it only
/// when `flags` lacks `SHM_RDONLY`, and must detach it with [`detach`] at most once.
pub unsafe fn attach(id: libc::c_int, flags: libc::c_int) -> SysResult<NonNull<libc::c_void>> {
    // SAFETY: with a null address the kernel picks an unused range, so no existing mapping
    // of this process is replaced.
    let ptr = unsafe { libc::shmat(id, std::ptr::null(), flags) };
    if ptr as isize == -1 {
        return Err(SysError::last("shmat"));
    }
    NonNull::new(ptr).ok_or(SysError {
        call: "shmat",
        errno: crate::Errno::EINVAL,
    })
}

/// `shmdt(2)`: unmaps a segment attached with [`attach`].
///
/// # Errors
///
/// `EINVAL` when nothing is attached at `addr`.
///
/// # Safety
///
/// `addr` must be an address returned by [`attach`] in this process and not yet detached,
/// and no reference into that memory may be used after this call.
pub unsafe fn detach(addr: NonNull<libc::c_void>) -> SysResult<()> {
    // SAFETY: the caller guarantees that `addr` is a live attachment nobody uses afterwards.
    check(unsafe { libc::shmdt(addr.as_ptr()) }, "shmdt").map(drop)
}

/// `shmctl(id, IPC_STAT)`: the segment's size, owner, mode, attach count and creator pid.
///
/// # Errors
///
/// `EINVAL` (no such id, or removed), `EACCES` (no read permission).
pub fn stat(id: libc::c_int) -> SysResult<ShmStat> {
    // SAFETY: shmid_ds is plain old data; all-zero is a valid value.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: IPC_STAT writes one shmid_ds into the buffer we own.
    let ret = unsafe { libc::shmctl(id, libc::IPC_STAT, &mut ds) };
    check(ret, "shmctl(IPC_STAT)")?;
    Ok(ShmStat::from_raw(&ds))
}

/// `shmctl(id, IPC_SET)`: changes the owner uid/gid and mode bits from `ds`.
///
/// # Errors
///
/// `EPERM` (not the owner), `EINVAL` (no such id).
pub fn set(id: libc::c_int, ds: &libc::shmid_ds) -> SysResult<()> {
    let mut copy = *ds;
    // SAFETY: IPC_SET only reads the shmid_ds we pass.
    let ret = unsafe { libc::shmctl(id, libc::IPC_SET, &mut copy) };
    check(ret, "shmctl(IPC_SET)").map(drop)
}

/// `shmctl(id, IPC_RMID)`: marks the segment for removal. The key is free at once; the memory
/// goes when the last process detaches.
///
/// # Errors
///
/// `EPERM` (not the owner or creator), `EINVAL` (no such id, or already removed).
///
/// # Safety
///
/// Processes that are still attached keep using the memory unaware of the removal: the
/// caller must be the segment's owner tearing it down, having told its users (neocortex
/// does this through the segment's header).
pub unsafe fn remove(id: libc::c_int) -> SysResult<()> {
    // SAFETY: IPC_RMID ignores the buffer argument.
    let ret = unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
    check(ret, "shmctl(IPC_RMID)").map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Errno, IPC_PRIVATE};

    #[test]
    fn private_segment_round_trip() {
        let id = shmget(IPC_PRIVATE, 100, libc::IPC_CREAT | 0o600).unwrap();
        let ds = stat(id).unwrap();
        assert_eq!(ds.size, 100);
        assert_eq!(ds.mode & 0o777, 0o600);
        assert_eq!(ds.attached, 0);
        assert_eq!(ds.cpid, crate::process::pid_uncached());
        assert_eq!(ds.uid, crate::process::effective_uid());
        assert_eq!(ds.cuid, ds.uid);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        assert!(
            (now - 5..=now + 5).contains(&ds.ctime),
            "{} vs {now}",
            ds.ctime
        );
        // SAFETY: a private segment only this test knows; nothing is read or written through
        // the mapping, which is detached once.
        let addr = unsafe { attach(id, 0) }.unwrap();
        assert_eq!(stat(id).unwrap().attached, 1);
        // SAFETY: `addr` was attached above and is not used after this.
        unsafe { detach(addr) }.unwrap();
        // SAFETY: as above.
        unsafe { remove(id) }.unwrap();
        assert_eq!(stat(id).unwrap_err().errno, Errno::EINVAL);
        // SAFETY: as above (already removed).
        assert_eq!(unsafe { remove(id) }.unwrap_err().call, "shmctl(IPC_RMID)");
    }

    #[test]
    fn missing_key_is_enoent() {
        let err = shmget(0x7e57_0001, 0, 0).unwrap_err();
        assert_eq!(
            err,
            SysError {
                call: "shmget",
                errno: Errno::ENOENT
            }
        );
    }
}

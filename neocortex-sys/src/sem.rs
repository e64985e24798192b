//! Semaphore sets: `semget(2)`, `semop(2)`, `semtimedop(2)`, `semctl(2)`.

use std::time::Duration;

use crate::errno::{check, SysResult};
use crate::types::semctl_cmd::{GETNCNT, GETPID, GETVAL, SETVAL};
use crate::types::{key_t, mode_bits, semun, widen_count, widen_signed};

extern "C" {
    // glibc and musl export it; the `libc` crate does not declare it for Linux.
    #[link_name = "semtimedop"]
    fn sys_semtimedop(
        semid: libc::c_int,
        sops: *mut libc::sembuf,
        nsops: libc::size_t,
        timeout: *const libc::timespec,
    ) -> libc::c_int;
}

/// `semget(2)`: finds or creates the semaphore set for `key`.
///
/// Beware: with `IPC_CREAT` and no `IPC_EXCL`, an existing set of *any* size is returned.
///
/// # Errors
///
/// The `errno` of `semget`: `ENOENT`, `EEXIST`, `EACCES`, `EINVAL`, `ENOSPC`.
pub fn semget(key: i32, nsems: libc::c_int, flags: libc::c_int) -> SysResult<libc::c_int> {
    let key = key_t(key);
    // SAFETY: semget takes plain values.
    check(unsafe { libc::semget(key, nsems, flags) }, "semget")
}

/// `semop(2)`: applies all `ops` atomically, blocking until they can be.
///
/// # Errors
///
/// `EAGAIN` (`IPC_NOWAIT` and would block), `EINTR`, `EIDRM`/`EINVAL` (the set is gone),
/// `EACCES`, `ERANGE`, `EFBIG`.
pub fn semop(id: libc::c_int, ops: &mut [libc::sembuf]) -> SysResult<()> {
    // SAFETY: the pointer and length describe the caller's slice, which outlives the call.
    check(
        unsafe { libc::semop(id, ops.as_mut_ptr(), ops.len()) },
        "semop",
    )
    .map(drop)
}

/// `semtimedop(2)`: [`semop`] that gives up with `EAGAIN` after `timeout`.
///
/// `None` waits forever. A timeout too long for `timespec` also waits forever.
///
/// # Errors
///
/// As [`semop`], with `EAGAIN` also on timeout.
pub fn semtimedop(
    id: libc::c_int,
    ops: &mut [libc::sembuf],
    timeout: Option<Duration>,
) -> SysResult<()> {
    let ts = timeout.and_then(timespec_from);
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `ops` is the caller's live slice and `ts_ptr` is null or points to `ts`, which
    // lives until the call returns.
    let ret = unsafe { sys_semtimedop(id, ops.as_mut_ptr(), ops.len(), ts_ptr) };
    check(ret, "semtimedop").map(drop)
}

/// A `timespec` for `d`, or `None` when it does not fit (treated as "forever").
pub fn timespec_from(d: Duration) -> Option<libc::timespec> {
    Some(libc::timespec {
        tv_sec: libc::time_t::try_from(d.as_secs()).ok()?,
        tv_nsec: libc::c_long::from(d.subsec_nanos() as i32),
    })
}

fn ctl(id: libc::c_int, num: libc::c_int, cmd: libc::c_int, arg: semun) -> libc::c_int {
    // SAFETY: callers pass an `arg` matching `cmd`: an integer, or a pointer to a live
    // buffer of the right type that outlives this call.
    unsafe { libc::semctl(id, num, cmd, arg) }
}

/// `semctl(id, num, GETVAL)`.
///
/// # Errors
///
/// `EINVAL`/`EIDRM` (no such set), `EACCES`.
pub fn get_value(id: libc::c_int, num: u16) -> SysResult<libc::c_int> {
    check(
        ctl(id, num.into(), GETVAL, semun { val: 0 }),
        "semctl(GETVAL)",
    )
}

/// `semctl(id, num, SETVAL, value)`.
///
/// Setting a value clears every process's undo record for that semaphore: only use it on a
/// set nobody else can see yet.
///
/// # Errors
///
/// `EINVAL`/`EIDRM` (no such set), `EACCES`, `ERANGE`.
pub fn set_value(id: libc::c_int, num: u16, value: libc::c_int) -> SysResult<()> {
    check(
        ctl(id, num.into(), SETVAL, semun { val: value }),
        "semctl(SETVAL)",
    )
    .map(drop)
}

/// `semctl(id, num, GETPID)`: the pid of the last process that operated on the semaphore.
///
/// # Errors
///
/// `EINVAL`/`EIDRM` (no such set), `EACCES`.
pub fn last_pid(id: libc::c_int, num: u16) -> SysResult<libc::pid_t> {
    check(
        ctl(id, num.into(), GETPID, semun { val: 0 }),
        "semctl(GETPID)",
    )
}

/// `semctl(id, num, GETNCNT)`: how many processes wait for the value to grow.
///
/// # Errors
///
/// `EINVAL`/`EIDRM` (no such set), `EACCES`.
pub fn waiting_count(id: libc::c_int, num: u16) -> SysResult<libc::c_int> {
    check(
        ctl(id, num.into(), GETNCNT, semun { val: 0 }),
        "semctl(GETNCNT)",
    )
}

/// What `semctl(IPC_STAT)` says about a semaphore set, in fixed types on every platform.
///
/// `semid_ds` differs between systems (`sem_nsems` is an `unsigned long` on Linux and an
/// `unsigned short` on the BSDs; macOS packs the struct to 4 bytes); [`stat`] converts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SemStat {
    /// How many semaphores the set has (`sem_nsems`).
    pub nsems: u64,
    /// The owner's uid (`sem_perm.uid`).
    pub uid: u32,
    /// The creator's uid (`sem_perm.cuid`).
    pub cuid: u32,
    /// The permission bits (`sem_perm.mode`).
    pub mode: u16,
    /// The last `semop`, in seconds since the epoch (0 if none yet).
    pub otime: i64,
    /// The last change, in seconds since the epoch (`sem_ctime`).
    pub ctime: i64,
}

/// `semctl(id, 0, IPC_STAT)`: owner, mode, number of semaphores, times.
///
/// # Errors
///
/// `EINVAL`/`EIDRM` (no such set), `EACCES`.
pub fn stat(id: libc::c_int) -> SysResult<SemStat> {
    // SAFETY: semid_ds is plain old data; all-zero is a valid value.
    let mut ds: libc::semid_ds = unsafe { std::mem::zeroed() };
    let arg = semun { buf: &mut ds };
    check(ctl(id, 0, libc::IPC_STAT, arg), "semctl(IPC_STAT)")?;
    // Fields are read by value: macOS's `semid_ds` is `packed(4)`.
    Ok(SemStat {
        nsems: widen_count(ds.sem_nsems),
        uid: ds.sem_perm.uid,
        cuid: ds.sem_perm.cuid,
        mode: mode_bits(ds.sem_perm.mode),
        otime: widen_signed(ds.sem_otime),
        ctime: widen_signed(ds.sem_ctime),
    })
}

/// `semctl(id, 0, IPC_RMID)`: removes the set at once; blocked waiters get `EIDRM`.
///
/// # Errors
///
/// `EPERM` (not the owner or creator), `EINVAL` (no such set).
pub fn remove(id: libc::c_int) -> SysResult<()> {
    check(
        ctl(id, 0, libc::IPC_RMID, semun { val: 0 }),
        "semctl(IPC_RMID)",
    )
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Errno, IPC_PRIVATE, SEM_UNDO};

    fn op(num: u16, delta: i16, flags: libc::c_int) -> libc::sembuf {
        libc::sembuf {
            sem_num: num,
            sem_op: delta,
            sem_flg: flags as libc::c_short,
        }
    }

    #[test]
    fn set_lock_and_timeout() {
        let id = semget(IPC_PRIVATE, 1, libc::IPC_CREAT | 0o600).unwrap();
        set_value(id, 0, 1).unwrap();
        semop(id, &mut [op(0, -1, SEM_UNDO)]).unwrap();
        assert_eq!(get_value(id, 0).unwrap(), 0);
        let busy = semop(id, &mut [op(0, -1, libc::IPC_NOWAIT)]).unwrap_err();
        assert_eq!(busy.errno, Errno::EAGAIN);
        let timed = semtimedop(id, &mut [op(0, -1, 0)], Some(Duration::from_millis(20)));
        assert_eq!(timed.unwrap_err().errno, Errno::EAGAIN);
        semop(id, &mut [op(0, 1, SEM_UNDO)]).unwrap();
        assert_eq!(last_pid(id, 0).unwrap(), std::process::id() as i32);
        assert_eq!(waiting_count(id, 0).unwrap(), 0);
        let ds = stat(id).unwrap();
        assert_eq!(ds.nsems, 1);
        assert_eq!(ds.mode & 0o777, 0o600);
        assert_eq!(ds.uid, crate::process::effective_uid());
        assert_eq!(ds.cuid, ds.uid);
        assert!(ds.otime > 0 && ds.ctime > 0, "{ds:?}");
        remove(id).unwrap();
        assert_eq!(get_value(id, 0).unwrap_err().errno, Errno::EINVAL);
    }

    #[test]
    fn huge_timeout_means_forever() {
        assert!(timespec_from(Duration::MAX).is_none());
        let ts = timespec_from(Duration::new(3, 5)).unwrap();
        assert_eq!((ts.tv_sec, ts.tv_nsec), (3, 5));
    }
}

//! Semaphore sets: `semget(2)`, `semop(2)`, `semtimedop(2)`, `semctl(2)`.

use std::time::Duration;

use crate::errno::{check, SysError, SysResult};
use crate::types::semun;

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
pub fn semget(key: libc::key_t, nsems: libc::c_int, flags: libc::c_int) -> SysResult<libc::c_int> {
    // SAFETY: semget takes plain values.
    check(unsafe { libc::semget(key, nsems, flags) }, "semget")
}

/// `semop(2)`: applies all `ops` atomically, blocking until they can be.
///
/// # Errors
///
/// `EAGAIN` (`IPC_NOWAIT` and would block), `EINTR`, `EIDRM`/`EINVAL` (the set is gone),
/// `EACCES`, `ERANGE`, `EFBIG`.
///
/// # Safety
///
/// Semaphores guard memory: an operation that releases or takes what the caller does not
/// own can let two holders into the same critical section. The caller must own the set's
/// protocol: apply only operations that the lock built on the set defines, with `SEM_UNDO`
/// exactly where that protocol uses it.
pub unsafe fn semop(id: libc::c_int, ops: &mut [libc::sembuf]) -> SysResult<()> {
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
///
/// # Safety
///
/// As [`semop`].
pub unsafe fn semtimedop(
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

/// [`semop`] that gives up with `EAGAIN` after `timeout` (`None`: never), on every
/// platform: `semtimedop` on Linux; elsewhere, where it is missing, `IPC_NOWAIT` attempts
/// polled with a growing sleep (50 µs up to 2 ms) until the deadline.
///
/// # Errors
///
/// As [`semtimedop`].
///
/// # Safety
///
/// As [`semop`].
pub unsafe fn semop_timed(
    id: libc::c_int,
    ops: &mut [libc::sembuf],
    timeout: Option<Duration>,
) -> SysResult<()> {
    #[cfg(target_os = "linux")]
    // SAFETY: forwarded; the caller upholds `semop`'s contract.
    return unsafe { semtimedop(id, ops, timeout) };
    #[cfg(not(target_os = "linux"))]
    {
        let Some(timeout) = timeout else {
            // SAFETY: forwarded.
            return unsafe { semop(id, ops) };
        };
        let deadline = std::time::Instant::now() + timeout;
        let mut nap = Duration::from_micros(50);
        let mut nowait: Vec<libc::sembuf> = ops.to_vec();
        for op in &mut nowait {
            op.sem_flg |= libc::IPC_NOWAIT as libc::c_short;
        }
        loop {
            // SAFETY: forwarded, the same operations without waiting.
            match unsafe { semop(id, &mut nowait) } {
                Err(e) if e.errno == crate::Errno::EAGAIN => {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        return Err(SysError {
                            call: "semop",
                            errno: crate::Errno::EAGAIN,
                        });
                    }
                    std::thread::sleep(nap.min(left));
                    nap = (nap * 2).min(Duration::from_millis(2));
                }
                other => return other,
            }
        }
    }
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
        ctl(id, num.into(), libc::GETVAL, semun { val: 0 }),
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
///
/// # Safety
///
/// The set must not be in use by anyone yet: `SETVAL` on a live semaphore frees or takes a
/// lock behind its holders' backs and wipes every process's undo record.
pub unsafe fn set_value(id: libc::c_int, num: u16, value: libc::c_int) -> SysResult<()> {
    check(
        ctl(id, num.into(), libc::SETVAL, semun { val: value }),
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
        ctl(id, num.into(), libc::GETPID, semun { val: 0 }),
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
        ctl(id, num.into(), libc::GETNCNT, semun { val: 0 }),
        "semctl(GETNCNT)",
    )
}

/// `semctl(id, 0, IPC_STAT)`: owner, mode, number of semaphores, times.
///
/// # Errors
///
/// `EINVAL`/`EIDRM` (no such set), `EACCES`.
pub fn stat(id: libc::c_int) -> SysResult<libc::semid_ds> {
    // SAFETY: semid_ds is plain old data; all-zero is a valid value.
    let mut ds: libc::semid_ds = unsafe { std::mem::zeroed() };
    let arg = semun { buf: &mut ds };
    check(ctl(id, 0, libc::IPC_STAT, arg), "semctl(IPC_STAT)")?;
    Ok(ds)
}

/// `semctl(id, 0, IPC_RMID)`: removes the set at once; blocked waiters get `EIDRM`.
///
/// `semctl(id, 0, GETALL)`: every semaphore's value, into `values` (as many as the set has;
/// `values` must be at least that long).
///
/// # Errors
///
/// `EINVAL`/`EIDRM` (no such set), `EACCES`; `ERANGE` when `values` is shorter than the set
/// (checked here with `IPC_STAT` first).
pub fn get_all(id: libc::c_int, values: &mut [u16]) -> SysResult<()> {
    let nsems = usize::try_from(stat(id)?.sem_nsems).unwrap_or(usize::MAX);
    if values.len() < nsems {
        return Err(SysError {
            call: "semctl(GETALL)",
            errno: crate::Errno::ERANGE,
        });
    }
    let arg = semun {
        array: values.as_mut_ptr(),
    };
    // The kernel writes `nsems` values, checked above to fit in `values`. (A set cannot
    // change its size, so the count read by IPC_STAT stays right.)
    check(ctl(id, 0, libc::GETALL, arg), "semctl(GETALL)").map(drop)
}

/// # Errors
///
/// `EPERM` (not the owner or creator), `EINVAL` (no such set).
///
/// # Safety
///
/// Removing a set wakes every waiter with `EIDRM` and frees the lock it implements: the
/// caller must be the lock's owner tearing it down, so that no holder relies on it.
pub unsafe fn remove(id: libc::c_int) -> SysResult<()> {
    check(
        ctl(id, 0, libc::IPC_RMID, semun { val: 0 }),
        "semctl(IPC_RMID)",
    )
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Errno, IPC_PRIVATE};

    fn op(num: u16, delta: i16, flags: libc::c_int) -> libc::sembuf {
        libc::sembuf {
            sem_num: num,
            sem_op: delta,
            sem_flg: flags as libc::c_short,
        }
    }

    #[test]
    fn set_lock_and_timeout() {
        let id = semget(IPC_PRIVATE, 2, libc::IPC_CREAT | 0o600).unwrap();
        // SAFETY: a private set this test alone uses.
        unsafe { set_value(id, 0, 1) }.unwrap();
        // SAFETY: a private set this test alone uses.
        unsafe { semop(id, &mut [op(0, -1, libc::SEM_UNDO)]) }.unwrap();
        assert_eq!(get_value(id, 0).unwrap(), 0);
        // SAFETY: a private set this test alone uses.
        let busy = unsafe { semop(id, &mut [op(0, -1, libc::IPC_NOWAIT)]) }.unwrap_err();
        assert_eq!(busy.errno, Errno::EAGAIN);
        // SAFETY: a private set this test alone uses.
        let timed = unsafe { semtimedop(id, &mut [op(0, -1, 0)], Some(Duration::from_millis(20))) };
        assert_eq!(timed.unwrap_err().errno, Errno::EAGAIN);
        // SAFETY: a private set this test alone uses.
        unsafe { semop(id, &mut [op(0, 1, libc::SEM_UNDO), op(1, 7, 0)]) }.unwrap();
        let mut all = [9u16; 2];
        get_all(id, &mut all).unwrap();
        assert_eq!(all, [1, 7]);
        assert_eq!(
            get_all(id, &mut [0u16; 1]).unwrap_err().errno,
            Errno::ERANGE
        );
        assert_eq!(last_pid(id, 0).unwrap(), std::process::id() as i32);
        assert_eq!(waiting_count(id, 0).unwrap(), 0);
        assert_eq!(stat(id).unwrap().sem_nsems, 2);
        // SAFETY: as above.
        unsafe { remove(id) }.unwrap();
        assert_eq!(get_value(id, 0).unwrap_err().errno, Errno::EINVAL);
    }

    #[test]
    fn huge_timeout_means_forever() {
        assert!(timespec_from(Duration::MAX).is_none());
        let ts = timespec_from(Duration::new(3, 5)).unwrap();
        assert_eq!((ts.tv_sec, ts.tv_nsec), (3, 5));
    }
}

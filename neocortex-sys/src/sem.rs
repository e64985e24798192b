//! Semaphore sets: `semget(2)`, `semop(2)`, `semtimedop(2)` (Linux), `semctl(2)`.
//!
//! [`semop_timed`] is the one timed wait for every platform: `semtimedop` on Linux, a
//! polled non-blocking `semop` on systems that lack it (macOS, FreeBSD).
//!
//! Every call that changes a semaphore's value or removes a set is `unsafe`: a lock built
//! on a set relies on nobody else moving its values, so safe code cannot.
//!
//! ```compile_fail,E0133
//! let _ = neocortex_sys::sem::set_value(0, 0, 1); // a call to an unsafe function
//! ```
//!
//! ```compile_fail,E0133
//! let mut ops: [libc::sembuf; 0] = [];
//! let _ = neocortex_sys::sem::semop(0, &mut ops);
//! ```
//!
//! ```compile_fail,E0133
//! let _ = neocortex_sys::sem::remove(0);
//! ```
//!
//! ```no_run
//! // The same calls compile in an `unsafe` block, whose author answers for them.
//! let mut ops: [libc::sembuf; 0] = [];
//! // SAFETY: an illustration; set 0 is not used by any lock of this program.
//! let _ = unsafe { neocortex_sys::sem::semop(0, &mut ops) };
//! // SAFETY: as above.
//! let _ = unsafe { neocortex_sys::sem::set_value(0, 0, 1) };
//! // SAFETY: as above.
//! let _ = unsafe { neocortex_sys::sem::remove(0) };
//! ```

use std::time::Duration;
#[cfg(any(test, not(target_os = "linux")))]
use std::time::Instant;

use crate::errno::{check, SysError, SysResult};
use crate::types::semctl_cmd::{GETALL, GETNCNT, GETPID, GETVAL, SETVAL};
use crate::types::{key_t, mode_bits, semun, widen_count, widen_signed};
use crate::Errno;

#[cfg(target_os = "linux")]
extern "C" {
    // glibc and musl export it; the `libc` crate does not declare it for Linux. macOS and
    // FreeBSD have no `semtimedop` at all (see `semop_polled`).
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

/// `semtimedop(2)` (Linux only): [`semop`] that gives up with `EAGAIN` after `timeout`.
///
/// `None` waits forever. A timeout too long for `timespec` also waits forever. Portable code
/// calls [`semop_timed`].
///
/// # Errors
///
/// As [`semop`], with `EAGAIN` also on timeout.
///
/// # Safety
///
/// As [`semop`].
#[cfg(target_os = "linux")]
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

/// [`semop`] that gives up with `EAGAIN` once `timeout` has passed, on every platform.
///
/// On Linux this is [`semtimedop`], unchanged. Where the kernel has no timed `semop` (macOS,
/// FreeBSD) the wait is polled: `semop` with `IPC_NOWAIT`, then sleeps that double from
/// 50 µs up to 2 ms, never past the deadline, until the operations succeed or an attempt
/// made at or after the deadline would still block. So:
///
/// - a timeout is never cut short: `EAGAIN` comes only from an attempt at or after it;
/// - `Some(Duration::ZERO)` (or any past deadline) makes exactly one attempt, never blocking;
/// - `None`, or a timeout that overflows the clock, waits forever in a blocking `semop`;
/// - a set removed during the wait fails the next attempt with `EINVAL` (or `EIDRM`), within
///   one sleep (2 ms at most);
/// - an interrupted attempt (`EINTR`) is retried by the polled path; on Linux it is
///   returned, as `semtimedop` returns it, for the caller to retry with the time left.
///
/// A polled waiter is not queued in the kernel: it competes with other waiters at each
/// attempt, so it may wait longer than a blocked one under contention (never past its
/// timeout), and a release is noticed up to 2 ms late.
///
/// If an op carries `IPC_NOWAIT` itself, the polled path makes a single attempt (as
/// `semtimedop` fails at once when such an op cannot proceed; for a mix of waiting and
/// non-waiting ops the polled path does not wait on the waiting ones). The polled path adds
/// `IPC_NOWAIT` to the ops' flags while it runs and removes it again before returning,
/// except from a mixed slice, which comes back with `IPC_NOWAIT` on every op.
///
/// # Errors
///
/// As [`semop`]: `EAGAIN` on timeout (or at once for an `IPC_NOWAIT` op that would block),
/// `EIDRM`/`EINVAL` (the set is gone), `EINTR` (Linux only), `EACCES`, `ERANGE`, `EFBIG`.
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
    {
        // SAFETY: forwarded; the caller upholds `semop`'s contract.
        unsafe { semtimedop(id, ops, timeout) }
    }
    #[cfg(not(target_os = "linux"))]
    {
        // SAFETY: forwarded; the caller upholds `semop`'s contract.
        unsafe { semop_polled(id, ops, timeout) }
    }
}

/// The first sleep of a polled wait; each further sleep doubles, up to [`POLL_MAX_SLEEP`].
#[cfg(any(test, not(target_os = "linux")))]
const POLL_FIRST_SLEEP: Duration = Duration::from_micros(50);
/// The longest sleep of a polled wait: how late a polled waiter may notice a release.
#[cfg(any(test, not(target_os = "linux")))]
const POLL_MAX_SLEEP: Duration = Duration::from_millis(2);

/// The polled timed `semop` of [`semop_timed`] for systems without `semtimedop`; built on
/// Linux too in tests, which call it directly.
///
/// # Safety
///
/// As [`semop`].
#[cfg(any(test, not(target_os = "linux")))]
unsafe fn semop_polled(
    id: libc::c_int,
    ops: &mut [libc::sembuf],
    timeout: Option<Duration>,
) -> SysResult<()> {
    let Some(deadline) = timeout.and_then(|t| Instant::now().checked_add(t)) else {
        // No deadline (or one past the end of the clock): the kernel may block.
        // SAFETY: forwarded; the caller upholds `semop`'s contract.
        return unsafe { semop(id, ops) };
    };
    // IPC_NOWAIT is 04000 on every system, well inside a `short`.
    let nowait = libc::IPC_NOWAIT as libc::c_short;
    let single_attempt = ops.iter().any(|op| op.sem_flg & nowait != 0);
    for op in ops.iter_mut() {
        op.sem_flg |= nowait;
    }
    // SAFETY: forwarded; the caller upholds `semop`'s contract.
    let result = unsafe { poll_until(id, ops, deadline, single_attempt) };
    if !single_attempt {
        // None carried IPC_NOWAIT before: take it off them all again.
        for op in ops.iter_mut() {
            op.sem_flg &= !nowait;
        }
    }
    result
}

/// Attempts the (non-blocking) `ops` until they succeed, fail with something other than
/// `EAGAIN`/`EINTR`, or an attempt at or after `deadline` would still block.
///
/// # Safety
///
/// As [`semop`].
#[cfg(any(test, not(target_os = "linux")))]
unsafe fn poll_until(
    id: libc::c_int,
    ops: &mut [libc::sembuf],
    deadline: Instant,
    single_attempt: bool,
) -> SysResult<()> {
    let mut pause = POLL_FIRST_SLEEP;
    loop {
        // SAFETY: forwarded; the caller upholds `semop`'s contract.
        let busy = match unsafe { semop(id, ops) } {
            // A non-blocking semop is not expected to be interrupted; if it is, try again.
            Err(e) if e.errno == Errno::EINTR => continue,
            Err(e) if e.errno == Errno::EAGAIN && !single_attempt => e,
            done => return done,
        };
        // Checked after the attempt, so the last attempt is made at or after the deadline.
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(busy);
        }
        std::thread::sleep(pause.min(left));
        pause = (pause * 2).min(POLL_MAX_SLEEP);
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
///
/// # Safety
///
/// The set must not be in use by anyone yet: `SETVAL` on a live semaphore frees or takes a
/// lock behind its holders' backs and wipes every process's undo record.
pub unsafe fn set_value(id: libc::c_int, num: u16, value: libc::c_int) -> SysResult<()> {
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

/// `semctl(id, 0, GETALL)`: every semaphore's value, into `values` (as many as the set has;
/// `values` must be at least that long).
///
/// # Errors
///
/// `EINVAL`/`EIDRM` (no such set), `EACCES`; `ERANGE` when `values` is shorter than the set
/// (checked here with `IPC_STAT` first).
pub fn get_all(id: libc::c_int, values: &mut [u16]) -> SysResult<()> {
    let nsems = usize::try_from(stat(id)?.nsems).unwrap_or(usize::MAX);
    if values.len() < nsems {
        return Err(SysError {
            call: "semctl(GETALL)",
            errno: Errno::ERANGE,
        });
    }
    let arg = semun {
        array: values.as_mut_ptr(),
    };
    // The kernel writes `nsems` values, checked above to fit in `values` (a set cannot
    // change its size, so the count read by IPC_STAT stays right).
    check(ctl(id, 0, GETALL, arg), "semctl(GETALL)").map(drop)
}

/// `semctl(id, 0, IPC_RMID)`: removes the set at once; blocked waiters get `EIDRM`.
///
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
    use crate::{IPC_PRIVATE, SEM_UNDO};

    fn op(num: u16, delta: i16, flags: libc::c_int) -> libc::sembuf {
        libc::sembuf {
            sem_num: num,
            sem_op: delta,
            sem_flg: flags as libc::c_short,
        }
    }

    /// A private one-semaphore set at value 0 (every take waits), removed when dropped so
    /// that a failing test leaves nothing behind.
    struct HeldSet(libc::c_int);

    impl HeldSet {
        fn new() -> Self {
            Self(semget(IPC_PRIVATE, 1, libc::IPC_CREAT | 0o600).unwrap())
        }
    }

    impl Drop for HeldSet {
        fn drop(&mut self) {
            // Already gone in the tests that remove it themselves.
            // SAFETY: a private set this test alone uses.
            let _ = unsafe { remove(self.0) };
        }
    }

    #[test]
    fn set_lock_and_timeout() {
        let set = HeldSet::new();
        let id = set.0;
        // SAFETY: a private set this test alone uses.
        unsafe { set_value(id, 0, 1) }.unwrap();
        // SAFETY: a private set this test alone uses.
        unsafe { semop(id, &mut [op(0, -1, SEM_UNDO)]) }.unwrap();
        assert_eq!(get_value(id, 0).unwrap(), 0);
        // SAFETY: a private set this test alone uses.
        let busy = unsafe { semop(id, &mut [op(0, -1, libc::IPC_NOWAIT)]) }.unwrap_err();
        assert_eq!(busy.errno, Errno::EAGAIN);
        // SAFETY: a private set this test alone uses.
        let timed =
            unsafe { semop_timed(id, &mut [op(0, -1, 0)], Some(Duration::from_millis(20))) };
        assert_eq!(timed.unwrap_err().errno, Errno::EAGAIN);
        // SAFETY: a private set this test alone uses.
        unsafe { semop(id, &mut [op(0, 1, SEM_UNDO)]) }.unwrap();
        // SAFETY: a private set this test alone uses.
        unsafe { semop_timed(id, &mut [op(0, -1, SEM_UNDO)], Some(Duration::ZERO)) }.unwrap();
        // SAFETY: a private set this test alone uses.
        unsafe { semop_timed(id, &mut [op(0, 1, SEM_UNDO)], None) }.unwrap();
        assert_eq!(last_pid(id, 0).unwrap(), std::process::id() as i32);
        assert_eq!(waiting_count(id, 0).unwrap(), 0);
        let ds = stat(id).unwrap();
        assert_eq!(ds.nsems, 1);
        assert_eq!(ds.mode & 0o777, 0o600);
        assert_eq!(ds.uid, crate::process::effective_uid());
        assert_eq!(ds.cuid, ds.uid);
        assert!(ds.otime > 0 && ds.ctime > 0, "{ds:?}");
        // SAFETY: a private set this test alone uses.
        unsafe { remove(id) }.unwrap();
        assert_eq!(get_value(id, 0).unwrap_err().errno, Errno::EINVAL);
    }

    #[test]
    fn huge_timeout_means_forever() {
        assert!(timespec_from(Duration::MAX).is_none());
        let ts = timespec_from(Duration::new(3, 5)).unwrap();
        assert_eq!((ts.tv_sec, ts.tv_nsec), (3, 5));
    }

    // The polled path of `semop_timed` (macOS, FreeBSD), exercised on every platform.

    #[test]
    fn polled_wait_never_gives_up_early_and_restores_the_flags() {
        let set = HeldSet::new();
        for timeout in [0, 1, 30].map(Duration::from_millis) {
            let mut ops = [op(0, -1, SEM_UNDO)];
            let started = Instant::now();
            // SAFETY: a private set this test alone uses.
            let err = unsafe { semop_polled(set.0, &mut ops, Some(timeout)) }.unwrap_err();
            assert_eq!(err.errno, Errno::EAGAIN, "{timeout:?}");
            assert!(
                started.elapsed() >= timeout,
                "gave up early for {timeout:?}"
            );
            assert_eq!(i32::from(ops[0].sem_flg), SEM_UNDO, "flags restored");
        }
        assert_eq!(get_value(set.0, 0).unwrap(), 0, "nothing was taken");
    }

    #[test]
    fn polled_wait_takes_what_is_released_meanwhile() {
        let set = HeldSet::new();
        let id = set.0;
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            // SAFETY: a private set this test alone uses.
            unsafe { semop(id, &mut [op(0, 1, 0)]) }
        });
        // SAFETY: a private set this test alone uses.
        let taken = unsafe { semop_polled(id, &mut [op(0, -1, 0)], Some(Duration::from_secs(30))) };
        releaser.join().unwrap().unwrap();
        taken.unwrap();
        assert_eq!(get_value(id, 0).unwrap(), 0);
        // Without a deadline (none, or one past the end of the clock) it is a plain semop.
        // SAFETY: a private set this test alone uses.
        unsafe { set_value(id, 0, 2) }.unwrap();
        // SAFETY: a private set this test alone uses.
        unsafe { semop_polled(id, &mut [op(0, -1, 0)], None) }.unwrap();
        // SAFETY: a private set this test alone uses.
        unsafe { semop_polled(id, &mut [op(0, -1, 0)], Some(Duration::MAX)) }.unwrap();
        assert_eq!(get_value(id, 0).unwrap(), 0);
    }

    #[test]
    fn polled_wait_with_a_nowait_op_makes_one_attempt() {
        let set = HeldSet::new();
        let id = set.0;
        // Run on a thread with a watchdog, so a polled call that wrongly waited for its
        // hour fails the test instead of hanging it.
        let (done, result) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut ops = [op(0, -1, SEM_UNDO | libc::IPC_NOWAIT)];
            // SAFETY: a private set this test alone uses.
            let outcome = unsafe { semop_polled(id, &mut ops, Some(Duration::from_secs(3600))) };
            let _ = done.send((outcome, ops[0].sem_flg));
        });
        let (outcome, flags) = result
            .recv_timeout(Duration::from_secs(30))
            .expect("an IPC_NOWAIT op made the polled call wait");
        assert_eq!(outcome.unwrap_err().errno, Errno::EAGAIN);
        assert_eq!(i32::from(flags), SEM_UNDO | libc::IPC_NOWAIT, "flags kept");
    }

    #[test]
    fn polled_wait_reports_a_removed_set() {
        let set = HeldSet::new();
        let id = set.0;
        let remover = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            // SAFETY: a private set this test alone uses.
            unsafe { remove(id) }
        });
        // SAFETY: a private set this test alone uses.
        let err = unsafe { semop_polled(id, &mut [op(0, -1, 0)], Some(Duration::from_secs(30))) };
        remover.join().unwrap().unwrap();
        let gone = [Errno::EIDRM, Errno::EINVAL];
        assert!(gone.contains(&err.unwrap_err().errno));
        // And at once for a set that is already gone.
        // SAFETY: a private set this test alone uses.
        let err = unsafe { semop_polled(id, &mut [op(0, -1, 0)], Some(Duration::from_secs(30))) };
        assert!(gone.contains(&err.unwrap_err().errno));
    }

    #[test]
    fn get_all_refuses_a_short_buffer_and_fills_a_long_one() {
        let id = semget(IPC_PRIVATE, 3, libc::IPC_CREAT | 0o600).unwrap();
        let set = HeldSet(id);
        for (num, value) in [(0, 4), (1, 5), (2, 6)] {
            // SAFETY: a private set this test alone uses.
            unsafe { set_value(id, num, value) }.unwrap();
        }
        let mut short = [0u16; 2];
        assert_eq!(get_all(id, &mut short).unwrap_err().errno, Errno::ERANGE);
        assert_eq!(
            short,
            [0, 0],
            "nothing written into a buffer that is too short"
        );
        let mut long = [9u16; 4];
        get_all(id, &mut long).unwrap();
        assert_eq!(
            long,
            [4, 5, 6, 9],
            "the set's values, and nothing past them"
        );
        drop(set);
    }
}

//! Process identity: a cached `getpid` that stays right across `fork`, liveness probes, and
//! process start times where `/proc` is missing (macOS, FreeBSD).

use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU8, Ordering};

use crate::errno::SysError;
use crate::Errno;

/// The pid cache.
///
/// On Linux it lives in a page of its own marked `MADV_WIPEONFORK`: the kernel hands every
/// child made from this process, by `fork` or by a raw `clone` that skips the C library,
/// that page zero-filled, so a child can never read its parent's pid from it. Elsewhere (or
/// if the page cannot be made) the cache is reset by a `pthread_atfork` handler, and when
/// even that cannot be registered nothing is cached at all.
static CACHE: AtomicPtr<AtomicI32> = AtomicPtr::new(std::ptr::null_mut());

/// How the cache is kept right across `fork`, once decided.
static MODE: AtomicU8 = AtomicU8::new(UNDECIDED);
const UNDECIDED: u8 = 0;
const DECIDING: u8 = 1;
/// `CACHE` points to a wipe-on-fork page.
const WIPE_ON_FORK: u8 = 2;
/// `CACHE` points to `ATFORK_PID`, reset by a fork handler.
const AT_FORK: u8 = 3;
/// Neither works: ask the kernel every time.
const UNCACHED: u8 = 4;

static ATFORK_PID: AtomicI32 = AtomicI32::new(0);

extern "C" fn forget_pid_in_child() {
    ATFORK_PID.store(0, Ordering::Relaxed);
}

/// The calling process's pid, without a system call after the first.
///
/// Right in every child: the cache is wiped by the kernel (Linux) or reset by a fork
/// handler (elsewhere), see [`pid_cache_mode`]. The one case it cannot see is a child that
/// shares its parent's memory (`vfork`, `clone(CLONE_VM)` without `CLONE_THREAD`), which
/// must only call `exec` or `_exit` anyway.
#[inline]
pub fn current_pid() -> libc::pid_t {
    let cache = CACHE.load(Ordering::Acquire);
    if !cache.is_null() {
        // SAFETY: `CACHE` only ever holds null or a pointer to a live `AtomicI32` that is
        // never freed: a page mapped for the life of the process, or a static.
        let pid = unsafe { &*cache }.load(Ordering::Relaxed);
        if pid != 0 {
            return pid;
        }
    }
    refill()
}

#[cold]
#[inline(never)]
fn refill() -> libc::pid_t {
    // SAFETY: getpid takes nothing and cannot fail.
    let pid = unsafe { libc::getpid() };
    let cache = match decide() {
        WIPE_ON_FORK | AT_FORK => CACHE.load(Ordering::Acquire),
        _ => return pid,
    };
    if !cache.is_null() {
        // SAFETY: as in `current_pid`.
        unsafe { &*cache }.store(pid, Ordering::Relaxed);
    }
    pid
}

/// Sets the cache up once; returns the mode. A thread that finds another one deciding asks
/// the kernel this time (no lock is taken: a child forked while another thread holds one
/// would wait forever).
fn decide() -> u8 {
    match MODE.compare_exchange(UNDECIDED, DECIDING, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {}
        Err(DECIDING) => return UNCACHED,
        Err(mode) => return mode,
    }
    let mode = if let Some(page) = wipe_on_fork_page() {
        CACHE.store(page, Ordering::Release);
        WIPE_ON_FORK
    } else {
        // SAFETY: the handler is a plain `extern "C" fn` that only stores to an atomic,
        // which is async-signal-safe and valid in a forked child.
        let registered = unsafe { libc::pthread_atfork(None, None, Some(forget_pid_in_child)) };
        if registered == 0 {
            CACHE.store(
                std::ptr::from_ref(&ATFORK_PID).cast_mut(),
                Ordering::Release,
            );
            AT_FORK
        } else {
            UNCACHED
        }
    };
    MODE.store(mode, Ordering::Release);
    mode
}

/// An anonymous page that every child gets zero-filled, holding one `AtomicI32`.
#[cfg(target_os = "linux")]
fn wipe_on_fork_page() -> Option<*mut AtomicI32> {
    let size = page_size();
    // SAFETY: a fresh private anonymous mapping at an address the kernel picks replaces
    // nothing of ours.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if page == libc::MAP_FAILED {
        return None;
    }
    // SAFETY: `page` is the mapping made above, `size` bytes long.
    if unsafe { libc::madvise(page, size, libc::MADV_WIPEONFORK) } != 0 {
        // Older kernels (before 4.14) refuse the advice: fall back to the fork handler.
        // SAFETY: unmaps the page made above, which nothing refers to.
        unsafe { libc::munmap(page, size) };
        return None;
    }
    // The page is zero-filled and page-aligned, so aligned for an AtomicI32 holding 0, and
    // it is never unmapped.
    Some(page.cast())
}

#[cfg(not(target_os = "linux"))]
fn wipe_on_fork_page() -> Option<*mut AtomicI32> {
    None
}

/// How [`current_pid`] keeps its cache right across `fork`: `"wipe-on-fork page"`,
/// `"fork handler"` or `"uncached"` (every call asks the kernel).
pub fn pid_cache_mode() -> &'static str {
    let _ = current_pid();
    match MODE.load(Ordering::Acquire) {
        WIPE_ON_FORK => "wipe-on-fork page",
        AT_FORK => "fork handler",
        _ => "uncached",
    }
}

/// The calling process's pid from the kernel, bypassing the cache: for decisions that
/// must be right even in a child made without the C library's `fork` (raw `clone`).
pub fn pid_uncached() -> libc::pid_t {
    // SAFETY: getpid takes nothing and cannot fail.
    unsafe { libc::getpid() }
}

/// Whether a process with this pid exists (`kill(pid, 0)`), whoever owns it.
///
/// A pid may have been reused: compare start times (see `neocortex-core`) to be sure.
pub fn pid_exists(pid: libc::pid_t) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 performs only the existence and permission checks.
    let ret = unsafe { libc::kill(pid, 0) };
    ret == 0 || SysError::last("kill").errno != Errno::ESRCH
}

/// The effective user id.
pub fn effective_uid() -> libc::uid_t {
    // SAFETY: geteuid takes nothing and cannot fail.
    unsafe { libc::geteuid() }
}

/// Sends `SIGKILL` to the calling process (used by fault-injection tests).
pub fn kill_self() {
    // SAFETY: kill with our own pid and a valid signal number.
    unsafe { libc::kill(current_pid(), libc::SIGKILL) };
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`), the unit of start times in Linux's
/// `/proc/<pid>/stat`.
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf takes a plain value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// The page size.
pub fn page_size() -> usize {
    // SAFETY: sysconf takes a plain value.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size)
        .ok()
        .filter(|&s| s > 0)
        .unwrap_or(4096)
}

/// When a process started, as the kernel recorded it: `proc_start_time` (not on Linux).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StartTime {
    /// A stamp in microseconds that stays the same for the whole life of the process, so a
    /// later process that got the same pid has another one: on macOS the wall-clock start the
    /// kernel recorded at `fork`; on FreeBSD the time since boot at which the process started
    /// (its wall-clock start moves when the clock is set, this does not). Compare stamps only
    /// with stamps from this function on the same machine.
    pub stamp_micros: u64,
    /// The start in seconds since the Unix epoch by the current clock, to compare with
    /// times the kernel records, such as `shm_ctime`.
    pub epoch_secs: i64,
}

/// The microseconds in a `timeval` (seconds and microseconds, of platform-dependent types),
/// or `None` for a negative or out-of-range one.
#[cfg_attr(
    all(not(any(target_os = "macos", target_os = "freebsd")), not(test)),
    expect(
        dead_code,
        reason = "only macOS and FreeBSD read start times as timevals"
    )
)]
fn timeval_micros(sec: i64, usec: i64) -> Option<u64> {
    if !(0..1_000_000).contains(&usec) {
        return None;
    }
    u64::try_from(sec)
        .ok()?
        .checked_mul(1_000_000)?
        .checked_add(usec.unsigned_abs())
}

/// When process `pid` started, from `proc_pidinfo(PROC_PIDTBSDINFO)`.
///
/// `None` when there is no such process or the kernel refuses to describe it: on macOS,
/// `PROC_PIDTBSDINFO` needs the same user (or root), so another user's process is `None`.
/// Callers treat `None` as "unknown", never as "dead". Linux has no such call here: its
/// start times come from `/proc/<pid>/stat` (see `neocortex-core`).
#[cfg(target_os = "macos")]
pub fn proc_start_time(pid: libc::pid_t) -> Option<StartTime> {
    let wanted = u32::try_from(pid).ok().filter(|&p| p > 0)?;
    let size = std::mem::size_of::<libc::proc_bsdinfo>();
    // SAFETY: proc_bsdinfo is plain old data (integers and byte arrays); all-zero is valid.
    let mut info: libc::proc_bsdinfo = unsafe { std::mem::zeroed() };
    let buf: *mut libc::proc_bsdinfo = &mut info;
    let len = libc::c_int::try_from(size).ok()?;
    // SAFETY: `buf` points to `info`, a live, writable proc_bsdinfo of `len` bytes; the
    // kernel writes at most the buffer size it is given (proc_pidinfo, <libproc.h>).
    let written = unsafe { libc::proc_pidinfo(pid, libc::PROC_PIDTBSDINFO, 0, buf.cast(), len) };
    // It returns the bytes written: anything but a whole record (0 and an errno on failure,
    // e.g. ESRCH or EPERM) is no answer.
    if usize::try_from(written).ok() != Some(size) || info.pbi_pid != wanted {
        return None;
    }
    let sec = i64::try_from(info.pbi_start_tvsec).ok()?;
    let usec = i64::try_from(info.pbi_start_tvusec).ok()?;
    Some(StartTime {
        stamp_micros: timeval_micros(sec, usec)?,
        epoch_secs: sec,
    })
}

/// When process `pid` started, from `sysctl(kern.proc.pid.<pid>)` (`kinfo_proc.ki_start`).
///
/// FreeBSD reports `ki_start` as the uptime at which the process started plus the current
/// boot time, which moves when the clock is set; the stamp is therefore taken relative to
/// `kern.boottime`, read before and after (and again if it changed in between).
///
/// `None` when there is no such process (including one in another jail) or the kernel
/// gives no start time. Callers treat `None` as "unknown", never as "dead".
#[cfg(target_os = "freebsd")]
pub fn proc_start_time(pid: libc::pid_t) -> Option<StartTime> {
    if pid <= 0 {
        return None;
    }
    use crate::types::widen_signed;
    let micros =
        |tv: libc::timeval| timeval_micros(widen_signed(tv.tv_sec), widen_signed(tv.tv_usec));
    for _ in 0..3 {
        let before = micros(sysctl::boot_time()?)?;
        let info = sysctl::kinfo_proc(pid)?;
        let after = micros(sysctl::boot_time()?)?;
        if before != after {
            // The clock was set meanwhile: `ki_start` may hold either boot time.
            continue;
        }
        return Some(StartTime {
            stamp_micros: micros(info.ki_start)?.checked_sub(before)?,
            epoch_secs: widen_signed(info.ki_start.tv_sec),
        });
    }
    None
}

#[cfg(target_os = "freebsd")]
mod sysctl {
    /// Reads a fixed-size value: `sysctl(mib, out, &len, NULL, 0)`, which must fill it all.
    fn read<T>(mib: &[libc::c_int], out: &mut T) -> Option<()> {
        let mut len = std::mem::size_of::<T>();
        let out: *mut T = out;
        let names = libc::c_uint::try_from(mib.len()).ok()?;
        // SAFETY: `mib` is a live array of `names` ints; `out` points to a live, writable T
        // of `len` bytes, and `len` tells the kernel so: it writes at most that many bytes
        // (or fails with ENOMEM) and stores the length written (sysctl(3)). Nothing is set.
        let ret = unsafe {
            libc::sysctl(
                mib.as_ptr(),
                names,
                out.cast(),
                &mut len,
                std::ptr::null(),
                0,
            )
        };
        (ret == 0 && len == std::mem::size_of::<T>()).then_some(())
    }

    /// `kern.boottime`.
    pub(super) fn boot_time() -> Option<libc::timeval> {
        let mut tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        };
        read(&[libc::CTL_KERN, libc::KERN_BOOTTIME], &mut tv)?;
        Some(tv)
    }

    /// `kern.proc.pid.<pid>`: the process's `kinfo_proc`, if it exists.
    pub(super) fn kinfo_proc(pid: libc::pid_t) -> Option<libc::kinfo_proc> {
        // SAFETY: kinfo_proc is plain old data (integers, arrays, raw pointers the kernel
        // fills with its own addresses, never dereferenced here); all-zero is valid.
        let mut info: libc::kinfo_proc = unsafe { std::mem::zeroed() };
        let mib = [libc::CTL_KERN, libc::KERN_PROC, libc::KERN_PROC_PID, pid];
        read(&mib, &mut info)?;
        let whole = usize::try_from(info.ki_structsize).ok() == Some(std::mem::size_of_val(&info));
        (whole && info.ki_pid == pid).then_some(info)
    }
}

/// When process `pid` started: not known on this system, so always `None`, which callers
/// treat as "unknown", never as "dead".
#[cfg(not(any(target_os = "linux", target_os = "macos", target_os = "freebsd")))]
pub fn proc_start_time(pid: libc::pid_t) -> Option<StartTime> {
    let _ = pid;
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_is_cached_and_alive() {
        let pid = current_pid();
        assert_eq!(pid, std::process::id() as i32);
        assert_eq!(current_pid(), pid);
        assert!(pid_exists(pid));
        assert!(!pid_exists(0));
        assert!(!pid_exists(i32::MAX));
        #[cfg(target_os = "linux")]
        assert_eq!(pid_cache_mode(), "wipe-on-fork page");
    }

    /// A child made by a raw `clone` (no fork handlers run) must see its own pid.
    #[test]
    #[cfg(target_os = "linux")]
    fn a_raw_clone_child_sees_its_own_pid() {
        let parent = current_pid();
        // SAFETY: a raw clone without CLONE_VM is a fork that skips the C library's fork
        // handlers; the child only reads an atomic, makes system calls and `_exit`s.
        let child = unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD, 0, 0, 0, 0) };
        assert!(child >= 0, "clone failed");
        if child == 0 {
            let right = current_pid() != parent && current_pid() == pid_uncached();
            // SAFETY: leaves the child at once.
            unsafe { libc::_exit(if right { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: reaps our own child.
        let reaped = unsafe { libc::waitpid(child as libc::pid_t, &mut status, 0) };
        assert_eq!(reaped, child as libc::pid_t);
        assert!(libc::WIFEXITED(status), "child status {status}");
        assert_eq!(
            libc::WEXITSTATUS(status),
            0,
            "the child read its parent's pid"
        );
    }

    #[test]
    fn timevals_convert_to_microseconds() {
        assert_eq!(timeval_micros(0, 0), Some(0));
        assert_eq!(
            timeval_micros(1_700_000_000, 999_999),
            Some(1_700_000_000_999_999)
        );
        assert_eq!(timeval_micros(-1, 0), None);
        assert_eq!(timeval_micros(1, -1), None);
        assert_eq!(timeval_micros(1, 1_000_000), None);
        assert_eq!(timeval_micros(i64::MAX, 0), None);
    }

    #[cfg(not(target_os = "linux"))]
    #[test]
    fn own_start_time_is_known_and_stable() {
        let me = proc_start_time(current_pid()).expect("own start time");
        assert!(me.stamp_micros > 0);
        assert_eq!(proc_start_time(current_pid()), Some(me));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        assert!(me.epoch_secs <= now + 1);
        assert_eq!(proc_start_time(0), None);
        assert_eq!(proc_start_time(-1), None);
    }
}

//! Process identity: a cached `getpid` that stays right across `fork`, and liveness probes.

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

/// Clock ticks per second, the unit of start times in `/proc/<pid>/stat`.
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
}

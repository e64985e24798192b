//! Process identity: a cached `getpid` that stays right across `fork`, and liveness probes.

use std::sync::atomic::{AtomicI32, AtomicU8, Ordering};

use crate::errno::SysError;
use crate::Errno;

static PID: AtomicI32 = AtomicI32::new(0);

/// Whether the fork handler is registered. A lock (`Once`) would not do: a child forked while
/// another thread holds it would block forever on its first call.
static HANDLER: AtomicU8 = AtomicU8::new(UNREGISTERED);
const UNREGISTERED: u8 = 0;
const REGISTERING: u8 = 1;
const REGISTERED: u8 = 2;

extern "C" fn forget_pid_in_child() {
    PID.store(0, Ordering::Relaxed);
}

/// The calling process's pid, without a system call after the first.
///
/// The cache is reset in the child of every `fork(2)` that goes through the C library (which
/// runs `pthread_atfork` handlers), so a forked child sees its own pid.
#[inline]
pub fn current_pid() -> libc::pid_t {
    let pid = PID.load(Ordering::Relaxed);
    if pid != 0 {
        return pid;
    }
    first_pid()
}

#[cold]
fn first_pid() -> libc::pid_t {
    if HANDLER
        .compare_exchange(
            UNREGISTERED,
            REGISTERING,
            Ordering::AcqRel,
            Ordering::Acquire,
        )
        .is_ok()
    {
        // SAFETY: the handler is a plain `extern "C" fn` that only stores to an atomic, which
        // is async-signal-safe and valid in a forked child.
        unsafe { libc::pthread_atfork(None, None, Some(forget_pid_in_child)) };
        HANDLER.store(REGISTERED, Ordering::Release);
    }
    // SAFETY: getpid takes nothing and cannot fail.
    let pid = unsafe { libc::getpid() };
    // Cache only once the handler is in place: a child forked before that (even one forked
    // half-way through the registration) keeps asking the kernel, and so stays right.
    if HANDLER.load(Ordering::Acquire) == REGISTERED {
        PID.store(pid, Ordering::Relaxed);
    }
    pid
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
    }
}

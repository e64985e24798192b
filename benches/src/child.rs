//! Forked helper processes: a shared block of atomics for talking to them, forking one
//! pinned to a core, watching and reaping it, and a clock that means the same in every
//! process.
//!
//! A child only makes crate calls and system calls, then `_exit`s: it never returns into
//! the harness, never runs the destructors it inherited, and dies with the harness
//! (`PR_SET_PDEATHSIG`).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use crate::affinity::pin_to;

/// How long the harness waits for a child to get ready, answer, or exit.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Types that are valid when all their bytes are zero and that are shared only through
/// atomics (the blocks the harness shares with its children).
///
/// # Safety
///
/// All-zero bytes are a valid value, and every field is an atomic (or an array of them).
pub unsafe trait ZeroedAtomics: Sync {}

/// A `T` in an anonymous shared mapping, visible to the children forked after it was made.
#[derive(Debug)]
pub struct Shared<T: ZeroedAtomics> {
    addr: NonNull<T>,
}

impl<T: ZeroedAtomics> Shared<T> {
    /// Maps a zero-filled `T`.
    ///
    /// # Errors
    ///
    /// The `mmap` error.
    pub fn new() -> Result<Self, String> {
        // SAFETY: an anonymous shared mapping at an address of the kernel's choice.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size_of::<T>().max(1),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(format!("mmap: {}", std::io::Error::last_os_error()));
        }
        let addr = NonNull::new(addr.cast::<T>()).ok_or("mmap returned null")?;
        // The kernel zero-fills anonymous mappings, and all-zero is a valid T (ZeroedAtomics).
        Ok(Self { addr })
    }

    /// The shared value.
    pub fn get(&self) -> &T {
        // SAFETY: the mapping is page-aligned, zero-filled (a valid T), shared only through
        // atomics, and lives as long as `self`.
        unsafe { self.addr.as_ref() }
    }
}

impl<T: ZeroedAtomics> Drop for Shared<T> {
    fn drop(&mut self) {
        // SAFETY: mapped in `new` with this size; no reference into it outlives `self`.
        unsafe { libc::munmap(self.addr.as_ptr().cast(), size_of::<T>().max(1)) };
    }
}

/// Forks a child pinned to `core` that runs `body` and `_exit`s with its result (2 when it
/// panicked, 3 when the harness was already gone).
///
/// # Errors
///
/// The `fork` error.
pub fn fork_child(core: usize, body: impl FnOnce() -> i32) -> Result<libc::pid_t, String> {
    // SAFETY: getpid cannot fail.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the harness is single-threaded when it forks (its threads are all joined), so
    // the child may allocate; it only runs `body` and then `_exit`s without unwinding.
    let pid = unsafe { libc::fork() };
    if pid == -1 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        let code = catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
            // SAFETY: getppid cannot fail.
            if unsafe { libc::getppid() } != parent {
                return 3;
            }
            let _ = pin_to(core);
            body()
        }))
        .unwrap_or(2);
        // SAFETY: ends the child at once, without running the parent's destructors or
        // atexit handlers it inherited.
        unsafe { libc::_exit(code) };
    }
    Ok(pid)
}

/// Whether the child `pid` has exited (or cannot be waited for); it stays reapable.
pub fn has_exited(pid: libc::pid_t) -> bool {
    let mut info = std::mem::MaybeUninit::<libc::siginfo_t>::zeroed();
    // SAFETY: `info` is writable; WNOWAIT leaves the child reapable, WNOHANG does not block.
    let rc = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            info.as_mut_ptr(),
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    if rc != 0 {
        return true;
    }
    // SAFETY: zero-initialised and possibly filled by the kernel; every pattern is valid.
    let info = unsafe { info.assume_init() };
    // SAFETY: reading si_pid of a siginfo_t filled by waitid (0 when no child changed state).
    unsafe { info.si_pid() != 0 }
}

/// Reaps the children, killing those that do not exit within [`PATIENCE`]; their exit codes
/// (`None` for a signal or an error).
pub fn reap(children: &[libc::pid_t]) -> Vec<Option<i32>> {
    let started = Instant::now();
    children
        .iter()
        .map(|&pid| loop {
            let mut status = 0;
            // SAFETY: `status` is writable; WNOHANG does not block.
            let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if rc == pid {
                break libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
            }
            if rc == -1 {
                break None;
            }
            if started.elapsed() > PATIENCE {
                kill(pid);
            }
            std::thread::sleep(Duration::from_micros(200));
        })
        .collect()
}

/// `SIGKILL`s our unreaped child `pid`.
pub fn kill(pid: libc::pid_t) {
    // SAFETY: `pid` is our unreaped child, so the pid cannot have been reused.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// `CLOCK_MONOTONIC` in nanoseconds: the same clock in every process of the machine.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Whether the process `pid` is asleep in the kernel (state `S` in `/proc/PID/stat`).
pub fn is_sleeping(pid: libc::pid_t) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('S'))
        })
        .unwrap_or(false)
}

/// Waits until `done` holds, polling every `step`; the error names `what` when `pid` exits
/// first, the harness is interrupted, or [`PATIENCE`] runs out.
///
/// # Errors
///
/// As above.
pub fn await_child(
    pid: libc::pid_t,
    what: &str,
    step: Duration,
    done: impl Fn() -> bool,
) -> Result<(), String> {
    let started = Instant::now();
    while !done() {
        if has_exited(pid) {
            // One last look: it may have finished and exited.
            if done() {
                return Ok(());
            }
            return Err(format!("the child exited before {what}"));
        }
        if crate::cleanup::interrupted() {
            return Err("interrupted".into());
        }
        if started.elapsed() > PATIENCE {
            return Err(format!("the child did not reach {what} in time"));
        }
        std::thread::sleep(step);
    }
    Ok(())
}

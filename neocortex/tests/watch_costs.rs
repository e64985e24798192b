//! What waiting for a change costs everyone else (issue 10), across processes, for every
//! built-in lock: reads (`read()`, shared guards, exclusive guards only read through)
//! neither move the version nor wake a waiter; a waiter killed while asleep is uncounted by
//! the kernel, writers go on, and the sleepers hint it leaves costs the next write one
//! spare `FUTEX_WAKE`, then none (counted with a seccomp trap).

#![expect(
    clippy::unwrap_used,
    reason = "test helpers: an unexpected error fails the test with its message"
)]

mod common;

use std::time::{Duration, Instant};

use common::watching::{finish, now_ns, wait_until_watching, waiter, Counter, WAKE_LATENCY};
use common::{fork, unique_key, Exit, Pipe};
use neocortex::{Cortex, CortexSync, InPlace, RwSemaphore, Semaphore, SeqLock, SysvSemaphore};

/// Voluntary context switches of `pid`: each time it went to sleep.
fn sleeps_of(pid: libc::pid_t) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap()
}

/// Rounds of reads while a waiter sleeps.
const READ_ROUNDS: u64 = 50;

/// Runs `reads` (which must only read) while a process waits for a change with no time
/// limit: the version does not move, and the waiter is not woken (it goes back to sleep
/// only as often as its own 200 ms poll, not once per read).
fn reads_leave_a_waiter_asleep<L: CortexSync>(name: &str, reads: impl Fn(&Counter<L>)) {
    let key = unique_key(name);
    let cortex: Counter<L> = Cortex::new(key, 5, None).unwrap();
    let before = cortex.version();
    let (ready, report) = (Pipe::new(), Pipe::new());
    let child = waiter::<L>(key, Duration::MAX, &ready, &report);
    ready.recv();
    wait_until_watching(child.pid());
    let slept_before = sleeps_of(child.pid());
    let started = Instant::now();
    for _ in 0..READ_ROUNDS {
        reads(&cortex);
        // Time for a waiter that the reads woke to go back to sleep (and be counted).
        wait_until_watching(child.pid());
    }
    let took = started.elapsed();
    let slept = sleeps_of(child.pid()) - slept_before;
    assert_eq!(cortex.version(), before, "reads do not move the version");
    // Its polls, one more, and one for the read of /proc: never one per read.
    let polls = took.as_millis() as u64 / 200 + 3;
    assert!(
        slept <= polls,
        "the waiter went back to sleep {slept} times during {READ_ROUNDS} rounds of reads \
         ({took:?})"
    );
    wait_until_watching(child.pid());
    assert_eq!(
        report.recv_timeout(Duration::ZERO),
        None,
        "the waiter is still waiting"
    );
    cortex.write(6).unwrap();
    child.expect_success("woken by the write after the reads");
    assert_eq!((report.recv_u64(), report.recv_u64()), (before + 1, 6));
    finish(cortex);
}

/// `read()`: every lock.
fn read_neither_moves_the_version_nor_wakes<L: CortexSync>(name: &str) {
    reads_leave_a_waiter_asleep::<L>(name, |c| assert_eq!(c.read().unwrap(), 5));
}

/// Shared guards, and exclusive guards only read through (`Deref`, never `DerefMut`).
fn guards_read_through_neither_move_the_version_nor_wake<L: CortexSync<Access = InPlace>>(
    name: &str,
) {
    reads_leave_a_waiter_asleep::<L>(name, |c| {
        assert_eq!(*c.lock_shared().unwrap(), 5);
        assert_eq!(*c.lock().unwrap(), 5);
        assert_eq!(*c.try_lock().unwrap().unwrap(), 5);
        assert_eq!(*c.lock_timeout(Duration::from_secs(10)).unwrap(), 5);
        let guard = c.lock().unwrap();
        let copy: u64 = *guard;
        assert!(!guard.owner_died());
        drop(guard);
        assert_eq!(copy, 5);
    });
}

/// A waiter SIGKILLed while asleep: the kernel uncounts it as a watcher, writes go on, and
/// a new waiter is woken as before.
fn a_killed_waiter_leaves_writers_unaffected<L: CortexSync>(name: &str) {
    let key = unique_key(name);
    let cortex: Counter<L> = Cortex::new(key, 0, None).unwrap();
    let watchers = || neocortex_sys::sem::get_value(cortex.members_set_id(), 1).unwrap();
    let (ready, report) = (Pipe::new(), Pipe::new());
    let doomed = waiter::<L>(key, Duration::MAX, &ready, &report);
    ready.recv();
    wait_until_watching(doomed.pid());
    assert_eq!(watchers(), 1, "the waiter is counted by the kernel");
    doomed.signal(libc::SIGKILL);
    assert_eq!(doomed.wait(), Exit::Signal(libc::SIGKILL));
    // Its SEM_UNDO took the count back: the next wakes that find nobody asleep clear the
    // sleepers hint it left behind.
    assert_eq!(watchers(), 0, "the dead waiter is uncounted");
    for n in 1..=100 {
        cortex.write(n).unwrap();
    }
    assert_eq!(cortex.read().unwrap(), 100);
    let (ready, report) = (Pipe::new(), Pipe::new());
    let next = waiter::<L>(key, Duration::MAX, &ready, &report);
    ready.recv();
    wait_until_watching(next.pid());
    let wrote_at = now_ns();
    cortex.write(101).unwrap();
    next.expect_success("a new waiter is woken");
    let (_, value, at) = (report.recv_u64(), report.recv_u64(), report.recv_u64());
    assert_eq!(value, 101);
    let late = Duration::from_nanos(at.saturating_sub(wrote_at));
    assert!(late < WAKE_LATENCY, "woken {late:?} after the write");
    finish(cortex);
}

/// Counting a process's `FUTEX_WAKE` calls, without strace or tracefs: a seccomp filter
/// traps every one (`SIGSYS`), and the handler counts it and makes the call itself, marked
/// so that the filter lets that one through.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod futex_wakes {
    use std::sync::atomic::{AtomicU64, Ordering};

    /// In the sixth argument (unused by `FUTEX_WAKE`): a call the handler makes itself.
    const PASS: u32 = 0x5eed_f00d;
    static COUNT: AtomicU64 = AtomicU64::new(0);

    #[repr(C)]
    struct SockFilter {
        code: u16,
        jt: u8,
        jf: u8,
        k: u32,
    }

    #[repr(C)]
    struct SockFprog {
        len: u16,
        filter: *const SockFilter,
    }

    const fn stmt(code: u16, k: u32) -> SockFilter {
        SockFilter {
            code,
            jt: 0,
            jf: 0,
            k,
        }
    }

    const fn jump(code: u16, k: u32, jt: u8, jf: u8) -> SockFilter {
        SockFilter { code, jt, jf, k }
    }

    const LD_W_ABS: u16 = 0x20;
    const AND_K: u16 = 0x54;
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;
    const RET_ALLOW: u32 = 0x7fff_0000;
    const RET_TRAP: u32 = 0x0003_0000;
    const FUTEX_WAKE: u32 = 1;
    /// `struct seccomp_data`: `nr` at 0, `args[i]` at 16 + 8 i (low half first).
    const NR: u32 = 0;
    const ARG1: u32 = 24;
    const ARG5: u32 = 56;

    extern "C" fn on_sigsys(_: libc::c_int, _: *mut libc::siginfo_t, context: *mut libc::c_void) {
        COUNT.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the kernel passes a valid ucontext_t to an SA_SIGINFO handler.
        let gregs = unsafe { &mut (*context.cast::<libc::ucontext_t>()).uc_mcontext.gregs };
        let arg = |r: libc::c_int| gregs[r as usize];
        // SAFETY: the trapped futex call, made as the caller asked, with the pass mark;
        // syscall(2) is async-signal-safe.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_futex,
                arg(libc::REG_RDI),
                arg(libc::REG_RSI),
                arg(libc::REG_RDX),
                arg(libc::REG_R10),
                arg(libc::REG_R8),
                PASS as libc::c_long,
            )
        };
        // The raw system call's result: -errno on failure.
        let raw = if ret == -1 {
            // Read right after the call, before anything else can set it.
            -i64::from(
                std::io::Error::last_os_error()
                    .raw_os_error()
                    .unwrap_or(libc::EINVAL),
            )
        } else {
            ret
        };
        gregs[libc::REG_RAX as usize] = raw;
    }

    /// Starts counting in this (forked, single-threaded) process; false if it cannot.
    pub(crate) fn count_from_now() -> bool {
        // SAFETY: a zeroed sigaction is a valid starting point; handler and flags set below.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_sigsys as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO;
        // SAFETY: installs an async-signal-safe SIGSYS handler in this child.
        if unsafe { libc::sigaction(libc::SIGSYS, &action, std::ptr::null_mut()) } != 0 {
            return false;
        }
        let program = [
            stmt(LD_W_ABS, NR),
            jump(JEQ_K, libc::SYS_futex as u32, 0, 6),
            stmt(LD_W_ABS, ARG1),
            stmt(AND_K, 0x7f),
            jump(JEQ_K, FUTEX_WAKE, 0, 3),
            stmt(LD_W_ABS, ARG5),
            jump(JEQ_K, PASS, 1, 0),
            stmt(RET_K, RET_TRAP),
            stmt(RET_K, RET_ALLOW),
        ];
        let prog = SockFprog {
            len: program.len() as u16,
            filter: program.as_ptr(),
        };
        // SAFETY: a plain prctl on this child (required to install a filter unprivileged).
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return false;
        }
        // SAFETY: installs the filter on this child; the program outlives the call (the
        // kernel copies it).
        unsafe { libc::prctl(libc::PR_SET_SECCOMP, 2, &prog as *const SockFprog) == 0 }
    }

    /// `FUTEX_WAKE` calls made since counting started.
    pub(crate) fn count() -> u64 {
        COUNT.load(Ordering::Relaxed)
    }

    /// Makes one `FUTEX_WAKE` call (on a word nobody waits on): proves the counting works.
    pub(crate) fn wake_once() {
        let word = std::sync::atomic::AtomicU32::new(0);
        // SAFETY: wakes nobody on a live local word.
        unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, 1) };
    }
}

/// After a waiter is SIGKILLed while counted as a sleeper, the first write pays for one
/// spare `FUTEX_WAKE` (it finds nobody), notices that the kernel counts no watcher, and
/// clears the hint: every later write makes no system call for waiters.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn a_killed_waiters_hint_costs_one_spare_wake_then_none<L: CortexSync>(name: &str) {
    const WRITES: usize = 40;
    let key = unique_key(name);
    let cortex: Counter<L> = Cortex::new(key, 0, None).unwrap();
    let (ready, report) = (Pipe::new(), Pipe::new());
    let doomed = waiter::<L>(key, Duration::MAX, &ready, &report);
    ready.recv();
    wait_until_watching(doomed.pid());
    doomed.signal(libc::SIGKILL);
    assert_eq!(doomed.wait(), Exit::Signal(libc::SIGKILL));
    let wakes = Pipe::new();
    let writer = fork(|| {
        let Ok(c) = Counter::<L>::attach(key) else {
            return 2;
        };
        if !futex_wakes::count_from_now() {
            return 3;
        }
        futex_wakes::wake_once();
        if futex_wakes::count() != 1 {
            return 4; // the counting does not work
        }
        for n in 0..WRITES {
            let before = futex_wakes::count();
            if c.write(n as u64).is_err() {
                return 5;
            }
            wakes.send_u64(futex_wakes::count() - before);
        }
        0
    });
    assert_eq!(
        writer.wait(),
        Exit::Code(0),
        "3: no seccomp here, 4: counting broken"
    );
    let per_write: Vec<u64> = (0..WRITES).map(|_| wakes.recv_u64()).collect();
    assert_eq!(
        per_write[0], 1,
        "the dead waiter's hint costs the first write one wake"
    );
    assert!(
        per_write[1..].iter().all(|&n| n == 0),
        "once cleared, writes wake nobody: {per_write:?}"
    );
    finish(cortex);
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[test]
fn a_killed_waiters_hint_costs_one_spare_wake_then_none_semaphore() {
    let _guard = common::watchdog();
    a_killed_waiters_hint_costs_one_spare_wake_then_none::<Semaphore>("watch_hint_semaphore");
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[test]
fn a_killed_waiters_hint_costs_one_spare_wake_then_none_sysv_semaphore() {
    let _guard = common::watchdog();
    a_killed_waiters_hint_costs_one_spare_wake_then_none::<SysvSemaphore>("watch_hint_sysv");
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[test]
fn a_killed_waiters_hint_costs_one_spare_wake_then_none_seqlock() {
    let _guard = common::watchdog();
    a_killed_waiters_hint_costs_one_spare_wake_then_none::<SeqLock>("watch_hint_seqlock");
}

macro_rules! costs_suite {
    ($module:ident, $lock:ty) => {
        mod $module {
            use super::*;

            fn name(test: &str) -> String {
                format!("watch_{}_{test}", stringify!($module))
            }

            #[test]
            fn read_neither_moves_the_version_nor_wakes() {
                let _guard = common::watchdog();
                super::read_neither_moves_the_version_nor_wakes::<$lock>(&name("reads"));
            }

            #[test]
            fn a_killed_waiter_leaves_writers_unaffected() {
                let _guard = common::watchdog();
                super::a_killed_waiter_leaves_writers_unaffected::<$lock>(&name("killed"));
            }
        }
    };
}

costs_suite!(semaphore, Semaphore);
costs_suite!(sysv_semaphore, SysvSemaphore);
costs_suite!(rw_semaphore, RwSemaphore);
costs_suite!(seqlock, SeqLock);

macro_rules! guard_reads {
    ($($test:ident: $lock:ty),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                let _guard = common::watchdog();
                guards_read_through_neither_move_the_version_nor_wake::<$lock>(stringify!($test));
            }
        )*
    };
}

guard_reads!(
    semaphore_guards_read_through_neither_move_the_version_nor_wake: Semaphore,
    sysv_semaphore_guards_read_through_neither_move_the_version_nor_wake: SysvSemaphore,
    rw_semaphore_guards_read_through_neither_move_the_version_nor_wake: RwSemaphore,
);

/// The watchers a segment counts (the kernel's view, from the operator's inspection).
fn watchers(key: i32) -> Option<i32> {
    neocortex::inspect::segment(key)
        .expect("inspect the segment")
        .neocortex
        .expect("a neocortex segment")
        .watchers
}

/// A handle that waited for a change counts as a watcher until it is dropped (then writers
/// that find nobody asleep may clear a stale sleeper count).
#[test]
fn a_dropped_watcher_is_no_longer_counted() {
    let _guard = common::watchdog();
    let key = unique_key("a_dropped_watcher_is_no_longer_counted");
    let cortex: Counter<Semaphore> = Cortex::new(key, 0, None).unwrap();
    assert_eq!(watchers(key), Some(0));
    let watching: Counter<Semaphore> = Cortex::attach(key).unwrap();
    let timed_out = watching.wait_for_change(watching.version(), Duration::from_millis(1));
    assert_eq!(timed_out.unwrap_err().kind(), neocortex::ErrorKind::Timeout);
    assert_eq!(watchers(key), Some(1));
    drop(watching);
    assert_eq!(watchers(key), Some(0));
    finish(cortex);
}

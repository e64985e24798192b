//! Waiting for a change (issue 10), across processes, for every built-in lock: a write
//! wakes waiters in other processes and they read the new value; a stale `since` returns
//! at once; timeouts are `Timeout` and never early; `Duration::MAX` waits; removal by the
//! owner or by `ipcrm` wakes waiters with `LockRemoved`; one write wakes sixteen waiters;
//! reads neither move the version nor wake anyone; a killed waiter costs writers nothing
//! lasting; signals neither lose a wake nor end a wait early; `Watcher::next_value` reports
//! the version its value belongs to.
//!
//! Wake-ups are also found, more slowly, by the waiters' own polls (every 200 ms, to notice
//! removal from outside): where a lost wake-up would only make a waiter late, the tests
//! measure how late, against bounds far above a real wake-up and below the poll.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers: an unexpected error fails the test with its message"
)]

mod common;

use std::time::{Duration, Instant};

use common::{fork, unique_key, Child, Exit, Made, Pipe};
use neocortex::{
    Cortex, CortexSync, ErrorKind, InPlace, RwSemaphore, Semaphore, SeqLock, SysvSemaphore,
};

type Counter<L> = Cortex<u64, L>;

/// How late a woken waiter may return after the write that woke it: far above a futex
/// wake-up on a loaded machine, below the 200 ms poll that would otherwise find the change.
const WAKE_LATENCY: Duration = Duration::from_millis(150);

/// `CLOCK_MONOTONIC` in nanoseconds: the same clock in every process of the machine.
fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Waits until `pid` sleeps in `futex` (where `wait_for_change` sleeps).
#[track_caller]
fn wait_until_watching(pid: libc::pid_t) {
    common::wait_until_asleep_in(pid, &[libc::SYS_futex], "asleep waiting for a change");
}

fn finish<T: ?Sized + neocortex::Value, L: CortexSync>(cortex: Cortex<T, L>) {
    let made = Made::of(&cortex);
    drop(cortex);
    made.assert_gone();
}

/// A child that attaches, says it is ready, waits for a change from the version it saw
/// (with `timeout`), and reports on `report`: the version, the value read after it, and
/// when it returned (`now_ns`). Exit code 0 when woken by a change and the read worked;
/// [`kind_code`] of the wait's error; 10 more than that when the wait returned a version
/// but the read after it failed.
fn waiter<L: CortexSync>(key: i32, timeout: Duration, ready: &Pipe, report: &Pipe) -> Child {
    fork(|| {
        let Ok(c) = Counter::<L>::attach(key) else {
            return 2;
        };
        let since = c.version();
        ready.send(1);
        let woken = c.wait_for_change(since, timeout);
        let at = now_ns();
        match woken {
            Ok(version) => {
                let read = c.read();
                report.send_u64(version);
                report.send_u64(*read.as_ref().unwrap_or(&0));
                report.send_u64(at);
                match read {
                    Ok(_) => 0,
                    // Woken as if by a change, and only the read says what happened.
                    Err(e) => 10 + kind_code(e.kind()),
                }
            }
            Err(e) => {
                report.send_u64(at);
                kind_code(e.kind())
            }
        }
    })
}

/// The exit code a waiter uses for an error of kind `kind`.
fn kind_code(kind: ErrorKind) -> i32 {
    match kind {
        ErrorKind::Timeout => 10,
        ErrorKind::LockRemoved => 11,
        ErrorKind::LimitReached => 12,
        _ => 13,
    }
}

/// A waiter in another process wakes on a write (from `Duration::MAX`, which waits through
/// its polls) and reads the new value.
fn a_waiter_wakes_on_a_write_and_reads_it<L: CortexSync>(name: &str) {
    let key = unique_key(name);
    let cortex: Counter<L> = Cortex::new(key, 1, None).unwrap();
    let before = cortex.version();
    let (ready, report) = (Pipe::new(), Pipe::new());
    let child = waiter::<L>(key, Duration::MAX, &ready, &report);
    ready.recv();
    wait_until_watching(child.pid());
    // Several of its 200 ms polls go by: it waits on, it does not return.
    assert_eq!(report.recv_timeout(Duration::from_millis(500)), None);
    wait_until_watching(child.pid());
    let wrote_at = now_ns();
    cortex.write(42).unwrap();
    child.expect_success("woken by the write");
    let (version, value, at) = (report.recv_u64(), report.recv_u64(), report.recv_u64());
    assert_eq!((version, value), (before + 1, 42));
    let late = Duration::from_nanos(at.saturating_sub(wrote_at));
    assert!(late < WAKE_LATENCY, "woken {late:?} after the write");
    finish(cortex);
}

/// `since` already stale (older, or a version not reached yet): returns at once, also with
/// `Duration::MAX`, and so does `Watcher::changed`.
fn a_stale_since_returns_at_once<L: CortexSync>(name: &str) {
    let key = unique_key(name);
    let cortex: Counter<L> = Cortex::new(key, 1, None).unwrap();
    let old = cortex.version();
    let mut watcher = cortex.watch();
    cortex.write(2).unwrap();
    assert!(watcher.has_changed());
    let now = cortex.version();
    assert_eq!(now, old + 1);
    // A wait that blocked would be Timeout (or hang until the watchdog with MAX).
    assert_eq!(
        cortex
            .wait_for_change(old, Duration::from_secs(10))
            .unwrap(),
        now
    );
    assert_eq!(cortex.wait_for_change(old, Duration::MAX).unwrap(), now);
    assert_eq!(
        cortex.wait_for_change(now + 7, Duration::ZERO).unwrap(),
        now
    );
    assert_eq!(watcher.changed(Duration::from_secs(10)).unwrap(), now);
    assert_eq!(watcher.seen(), now);
    assert!(!watcher.has_changed());
    finish(cortex);
}

/// A wait that nothing ends is `Timeout`, after its timeout and never before, in another
/// process as in this one; a zero timeout returns at once.
fn a_timeout_is_timeout_and_never_early<L: CortexSync>(name: &str) {
    let key = unique_key(name);
    let cortex: Counter<L> = Cortex::new(key, 1, None).unwrap();
    let since = cortex.version();
    for timeout in [
        Duration::ZERO,
        Duration::from_millis(30),
        Duration::from_millis(250),
    ] {
        let started = Instant::now();
        let e = cortex.wait_for_change(since, timeout).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
        assert!(started.elapsed() >= timeout, "{timeout:?}: returned early");
    }
    let child = fork(|| {
        let Ok(c) = Counter::<L>::attach(key) else {
            return 2;
        };
        let timeout = Duration::from_millis(450);
        let started = Instant::now();
        match c.wait_for_change(c.version(), timeout) {
            Err(e) if e.kind() == ErrorKind::Timeout && started.elapsed() >= timeout => 0,
            Err(e) if e.kind() == ErrorKind::Timeout => 3,
            _ => 4,
        }
    });
    assert_eq!(child.wait(), Exit::Code(0), "3: early, 4: not Timeout");
    assert_eq!(cortex.version(), since);
    finish(cortex);
}

/// The owner removes the segment while four processes wait: each is woken at once (not
/// left to find it at its next poll) and gets `LockRemoved`: from the wait itself when
/// `strict`, else from the wait or from the read right after it.
fn removal_by_the_owner_wakes_waiters<L: CortexSync>(name: &str, strict: bool) {
    let key = unique_key(name);
    let cortex: Counter<L> = Cortex::new(key, 1, None).unwrap();
    let made = Made::of(&cortex);
    let ready = Pipe::new();
    let reports: Vec<Pipe> = (0..4).map(|_| Pipe::new()).collect();
    let children: Vec<Child> = reports
        .iter()
        .map(|report| waiter::<L>(key, Duration::MAX, &ready, report))
        .collect();
    for child in &children {
        ready.recv();
        wait_until_watching(child.pid());
    }
    let removed_at = now_ns();
    cortex.remove().unwrap();
    for (child, report) in children.into_iter().zip(&reports) {
        match child.wait() {
            Exit::Code(11) => {}
            Exit::Code(21) if !strict => {
                // Returned a version, then read LockRemoved: skip to the time of return.
                report.recv_u64();
                report.recv_u64();
            }
            Exit::Code(21) => panic!(
                "wait_for_change returned Ok(a new version) for the removal; only the read \
                 after it said LockRemoved"
            ),
            other => panic!("a waiter during removal: {other:?}"),
        }
        let late = Duration::from_nanos(report.recv_u64().saturating_sub(removed_at));
        assert!(late < WAKE_LATENCY, "told {late:?} after the removal");
    }
    made.assert_gone();
}

/// `ipcrm -m` from outside (nobody marks the header, nobody wakes anyone): a waiting
/// process finds out by itself, with `LockRemoved`, within a second.
fn ipcrm_wakes_waiters_with_lock_removed_within_a_second<L: CortexSync>(name: &str) {
    let key = unique_key(name);
    let cortex: Counter<L> = Cortex::new(key, 1, None).unwrap();
    let made = Made::of(&cortex);
    let (ready, report) = (Pipe::new(), Pipe::new());
    let child = waiter::<L>(key, Duration::MAX, &ready, &report);
    ready.recv();
    wait_until_watching(child.pid());
    let removed_at = now_ns();
    let status = std::process::Command::new("ipcrm")
        .args(["-m", &cortex.segment_id().to_string()])
        .status()
        .expect("run ipcrm");
    assert!(status.success(), "ipcrm -m failed");
    assert_eq!(child.wait(), Exit::Code(11), "LockRemoved");
    let late = Duration::from_nanos(report.recv_u64().saturating_sub(removed_at));
    assert!(late < Duration::from_secs(1), "told {late:?} after ipcrm");
    // The owner's drop still removes the members set (and its lock's), and logs the segment
    // as already gone.
    drop(cortex);
    made.assert_gone();
}

/// Sixteen processes asleep waiting; one write wakes every one of them, and each reads the
/// new value.
fn one_write_wakes_sixteen_waiters<L: CortexSync>(name: &str) {
    let key = unique_key(name);
    let cortex: Counter<L> = Cortex::new(key, 1, None).unwrap();
    let before = cortex.version();
    let ready = Pipe::new();
    let reports: Vec<Pipe> = (0..16).map(|_| Pipe::new()).collect();
    let children: Vec<Child> = reports
        .iter()
        .map(|report| waiter::<L>(key, Duration::MAX, &ready, report))
        .collect();
    for child in &children {
        ready.recv();
        wait_until_watching(child.pid());
    }
    let wrote_at = now_ns();
    cortex.write(16).unwrap();
    let mut lateness = vec![];
    for (child, report) in children.into_iter().zip(&reports) {
        child.expect_success("woken by the one write");
        let (version, value, at) = (report.recv_u64(), report.recv_u64(), report.recv_u64());
        assert_eq!((version, value), (before + 1, 16));
        lateness.push(Duration::from_nanos(at.saturating_sub(wrote_at)));
    }
    assert!(
        lateness.iter().all(|&late| late < WAKE_LATENCY),
        "every waiter is woken by the write, not by its own poll: {lateness:?}"
    );
    finish(cortex);
}

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

extern "C" fn on_usr1(_: libc::c_int) {}

/// Installs a SIGUSR1 handler, with or without `SA_RESTART`.
fn install_usr1_handler(restart: bool) -> bool {
    // SAFETY: a zeroed sigaction is a valid starting point; handler and flags set below.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = on_usr1 as *const () as usize;
    action.sa_flags = if restart { libc::SA_RESTART } else { 0 };
    // SAFETY: installs an async-signal-safe handler (it does nothing) for SIGUSR1.
    unsafe { libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()) == 0 }
}

/// Signals during a wait (a handler with or without `SA_RESTART`, and SIGSTOP/SIGCONT):
/// a timed wait still lasts its whole timeout, an endless one goes on, and a write made
/// while the waiter is stopped is seen when it continues.
fn signals_neither_end_a_wait_early_nor_lose_a_wake<L: CortexSync>(name: &str, restart: bool) {
    let key = unique_key(name);
    let cortex: Counter<L> = Cortex::new(key, 0, None).unwrap();
    let since = cortex.version();
    let step = Pipe::new();
    let child = fork(|| {
        if !install_usr1_handler(restart) {
            return 2;
        }
        let Ok(c) = Counter::<L>::attach(key) else {
            return 3;
        };
        step.send(1);
        let timeout = Duration::from_millis(600);
        let started = Instant::now();
        match c.wait_for_change(since, timeout) {
            Err(e) if e.kind() == ErrorKind::Timeout && started.elapsed() >= timeout => {}
            Err(e) if e.kind() == ErrorKind::Timeout => return 4, // early
            _ => return 5,
        }
        step.send(2);
        match c.wait_for_change(since, Duration::MAX) {
            Ok(v) if v == since + 1 && c.read().ok() == Some(1) => {}
            _ => return 6,
        }
        step.send(3);
        match c.wait_for_change(since + 1, Duration::MAX) {
            Ok(v) if v == since + 2 && c.read().ok() == Some(2) => 0,
            _ => 7,
        }
    });
    assert_eq!(step.recv(), 1);
    // The timed wait: signals all along, and a stop in the middle.
    wait_until_watching(child.pid());
    for round in 0..5 {
        std::thread::sleep(Duration::from_millis(40));
        child.signal(libc::SIGUSR1);
        if round == 2 {
            child.signal(libc::SIGSTOP);
            common::wait_until_stopped(child.pid());
            child.signal(libc::SIGCONT);
        }
    }
    assert_eq!(step.recv(), 2, "the timed wait timed out, not early");
    // The endless wait: signals and a stop, then it still waits.
    wait_until_watching(child.pid());
    for _ in 0..3 {
        child.signal(libc::SIGUSR1);
        child.signal(libc::SIGSTOP);
        common::wait_until_stopped(child.pid());
        child.signal(libc::SIGCONT);
        wait_until_watching(child.pid());
    }
    assert_eq!(
        step.recv_timeout(Duration::from_millis(100)),
        None,
        "still waiting"
    );
    // A write while it is stopped: seen when it continues.
    child.signal(libc::SIGSTOP);
    common::wait_until_stopped(child.pid());
    cortex.write(1).unwrap();
    child.signal(libc::SIGCONT);
    assert_eq!(step.recv(), 3, "the write made while stopped was seen");
    // A write right after a signal: not lost either.
    wait_until_watching(child.pid());
    child.signal(libc::SIGUSR1);
    cortex.write(2).unwrap();
    assert_eq!(child.wait(), Exit::Code(0), "4: early, 5/6/7: wrong result");
    finish(cortex);
}

/// `Watcher::next_value` in another process, against a writer that stores in the value the
/// version its write makes: in lock-step every change is seen exactly once; in a burst,
/// changes may merge, but every value read matches the version reported, versions only
/// grow, and the last one is seen.
fn next_value_reports_the_version_of_its_value<L: CortexSync>(name: &str) {
    const STEPS: u64 = 20;
    const BURST: u64 = 500;
    let key = unique_key(name);
    let cortex: Counter<L> = Cortex::new(key, 0, None).unwrap();
    // The value is the version its write makes (the version moves by one per write).
    cortex.write(cortex.version() + 1).unwrap();
    let (ready, ack) = (Pipe::new(), Pipe::new());
    let child = fork(|| {
        let Ok(c) = Counter::<L>::attach(key) else {
            return 2;
        };
        let mut watcher = c.watch();
        let mut last = watcher.seen();
        ready.send(1);
        for _ in 0..STEPS {
            let Ok(value) = watcher.next_value(Duration::from_secs(10)) else {
                return 3;
            };
            if value != watcher.seen() || value != last + 1 {
                return 4;
            }
            last = value;
            ack.send(1);
        }
        let end = last + BURST;
        while last < end {
            let Ok(value) = watcher.next_value(Duration::from_secs(10)) else {
                return 5;
            };
            if value != watcher.seen() || value <= last {
                return 6;
            }
            last = value;
        }
        if watcher.has_changed() {
            return 7;
        }
        0
    });
    ready.recv();
    for _ in 0..STEPS {
        cortex.update(|v| *v += 1).unwrap();
        assert_eq!(cortex.read().unwrap(), cortex.version());
        ack.recv();
    }
    for _ in 0..BURST {
        cortex.update(|v| *v += 1).unwrap();
    }
    assert_eq!(
        child.wait(),
        Exit::Code(0),
        "3/5: no change seen, 4/6: wrong version"
    );
    assert_eq!(cortex.read().unwrap(), cortex.version());
    finish(cortex);
}

macro_rules! watch_suite {
    ($module:ident, $lock:ty) => {
        mod $module {
            use super::*;

            fn name(test: &str) -> String {
                format!("watch_{}_{test}", stringify!($module))
            }

            #[test]
            fn a_waiter_wakes_on_a_write_and_reads_it() {
                let _guard = common::watchdog();
                super::a_waiter_wakes_on_a_write_and_reads_it::<$lock>(&name("wakes"));
            }

            #[test]
            fn a_stale_since_returns_at_once() {
                let _guard = common::watchdog();
                super::a_stale_since_returns_at_once::<$lock>(&name("stale"));
            }

            #[test]
            fn a_timeout_is_timeout_and_never_early() {
                let _guard = common::watchdog();
                super::a_timeout_is_timeout_and_never_early::<$lock>(&name("timeout"));
            }

            #[test]
            fn removal_by_the_owner_wakes_waiters_and_their_next_access_is_lock_removed() {
                let _guard = common::watchdog();
                super::removal_by_the_owner_wakes_waiters::<$lock>(&name("removed"), false);
            }

            #[test]
            #[ignore = "BUG: wait_for_change returns Ok(new version), not LockRemoved, when the owner removes the segment"]
            fn removal_by_the_owner_wakes_waiters_with_lock_removed() {
                let _guard = common::watchdog();
                super::removal_by_the_owner_wakes_waiters::<$lock>(&name("removed_strict"), true);
            }

            #[test]
            fn ipcrm_wakes_waiters_with_lock_removed_within_a_second() {
                let _guard = common::watchdog();
                super::ipcrm_wakes_waiters_with_lock_removed_within_a_second::<$lock>(&name(
                    "ipcrm",
                ));
            }

            #[test]
            fn one_write_wakes_sixteen_waiters() {
                let _guard = common::watchdog();
                super::one_write_wakes_sixteen_waiters::<$lock>(&name("sixteen"));
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

            #[test]
            fn signals_with_sa_restart_neither_end_a_wait_early_nor_lose_a_wake() {
                let _guard = common::watchdog();
                super::signals_neither_end_a_wait_early_nor_lose_a_wake::<$lock>(
                    &name("sa_restart"),
                    true,
                );
            }

            #[test]
            fn signals_without_sa_restart_neither_end_a_wait_early_nor_lose_a_wake() {
                let _guard = common::watchdog();
                super::signals_neither_end_a_wait_early_nor_lose_a_wake::<$lock>(
                    &name("no_restart"),
                    false,
                );
            }

            #[test]
            fn next_value_reports_the_version_of_its_value() {
                let _guard = common::watchdog();
                super::next_value_reports_the_version_of_its_value::<$lock>(&name("next"));
            }
        }
    };
}

watch_suite!(semaphore, Semaphore);
watch_suite!(sysv_semaphore, SysvSemaphore);
watch_suite!(rw_semaphore, RwSemaphore);
watch_suite!(seqlock, SeqLock);

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

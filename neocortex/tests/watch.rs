//! Waiting for a change (issue 10), across processes, for every built-in lock: a write
//! wakes waiters in other processes and they read the new value; a stale `since` returns
//! at once; timeouts are `Timeout` and never early; `Duration::MAX` waits; removal by the
//! owner or by `ipcrm` wakes waiters with `LockRemoved`; one write wakes sixteen waiters;
//! signals neither lose a wake nor end a wait early; `Watcher::next_value` reports the
//! version its value belongs to. What watching costs others is in `watch_costs.rs`.
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

use common::watching::{finish, now_ns, wait_until_watching, waiter, Counter, WAKE_LATENCY};
use common::{fork, unique_key, Child, Exit, Made, Pipe};
use neocortex::{Cortex, CortexSync, ErrorKind, RwSemaphore, Semaphore, SeqLock, SysvSemaphore};

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

//! Waits survive signals: an interrupted wait is retried with the time that is left, and the
//! timeouts zero, 200 ms and `Duration::MAX` mean what they say.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: an unexpected error fails the test with its message"
)]

mod common;

use std::time::{Duration, Instant};

use common::{fork, unique_key, Made, Pipe};
use neocortex::{Cortex, ErrorKind, Semaphore};

extern "C" fn on_usr1(_: libc::c_int) {}

/// Installs a SIGUSR1 handler, with or without `SA_RESTART`.
fn install_handler(restart: bool) -> bool {
    // SAFETY: a zeroed sigaction is a valid starting point; we set the handler and flags.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = on_usr1 as *const () as usize;
    action.sa_flags = if restart { libc::SA_RESTART } else { 0 };
    // SAFETY: installs an async-signal-safe handler (it does nothing) for SIGUSR1.
    unsafe { libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()) == 0 }
}

fn interrupted_wait_keeps_its_deadline(name: &str, restart: bool) {
    let key = unique_key(name);
    let cortex: Cortex<u64, Semaphore> = Cortex::new(key, 0, None).unwrap();
    let guard = cortex.lock().unwrap();
    let waiting = Pipe::new();
    let child = fork(|| {
        if !install_handler(restart) {
            return 2;
        }
        let Ok(c) = Cortex::<u64, Semaphore>::attach(key) else {
            return 3;
        };
        waiting.send(1);
        let timeout = Duration::from_millis(600);
        let start = Instant::now();
        let result = c.lock_timeout(timeout).map(drop);
        let waited = start.elapsed();
        match result {
            Err(e) if e.kind() == ErrorKind::Timeout && waited >= timeout => {}
            Err(_) => return 4,
            Ok(()) => return 5,
        }
        waiting.send(2);
        // Forever, through more signals, until the parent lets go.
        match c.lock_timeout(Duration::MAX) {
            Ok(mut g) => *g = 7,
            Err(_) => return 6,
        }
        0
    });
    waiting.recv();
    common::wait_until_waiting_for_lock(child.pid());
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(60));
        child.signal(libc::SIGUSR1);
    }
    assert_eq!(waiting.recv(), 2, "the first wait timed out, not early");
    common::wait_until_waiting_for_lock(child.pid());
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(30));
        child.signal(libc::SIGUSR1);
    }
    // Still waiting after the signals: they were retried, not taken for a failure.
    common::wait_until_waiting_for_lock(child.pid());
    drop(guard);
    child.expect_success("waits through signals");
    assert_eq!(cortex.read().unwrap(), 7);
    let made = Made::of(&cortex);
    drop(cortex);
    made.assert_gone();
}

#[test]
fn a_signal_with_sa_restart_does_not_cut_a_wait_short() {
    let _guard = common::watchdog();
    interrupted_wait_keeps_its_deadline("signal_with_sa_restart", true);
}

#[test]
fn a_signal_without_sa_restart_does_not_cut_a_wait_short() {
    let _guard = common::watchdog();
    interrupted_wait_keeps_its_deadline("signal_without_sa_restart", false);
}

#[test]
fn zero_and_short_timeouts_on_a_free_lock_succeed() {
    let _guard = common::watchdog();
    let key = unique_key("zero_and_short_timeouts");
    let cortex: Cortex<u64, Semaphore> = Cortex::new(key, 0, None).unwrap();
    for timeout in [Duration::ZERO, Duration::from_millis(200), Duration::MAX] {
        // A zero timeout on a free lock still gets its one attempt.
        let guard = cortex.lock_timeout(timeout);
        assert!(guard.is_ok(), "{timeout:?}: {:?}", guard.err());
        drop(guard);
        let guard = cortex.lock_shared_timeout(timeout);
        assert!(guard.is_ok(), "shared, {timeout:?}: {:?}", guard.err());
    }
    let made = Made::of(&cortex);
    drop(cortex);
    made.assert_gone();
}

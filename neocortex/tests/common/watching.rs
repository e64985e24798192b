//! Helpers for the tests of waiting for a change (`watch.rs`, `watch_costs.rs`): a waiter
//! process that reports when and what it woke to, and a clock every process shares.

use std::time::Duration;

use neocortex::{Cortex, CortexSync, ErrorKind};

use super::{fork, Child, Made, Pipe};

pub type Counter<L> = Cortex<u64, L>;

/// How late a woken waiter may return after the write that woke it: far above a futex
/// wake-up on a loaded machine, below the 200 ms poll that would otherwise find the change.
pub const WAKE_LATENCY: Duration = Duration::from_millis(150);

/// `CLOCK_MONOTONIC` in nanoseconds: the same clock in every process of the machine.
pub fn now_ns() -> u64 {
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
pub fn wait_until_watching(pid: libc::pid_t) {
    super::wait_until_asleep_in(pid, &[libc::SYS_futex], "asleep waiting for a change");
}

/// Drops the owner's handle and checks that everything it made is gone.
pub fn finish<T: ?Sized + neocortex::Value, L: CortexSync>(cortex: Cortex<T, L>) {
    let made = Made::of(&cortex);
    drop(cortex);
    made.assert_gone();
}

/// A child that attaches, says it is ready, waits for a change from the version it saw
/// (with `timeout`), and reports on `report`: the version, the value read after it, and
/// when it returned (`now_ns`). Exit code 0 when woken by a change and the read worked;
/// [`kind_code`] of the wait's error; 10 more than that when the wait returned a version
/// but the read after it failed.
pub fn waiter<L: CortexSync>(key: i32, timeout: Duration, ready: &Pipe, report: &Pipe) -> Child {
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
pub fn kind_code(kind: ErrorKind) -> i32 {
    match kind {
        ErrorKind::Timeout => 10,
        ErrorKind::LockRemoved => 11,
        ErrorKind::LimitReached => 12,
        _ => 13,
    }
}

//! The Linux `futex(2)` wait and wake calls on a word in shared memory.

use std::sync::atomic::AtomicU32;
use std::time::Duration;

use crate::errno::{check, SysResult};
use crate::sem::timespec_from;

/// `FUTEX_WAIT` (shared, not private): sleeps while `*word == expected`, up to `timeout`.
///
/// Returns on a wake-up, a value change, a signal (`EINTR`) or the timeout (`ETIMEDOUT`).
///
/// # Errors
///
/// `EAGAIN` (the word was not `expected`), `EINTR`, `ETIMEDOUT`.
pub fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> SysResult<()> {
    let ts = timeout.and_then(timespec_from);
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a live, aligned 32-bit atomic; `ts_ptr` is null or points to `ts`,
    // which outlives the call. FUTEX_WAIT only reads the word.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            ts_ptr,
        )
    };
    check(ret as libc::c_int, "futex(FUTEX_WAIT)").map(drop)
}

/// `FUTEX_WAKE` (shared): wakes up to `count` waiters on `word`; returns how many woke.
///
/// # Errors
///
/// `EINVAL` only for a misaligned word, which `AtomicU32` rules out.
pub fn wake(word: &AtomicU32, count: u32) -> SysResult<u32> {
    let count = libc::c_int::try_from(count).unwrap_or(libc::c_int::MAX);
    // SAFETY: `word` is a live, aligned 32-bit atomic; FUTEX_WAKE does not access memory.
    let ret = unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, count) };
    check(ret as libc::c_int, "futex(FUTEX_WAKE)").map(|n| n as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Errno;

    #[test]
    fn wait_on_changed_value_and_timeout() {
        let word = AtomicU32::new(1);
        assert_eq!(wait(&word, 0, None).unwrap_err().errno, Errno::EAGAIN);
        let err = wait(&word, 1, Some(Duration::from_millis(10))).unwrap_err();
        assert_eq!(err.errno, Errno::ETIMEDOUT);
        assert_eq!(wake(&word, 1).unwrap(), 0);
    }
}

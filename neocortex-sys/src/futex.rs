//! The Linux `futex(2)` wait and wake calls on a word in shared memory.

use std::sync::atomic::{AtomicU32, AtomicU64};
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
    wait_at(word.as_ptr(), expected, timeout)
}

/// [`wait`] on the low 32 bits of a 64-bit counter: sleeps while they equal `expected`.
///
/// For counters that must not wrap in practice but are waited on with a futex, which is 32
/// bits wide. Only the kernel reads the half word; Rust code touches the counter only as a
/// whole `AtomicU64`.
///
/// # Errors
///
/// As [`wait`].
pub fn wait_low_half(word: &AtomicU64, expected: u32, timeout: Option<Duration>) -> SysResult<()> {
    wait_at(low_half(word), expected, timeout)
}

/// [`wake`] for sleepers of [`wait_low_half`] on `word`.
///
/// # Errors
///
/// As [`wake`].
pub fn wake_low_half(word: &AtomicU64, count: u32) -> SysResult<u32> {
    wake_at(low_half(word), count)
}

/// The address of the low 32 bits of `word`: its first half on little-endian machines.
fn low_half(word: &AtomicU64) -> *mut u32 {
    let offset = if cfg!(target_endian = "little") { 0 } else { 1 };
    // An AtomicU64 is 8-byte aligned, so each half is a 4-byte aligned u32 inside it.
    word.as_ptr().cast::<u32>().wrapping_add(offset)
}

fn wait_at(word: *mut u32, expected: u32, timeout: Option<Duration>) -> SysResult<()> {
    let ts = timeout.and_then(timespec_from);
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` points into a live, aligned atomic of the caller's; `ts_ptr` is null or
    // points to `ts`, which outlives the call. FUTEX_WAIT only reads the word.
    let ret = unsafe { libc::syscall(libc::SYS_futex, word, libc::FUTEX_WAIT, expected, ts_ptr) };
    check(ret as libc::c_int, "futex(FUTEX_WAIT)").map(drop)
}

/// `FUTEX_WAKE` (shared): wakes up to `count` waiters on `word`; returns how many woke.
///
/// # Errors
///
/// `EINVAL` only for a misaligned word, which `AtomicU32` rules out.
pub fn wake(word: &AtomicU32, count: u32) -> SysResult<u32> {
    wake_at(word.as_ptr(), count)
}

fn wake_at(word: *mut u32, count: u32) -> SysResult<u32> {
    let count = libc::c_int::try_from(count).unwrap_or(libc::c_int::MAX);
    // SAFETY: `word` points into a live, aligned atomic; FUTEX_WAKE does not access memory.
    let ret = unsafe { libc::syscall(libc::SYS_futex, word, libc::FUTEX_WAKE, count) };
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

    #[test]
    fn the_low_half_of_a_counter_is_waited_on() {
        let counter = AtomicU64::new(0x1_0000_0005);
        // The high half is not compared: 5 is what the kernel sees.
        let err = wait_low_half(&counter, 5, Some(Duration::from_millis(5))).unwrap_err();
        assert_eq!(err.errno, Errno::ETIMEDOUT);
        let err = wait_low_half(&counter, 6, None).unwrap_err();
        assert_eq!(err.errno, Errno::EAGAIN);
        assert_eq!(wake_low_half(&counter, u32::MAX).unwrap(), 0);
        std::thread::scope(|s| {
            let sleeper = s.spawn(|| wait_low_half(&counter, 5, Some(Duration::from_secs(10))));
            // Woken by a change and a wake, not by the timeout.
            while !sleeper.is_finished() {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                wake_low_half(&counter, u32::MAX).unwrap();
                std::thread::sleep(Duration::from_millis(1));
            }
            let woke = sleeper.join().unwrap();
            assert!(woke.is_ok() || woke.unwrap_err().errno == Errno::EAGAIN);
        });
    }
}

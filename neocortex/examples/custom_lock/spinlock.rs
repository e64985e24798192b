//! A spinlock written against `neocortex-core` alone: how a third-party crate adds a lock.
//!
//! The whole lock is one word in the segment: 0 when free, else the holder's pid. A waiter
//! spins (yielding), and takes the lock over when the holder's process no longer exists,
//! so a holder that dies never blocks the others; `Cortex` reports the death to the next
//! guard through its own holder word.
//!
//! Limits of this example (a production lock would fix them): a waiter burns CPU, and a pid
//! reused by a new process before anyone notices the death keeps the lock taken until that
//! process exits (see neocortex's `Mutex`, which compares start times).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use neocortex_core::{CortexResult, CortexSync, Key, Permission, Remaining, Wait};

neocortex_core::shm_safe! {
    /// The spinlock's state in the segment.
    #[derive(Debug)]
    pub struct SpinState {
        /// 0 when free, else the holder's pid.
        word: AtomicU32,
    }
}

/// Settings: only the segment's permission (the lock has no kernel object).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SpinSettings {
    /// Who may use the segment.
    pub(crate) mode: Permission,
}

/// A cross-process spinlock that survives a holder's death.
#[derive(Debug)]
pub(crate) struct SpinLock;

fn my_pid() -> u32 {
    std::process::id()
}

fn process_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists; it sends nothing.
    let ret = unsafe { libc::kill(pid, 0) };
    ret == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

impl SpinLock {
    /// One attempt: take a free lock, or a dead holder's.
    fn try_take(state: &SpinState) -> bool {
        let me = my_pid();
        match state
            .word
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
        {
            Ok(_) => true,
            Err(holder) if holder != me && !process_exists(holder) => state
                .word
                .compare_exchange(holder, me, Ordering::Acquire, Ordering::Relaxed)
                .is_ok(),
            Err(_) => false,
        }
    }
}

// SAFETY: 1. exclusion: the word goes from 0 (or a dead pid) to the holder's pid by CAS, so
// one holder at a time in every process mapping the segment; 2. Acquire on every successful
// CAS, Release on the unlocking store; 3. the only state is the word in the segment, and a
// zero word is a free lock; 4. a dead holder's pid is replaced by a waiter's CAS, so death
// never blocks; 5. Wait::Never makes one attempt, a deadline is checked on every spin, and
// there is no kernel object to be removed.
unsafe impl CortexSync for SpinLock {
    type Settings = SpinSettings;
    type State = SpinState;
    const KIND: &'static str = "example-spinlock";
    const PID_BASED: bool = true;

    fn permission(settings: &SpinSettings) -> Permission {
        settings.mode
    }

    fn create(_: Key, _: &SpinState, _: &SpinSettings) -> CortexResult<Self> {
        Ok(SpinLock)
    }

    fn attach(_: Key, _: &SpinState) -> CortexResult<Self> {
        Ok(SpinLock)
    }

    fn lock(&self, key: Key, state: &SpinState, wait: Wait) -> CortexResult<()> {
        let start = Instant::now();
        loop {
            if Self::try_take(state) {
                return Ok(());
            }
            match wait.remaining() {
                Remaining::NoWait | Remaining::Expired => return Err(wait.gave_up(key)),
                Remaining::For(_) | Remaining::Forever => {}
            }
            if start.elapsed().as_micros() < 50 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }

    unsafe fn unlock(&self, _: Key, state: &SpinState) -> CortexResult<()> {
        state.word.store(0, Ordering::Release);
        Ok(())
    }

    fn destroy(_: Key, _: &SpinState) -> CortexResult<()> {
        Ok(())
    }
}

//! A spinlock written against `neocortex-core` alone: how a third-party crate adds a lock.
//!
//! The whole lock is one word in the segment: 0 when free, else the holder's member token
//! (from [`LockContext::token`]). A waiter spins (yielding), and every millisecond asks the
//! kernel whether the holder's token is alive ([`LockContext::is_alive`]); when it is not,
//! it takes the lock over inside [`LockContext::with_reaper`], which makes the takeover
//! race-free, and reports it ([`Acquired::FromDeadHolder`]) so that the next guard says
//! `owner_died()`.
//!
//! Limits of this example (a production lock would fix them): a waiter burns CPU instead of
//! sleeping on a futex, and it notices a dead holder only every millisecond.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use neocortex_core::{
    Acquired, CortexError, CortexResult, CortexSync, InPlace, LockContext, Permission, Remaining,
    Token, Wait,
};

neocortex_core::shm_safe! {
    /// The spinlock's state in the segment.
    #[derive(Debug)]
    pub struct SpinState {
        /// 0 when free, else the holder's member token.
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

/// How often a waiter asks whether the holder lives.
const CHECK_EVERY: Duration = Duration::from_millis(1);

impl SpinLock {
    /// Whether the holder named in `word` is dead (a word naming nobody counts as dead:
    /// nobody will release it).
    fn dead(cx: &LockContext<'_>, word: u32) -> CortexResult<bool> {
        match Token::from_raw(word) {
            Some(token) => Ok(!cx.is_alive(token)?),
            None => Ok(true),
        }
    }

    /// Takes the lock over from the holder named in `seen` if the kernel says it is dead.
    fn take_over_if_dead(
        cx: &LockContext<'_>,
        state: &SpinState,
        seen: u32,
        me: u32,
    ) -> CortexResult<Option<Acquired>> {
        if !Self::dead(cx, seen)? {
            return Ok(None);
        }
        // Under the reaper lock nobody else takes over, and a dead holder does not release:
        // if the word still names the holder we saw and the kernel still says it is dead,
        // the word stays so until our CAS.
        let taken = cx.with_reaper(Wait::Never, || -> CortexResult<bool> {
            if state.word.load(Ordering::Acquire) != seen || !Self::dead(cx, seen)? {
                return Ok(false);
            }
            Ok(state
                .word
                .compare_exchange(seen, me, Ordering::Acquire, Ordering::Relaxed)
                .is_ok())
        })?;
        Ok(
            matches!(taken, Some(Ok(true))).then(|| Acquired::FromDeadHolder {
                pid: Token::from_raw(seen).and_then(|t| cx.pid_of(t)),
            }),
        )
    }
}

// SAFETY: 1. exclusion: the word goes from 0 to a token by CAS, so one holder at a time in
// every process mapping the segment; it goes from a holder's token to another only inside
// `with_reaper`, after the kernel said (again, inside) that the token still in the word is
// dead; while the reaper lock is held nobody else replaces a token and the dead do not
// release, so the word cannot change between that check and the CAS, and a live holder is
// never displaced (even if its token had been reissued);
// 2. Acquire on every successful CAS, Release on the unlocking CAS; 3. the only state is the
// word in the segment, and a zero word is a free lock; 4. a dead holder's token is replaced
// by a waiter within CHECK_EVERY, so death never blocks for long; 5. Wait::Never makes one
// attempt, a deadline is checked on every spin, and removal (`cx.is_removed`) ends every
// wait with LockRemoved; 6. FromDeadHolder is reported exactly after a takeover; 7. `holder`
// only loads the word and reads the member table (the operator's tool calls it on a
// read-only mapping).
unsafe impl CortexSync for SpinLock {
    type Settings = SpinSettings;
    type State = SpinState;
    type Access = InPlace;
    const KIND: &'static str = "example-spinlock";
    const DETECTS_DEAD_HOLDERS: bool = true;

    fn permission(settings: &SpinSettings) -> Permission {
        settings.mode
    }

    fn create(_: &LockContext<'_>, _: &SpinState, _: &SpinSettings) -> CortexResult<Self> {
        Ok(SpinLock)
    }

    fn attach(_: &LockContext<'_>, _: &SpinState) -> CortexResult<Self> {
        Ok(SpinLock)
    }

    fn lock(&self, cx: &LockContext<'_>, state: &SpinState, wait: Wait) -> CortexResult<Acquired> {
        let me = cx.token()?.raw();
        let start = Instant::now();
        let mut checked = start;
        let mut first = true;
        loop {
            if cx.is_removed() {
                return Err(CortexError::lock_removed(cx.key(), None));
            }
            match state
                .word
                .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return Ok(Acquired::Released),
                Err(seen) if first || checked.elapsed() >= CHECK_EVERY => {
                    first = false;
                    checked = Instant::now();
                    if let Some(acquired) = Self::take_over_if_dead(cx, state, seen, me)? {
                        return Ok(acquired);
                    }
                }
                Err(_) => {}
            }
            match wait.remaining() {
                Remaining::NoWait | Remaining::Expired => return Err(wait.gave_up(cx.key())),
                Remaining::For(_) | Remaining::Forever => {}
            }
            if start.elapsed().as_micros() < 50 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }

    unsafe fn unlock(&self, cx: &LockContext<'_>, state: &SpinState) -> CortexResult<()> {
        let me = cx.token()?.raw();
        // Only our own hold: never free a lock someone else holds.
        let _ = state
            .word
            .compare_exchange(me, 0, Ordering::Release, Ordering::Relaxed);
        Ok(())
    }

    /// Nothing to remove: waiters see `cx.is_removed()` and give up.
    fn destroy(_: &LockContext<'_>, _: &SpinState) -> CortexResult<()> {
        Ok(())
    }

    fn holder(cx: &LockContext<'_>, state: &SpinState) -> Option<i32> {
        let token = Token::from_raw(state.word.load(Ordering::Relaxed))?;
        Some(cx.pid_of(token).unwrap_or(-1))
    }
}

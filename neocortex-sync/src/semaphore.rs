//! [`Semaphore`] (also named [`Mutex`](crate::Mutex)): a futex word in the segment holding
//! the holder's member token. No system call when uncontended; a waiter takes the lock over
//! from a holder that died, as the kernel tells it.
//!
//! Linux only: it is built on `futex(2)`. On other systems `Semaphore` is the SysV lock
//! ([`SysvSemaphore`](crate::SysvSemaphore)).

use std::hint::spin_loop;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use neocortex_core::{
    Acquired, CortexError, CortexResult, CortexSync, InPlace, LockContext, OsError, Permission,
    Remaining, Token, Wait,
};
use neocortex_sys::{futex, Errno};

use crate::settings::SemaphoreSettings;

/// The holder's token in the lock word.
const TOKEN_MASK: u32 = (1 << Token::BITS) - 1;
/// Set in the lock word by `destroy`: the segment is being removed, nobody may lock.
const REMOVED: u32 = 1 << 30;
/// Set in the lock word while someone may be asleep on it: the releaser must wake one.
const WAITERS: u32 = 1 << 31;
/// How many times a contended acquire re-reads the word before it sleeps. Measured with
/// `compare` (two processes, 8 B and 4 KiB values): 20 beats 40 and 100, whose longer spins
/// catch every release and turn long critical sections into a hand-off per operation.
const SPIN_LIMIT: u32 = 20;
/// The longest a waiter sleeps before it asks again whether the holder is alive: a holder
/// that dies wakes nobody, so this bounds how long its death goes unnoticed.
const POLL: Duration = Duration::from_millis(2);

neocortex_core::shm_safe! {
    /// The [`Semaphore`]'s state in the segment: the lock word.
    ///
    /// All zero means free.
    #[derive(Debug)]
    pub struct SemaphoreState {
        /// 0 when free; else the holder's member token (bits 0–26), the removed mark (bit
        /// 30) and the waiters bit (bit 31).
        word: AtomicU32,
    }
}

/// A fast exclusive lock that survives its holder's death: a futex word inside the segment.
/// The recommended lock, and the seed crate's name for it; [`Mutex`](crate::Mutex) is the
/// same lock under another name. Linux only (elsewhere `Semaphore` is the SysV lock).
///
/// ```
/// use neocortex::{Cortex, Semaphore};
///
/// let key = neocortex::random_key()?;
/// let counter: Cortex<u64, Semaphore> = Cortex::new(key, 0, None)?;
/// *counter.lock()? += 1; // one compare-and-swap to lock, one to unlock: no system call
/// assert_eq!(counter.read()?, 1);
/// # Ok::<(), neocortex::CortexError>(())
/// ```
///
/// Taking a free lock is one compare-and-swap of the word from 0 to the caller's member
/// token, with no system call; releasing an uncontended lock is another. A contended
/// acquire spins briefly (20 re-reads of the word), then marks the word as having waiters
/// and sleeps in `FUTEX_WAIT` (a *shared* futex, keyed by the physical page, so it works
/// across processes); the releaser wakes one sleeper.
///
/// # The lock word
///
/// | bits | meaning |
/// |---|---|
/// | 0–26 | the holder's member token; all 0 when free |
/// | 30 | removed: the segment is being removed (every acquire fails with `LockRemoved`) |
/// | 31 | waiters: someone may be asleep, so a release must `FUTEX_WAKE` |
///
/// # When a holder dies
///
/// The holder is known by its member token, which the *kernel* takes back the instant its
/// process dies (a SysV semaphore held with `SEM_UNDO`, taken once per handle, not per
/// lock; see [`neocortex_core::Token`]). So liveness never trusts a pid: it works between
/// processes in different pid namespaces that share an IPC namespace (containers started
/// with a shared IPC namespace), cannot be fooled by a reused pid, and needs no `/proc`.
///
/// A holder that dies wakes nobody, so every sleeper wakes at least every 2 ms and asks the
/// kernel whether the holder's token is alive (a new waiter asks once before its first
/// sleep). When it is not, one waiter at a time (holding the segment's reaper semaphore, so
/// the decision and the takeover cannot race) replaces the dead holder's token with its own,
/// and its acquire reports [`Acquired::FromDeadHolder`]: the next guard says
/// [`owner_died`](neocortex_core::CortexGuard::owner_died). A [`Wait::Never`] acquire asks
/// once and takes over at once.
///
/// **Threads:** the token names a process (well, a handle in a process), not a thread. A
/// thread that ends without releasing the lock (`pthread_exit`) while its process lives
/// keeps the lock held. A Rust panic unwinds and its guard releases the lock. A holder that
/// `exec`s keeps the lock until the new program exits (the kernel keeps its `SEM_UNDO`
/// record across `exec`).
///
/// # Memory ordering
///
/// Taking the lock (also by takeover) is an `Acquire` read-modify-write of the word and
/// releasing it is a `Release` one; every change of the word is a read-modify-write, so each
/// acquire synchronises-with the previous release and sees everything written under the lock.
///
/// # Not reentrant
///
/// A thread that asks again for a lock it holds waits for itself until its timeout (or
/// forever).
#[derive(Debug)]
pub struct Semaphore {
    _private: (),
}

/// The token of the holder named in `word`, if the word names one.
fn holder(word: u32) -> Option<Token> {
    Token::from_raw(word & TOKEN_MASK)
}

fn removed(cx: &LockContext<'_>) -> CortexError {
    CortexError::lock_removed(cx.key(), None)
}

fn futex_error(cx: &LockContext<'_>, op: &'static str, e: neocortex_sys::SysError) -> CortexError {
    CortexError::clean(op, cx.key(), OsError::new(e.call, e.errno.raw()))
}

impl Semaphore {
    /// The holder named in `seen` is dead (or the word names nobody): take the lock over
    /// from it, under the reaper lock. `Ok(Some(..))`: taken; `Ok(None)`: the word changed
    /// (look again), or another reaper was busy past the wait.
    fn take_over(
        cx: &LockContext<'_>,
        state: &SemaphoreState,
        wait: Wait,
        seen: u32,
        new: u32,
    ) -> CortexResult<Option<Acquired>> {
        let taken = cx.with_reaper(wait, || -> CortexResult<Option<Option<Token>>> {
            // While the reaper lock is held, a word naming a dead holder changes only by our
            // own hand (nobody else takes over, the dead do not release, the fast path needs
            // 0) or by a waiter setting the waiters bit. So once the word still names the
            // holder we saw and the kernel still says it is dead, it stays so until our CAS.
            let now = state.word.load(Ordering::Acquire);
            if now & REMOVED != 0
                || now & TOKEN_MASK != seen & TOKEN_MASK
                || Self::holder_alive(cx, now)?
            {
                return Ok(None);
            }
            // A waiter setting the waiters bit or a removal may still change the word: then
            // the CAS fails and the caller looks again (a rare retry; one CAS keeps it simple).
            Ok(state
                .word
                .compare_exchange(
                    now,
                    new | (now & WAITERS),
                    Ordering::Acquire,
                    Ordering::Relaxed,
                )
                .ok()
                .map(|_| holder(seen)))
        })?;
        let taken = match taken {
            Some(result) => result?,
            None => None,
        };
        Ok(match taken {
            Some(dead) => {
                let pid = dead.and_then(|t| cx.pid_of(t));
                tracing::warn!(
                    key = cx.key(),
                    dead_pid = pid.unwrap_or(-1),
                    "took the lock over from a holder that died"
                );
                Some(Acquired::FromDeadHolder { pid })
            }
            _ => None,
        })
    }

    /// Whether the holder named in `seen` is alive, as the kernel says.
    fn holder_alive(cx: &LockContext<'_>, seen: u32) -> CortexResult<bool> {
        match holder(seen) {
            Some(token) => cx.is_alive(token),
            // A held word that names nobody (damaged): nobody will ever release it.
            None => Ok(false),
        }
    }

    /// The contended part of [`lock`](CortexSync::lock): `seen` is the word the fast path
    /// found.
    #[cold]
    #[inline(never)]
    fn lock_contended(
        cx: &LockContext<'_>,
        state: &SemaphoreState,
        wait: Wait,
        me: u32,
        mut seen: u32,
    ) -> CortexResult<Acquired> {
        let mut spins = 0;
        // WAITERS once this caller has slept: it cannot know whether others still sleep, so
        // it takes the lock with the bit set, and its release wakes the next one.
        let mut waiters = 0;
        // Ask about the holder before the first sleep and after every sleep that ran out.
        let mut check_holder = true;
        loop {
            if seen & REMOVED != 0 {
                return Err(removed(cx));
            }
            if seen == 0 {
                match state.word.compare_exchange(
                    0,
                    me | waiters,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return Ok(Acquired::Released),
                    Err(actual) => {
                        seen = actual;
                        continue;
                    }
                }
            }
            let blocking = matches!(wait.remaining(), Remaining::For(_) | Remaining::Forever);
            if blocking && spins < SPIN_LIMIT {
                spins += 1;
                spin_loop();
                seen = state.word.load(Ordering::Acquire);
                continue;
            }
            if check_holder {
                check_holder = false;
                if !Self::holder_alive(cx, seen)? {
                    if let Some(acquired) = Self::take_over(cx, state, wait, seen, me | waiters)? {
                        return Ok(acquired);
                    }
                    // The word changed, or another reaper was busy: look again (a caller
                    // that does not wait gets one more look at a freed word, no more).
                    seen = state.word.load(Ordering::Acquire);
                    check_holder = blocking;
                    continue;
                }
            }
            let timeout = match wait.remaining() {
                Remaining::For(left) => left.min(POLL),
                Remaining::Forever => POLL,
                Remaining::NoWait | Remaining::Expired => return Err(wait.gave_up(cx.key())),
            };
            let asleep = seen | WAITERS;
            if seen & WAITERS == 0 {
                if let Err(actual) =
                    state
                        .word
                        .compare_exchange(seen, asleep, Ordering::Relaxed, Ordering::Relaxed)
                {
                    seen = actual;
                    continue;
                }
            }
            waiters = WAITERS;
            match futex::wait(&state.word, asleep, Some(timeout)) {
                // Woken, or the word changed before we slept: look again.
                Ok(()) => {}
                Err(e) if e.errno == Errno::EAGAIN || e.errno == Errno::EINTR => {}
                // A whole poll went by: ask about the holder again.
                Err(e) if e.errno == Errno::ETIMEDOUT => check_holder = true,
                Err(e) => return Err(futex_error(cx, "lock", e)),
            }
            if cx.is_removed() {
                return Err(removed(cx));
            }
            seen = state.word.load(Ordering::Acquire);
        }
    }
}

// SAFETY: the contract, point by point:
// 1. Exclusion: the word goes from 0 to a token only by a CAS, so one holder at a time in
//    every process mapping the segment; it is taken over only under the reaper lock, after
//    checking there that the word still names the holder seen and that the kernel says that
//    token is dead; within the reaper lock such a word cannot change but by the reaper's
//    CAS (nobody else takes over, the dead do not release, the fast path needs 0), so a live
//    holder is never displaced, even one whose token was reissued after 32767 claims.
//    A live token never reads as dead: its slot holds its tag until its handle is dropped,
//    which cannot happen while a guard borrows the handle.
// 2. Ordering: Acquire on every CAS that takes the lock (also by takeover), Release on the
//    CAS that frees it; every change of the word is a read-modify-write.
// 3. State: the word is the only state; a zero word is a free lock.
// 4. Holder death: a dead holder's token is dead in the kernel at once; waiters ask about
//    it before sleeping and every POLL while sleeping, and take over.
// 5. Waits: Never and an expired deadline make one attempt (and one takeover attempt) and
//    never sleep; deadlines bound every sleep; EINTR/EAGAIN loop with the time left; the
//    removed mark (set by `destroy`, which wakes everyone) gives LockRemoved.
// 6. Reports: FromDeadHolder exactly after a takeover.
unsafe impl CortexSync for Semaphore {
    type Settings = SemaphoreSettings;
    type State = SemaphoreState;
    type Access = InPlace;
    const KIND: &'static str = "semaphore";
    const DETECTS_DEAD_HOLDERS: bool = true;

    fn permission(settings: &SemaphoreSettings) -> Permission {
        settings.mode
    }

    fn create(
        _cx: &LockContext<'_>,
        _state: &SemaphoreState,
        _settings: &SemaphoreSettings,
    ) -> CortexResult<Self> {
        Ok(Self { _private: () })
    }

    fn attach(_cx: &LockContext<'_>, _state: &SemaphoreState) -> CortexResult<Self> {
        Ok(Self { _private: () })
    }

    #[inline]
    fn lock(
        &self,
        cx: &LockContext<'_>,
        state: &SemaphoreState,
        wait: Wait,
    ) -> CortexResult<Acquired> {
        let me = cx.token()?.raw();
        match state
            .word
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
        {
            Ok(_) => Ok(Acquired::Released),
            Err(seen) => Self::lock_contended(cx, state, wait, me, seen),
        }
    }

    #[inline]
    unsafe fn unlock(&self, cx: &LockContext<'_>, state: &SemaphoreState) -> CortexResult<()> {
        // The caller holds the lock (the contract of `unlock`), so the word names its token:
        // one read-modify-write frees it, keeping only the removed mark, and says whether
        // anyone may be asleep. No token lookup, no load before it.
        let previous = state.word.fetch_and(REMOVED, Ordering::Release);
        debug_assert!(
            cx.token().is_ok_and(|t| previous & TOKEN_MASK == t.raw()),
            "released a lock this handle did not hold: {previous:#x}"
        );
        if previous & WAITERS != 0 {
            futex::wake(&state.word, 1).map_err(|e| futex_error(cx, "unlock", e))?;
        }
        Ok(())
    }

    // Shared access is exclusive access (SHARED is false), spelled out so that it inlines
    // into `read()` like `lock` does.
    #[inline]
    fn lock_shared(
        &self,
        cx: &LockContext<'_>,
        state: &SemaphoreState,
        wait: Wait,
    ) -> CortexResult<Acquired> {
        self.lock(cx, state, wait)
    }

    #[inline]
    unsafe fn unlock_shared(
        &self,
        cx: &LockContext<'_>,
        state: &SemaphoreState,
    ) -> CortexResult<()> {
        // SAFETY: forwarded; a shared hold of this lock is an exclusive one.
        unsafe { self.unlock(cx, state) }
    }

    /// Marks the word removed and wakes every sleeper (who then fails with `LockRemoved`).
    fn destroy(cx: &LockContext<'_>, state: &SemaphoreState) -> CortexResult<()> {
        // A waiter sets the waiters bit (by a CAS from the word it saw) before it sleeps, so
        // without the bit nobody sleeps; a waiter whose CAS comes after this one fails it
        // and sees the removed mark.
        let previous = state.word.fetch_or(REMOVED, Ordering::SeqCst);
        if previous & WAITERS != 0 {
            futex::wake(&state.word, u32::MAX).map_err(|e| futex_error(cx, "remove lock", e))?;
        }
        Ok(())
    }

    fn holder(cx: &LockContext<'_>, state: &SemaphoreState) -> Option<i32> {
        let token = holder(state.word.load(Ordering::Relaxed))?;
        Some(cx.pid_of(token).unwrap_or(-1))
    }
}

#[cfg(test)]
mod tests;

//! [`Mutex`]: a futex word in the segment. No system call when uncontended; a waiter takes
//! the lock over from a holder that died.
//!
//! Linux only: it is built on `futex(2)`. On other systems this module, and so `Mutex`, does
//! not exist.

use std::hint::spin_loop;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use neocortex_core::process::{parse_start_ticks, ProcessIdentity};
use neocortex_core::{CortexError, CortexResult, CortexSync, Key, Permission, Remaining, Wait};
use neocortex_sys::process::{current_pid, pid_exists};
use neocortex_sys::{futex, Errno};

/// The holder's pid in the lock word (the kernel's `FUTEX_TID_MASK`). Linux pids are at most
/// 2^22 (`PID_MAX_LIMIT`), so every pid fits.
const PID_MASK: u32 = 0x3fff_ffff;
/// Set in the lock word while someone may be asleep on it: the releaser must wake one.
/// (Bit 30 is reserved and always 0.)
const WAITERS: u32 = 1 << 31;
/// How many times a contended acquire re-reads the word before it sleeps. Measured with
/// `compare` (two processes, 8 B and 4 KiB values): 20 beats 40 and 100, whose longer spins
/// catch every release and turn long critical sections into a hand-off per operation.
const SPIN_LIMIT: u32 = 20;
/// The longest a waiter sleeps before it checks again whether the holder is alive: a dead
/// holder never wakes anyone.
const POLL: Duration = Duration::from_millis(50);

/// Settings of a [`Mutex`]: the permission mode of the segment (a futex has no kernel object
/// of its own, so the mode governs the segment alone).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MutexSettings {
    /// Who may use the segment, and so the lock. Defaults to [`Permission::OwnerOnly`].
    pub mode: Permission,
}

neocortex_core::shm_safe! {
    /// The [`Mutex`]'s state in the segment: the lock word and the holder's identity.
    ///
    /// All zero means free.
    #[derive(Debug)]
    pub struct MutexState {
        /// 0 when free; else the holder's pid (bits 0–29) and the waiters bit (bit 31).
        word: AtomicU32,
        /// `(pid << 32) | (low 32 bits of the holder's start time in clock ticks)`, written
        /// by the holder right after it takes the lock and cleared before it releases it, so
        /// a waiter can tell a dead holder from a later process that got the same pid.
        owner_ident: AtomicU64,
    }
}

/// A fast exclusive lock: a futex word inside the segment. Linux only.
///
/// Taking a free lock is one compare-and-swap of the word from 0 to the caller's pid (plus one
/// store of its identity), with no system call; releasing an uncontended lock is one swap. A
/// contended acquire spins briefly (20 re-reads of the word), then marks the word as having
/// waiters and sleeps in `FUTEX_WAIT` (a *shared* futex, keyed by the physical page, so it
/// works across processes); the releaser wakes one sleeper.
///
/// # The lock word
///
/// | bits | meaning |
/// |---|---|
/// | 0–29 | the holder's pid; all 0 when free |
/// | 30 | reserved, 0 |
/// | 31 | waiters: someone may be asleep, so a release must `FUTEX_WAKE` |
///
/// Beside it, [`MutexState`] keeps the holder's identity, its pid and start time.
///
/// # When a holder dies
///
/// A holder that dies does not release the lock and wakes nobody, so every sleeper wakes at
/// least every 50 ms and checks the holder named in the word (a new waiter checks it once
/// before its first sleep). The holder is dead when no process has its pid, when that
/// process is a zombie (it exited and was not reaped yet), or when the process with that pid
/// started at another time than the recorded holder (its pid was reused). Then one waiter takes the lock over (it first claims the holder's
/// identity record, so two waiters never both take over, and the same recorded holder is
/// never taken over from twice) and its acquire succeeds; `Cortex` sees the dead holder in
/// its header and reports [`owner_died`](neocortex_core::CortexGuard::owner_died). A
/// [`Wait::Never`] acquire checks the holder once and takes over at once.
///
/// **Threads:** the word names a process, not a thread. A thread that ends without releasing
/// the lock (`pthread_exit`, a thread killed some other way) while its process lives keeps
/// the lock held: the pid is alive. Do not kill threads; a Rust panic unwinds and its guard
/// releases the lock.
///
/// **Limits of the liveness check:** every process using the segment must see the same pids
/// (one pid namespace), and `/proc` must be mounted to catch reused pids and zombies. A
/// holder that dies in the instant between taking the word and recording its start time is
/// recognised by its pid alone: should another process get that pid first, the holder looks
/// alive until that process ends (waits with a timeout still give up); should a process
/// that got that pid take the lock during the microseconds in which a waiter decides the
/// holder is dead, both would hold it. Both need the pid to be recycled within moments of
/// a death in a window of a few instructions.
///
/// # Memory ordering
///
/// Taking the lock (also by takeover) is an `Acquire` read-modify-write of the word and
/// releasing it is a `Release` swap; every change of the word is a read-modify-write, so each
/// acquire synchronises-with the previous release and sees everything written under the lock.
///
/// # Not reentrant
///
/// A thread that asks again for a lock it holds waits for itself until its timeout (or
/// forever).
#[derive(Debug)]
pub struct Mutex {
    _private: (),
}

/// This process's word value: its pid.
#[inline]
fn own_word() -> u32 {
    (current_pid() as u32) & PID_MASK
}

#[inline]
fn make_ident(pid: u32, start_ticks: u64) -> u64 {
    (u64::from(pid) << 32) | (start_ticks & 0xffff_ffff)
}

fn ident_pid(ident: u64) -> u32 {
    (ident >> 32) as u32
}

fn ident_ticks(ident: u64) -> u32 {
    ident as u32
}

/// This process's identity record (`/proc` is read once per process by
/// [`ProcessIdentity::current`], which caches it per pid, so a forked child reads its own).
#[inline]
fn own_ident(pid: u32) -> u64 {
    let me = ProcessIdentity::current();
    debug_assert_eq!(me.pid as u32 & PID_MASK, pid);
    make_ident(pid, me.start_ticks)
}

/// What `/proc/<pid>/stat` says about a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ProcStatus {
    /// Exited and not reaped yet: state `Z` or `X` with no other thread left. (A thread-group
    /// leader that exited while other threads run shows `Z` too, with more than one thread.)
    zombie: bool,
    /// Field 22: start time in clock ticks after boot.
    start_ticks: u64,
}

fn proc_status(pid: u32) -> Option<ProcStatus> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_status(&stat)
}

fn parse_status(stat: &str) -> Option<ProcStatus> {
    let start_ticks = parse_start_ticks(stat)?;
    // After the name (which may contain anything) come field 3 (state) onwards.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?;
    // Field 20, num_threads, is the 17th after the state.
    let threads: u64 = fields.nth(16)?.parse().ok()?;
    Some(ProcStatus {
        zombie: matches!(state, "Z" | "X" | "x") && threads <= 1,
        start_ticks,
    })
}

/// Whether the process `pid` is gone. `ticks` is the low 32 bits of its start time as
/// recorded, or 0 when not known: a process with that pid that started at another time is a
/// later process that reused the pid.
fn process_dead(pid: u32, ticks: u32) -> bool {
    if pid == own_word() {
        // This process is alive; only an earlier process with the same pid can be meant.
        let mine = ident_ticks(own_ident(pid));
        return ticks != 0 && mine != 0 && ticks != mine;
    }
    if !pid_exists(pid as i32) {
        return true;
    }
    match proc_status(pid) {
        Some(status) => status.zombie || (ticks != 0 && ticks != status.start_ticks as u32),
        // It exited meanwhile, or `/proc` is not there: trust the pid.
        None => !pid_exists(pid as i32),
    }
}

/// Whether the holder named in `word` is gone, so the lock may be taken over from it.
/// `ident` is the identity record, read after `word` was read with `Acquire`.
fn holder_is_dead(word: u32, ident: u64) -> bool {
    let pid = word & PID_MASK;
    if pid == 0 {
        // A held word that names nobody (written from outside): nobody will release it.
        return true;
    }
    if ident_pid(ident) == pid {
        return process_dead(pid, ident_ticks(ident));
    }
    if !process_dead(pid, 0) {
        return false;
    }
    // The word names a dead process, the record someone else. 0: the holder died before
    // writing its record (or released, and `word` is stale: the takeover's CAS then fails).
    // Another process: one that claimed the record to take over and died before it changed
    // the word (then it is dead too), or the current holder of a lock that changed hands
    // after `word` was read (alive: leave it).
    ident == 0 || process_dead(ident_pid(ident), ident_ticks(ident))
}

/// Takes the lock over from the dead holder of `seen`, whose identity record read `ident`.
/// `me` is the new word (pid, and the waiters bit if the caller has slept). Returns whether
/// the caller now holds the lock.
fn take_over(state: &MutexState, seen: u32, ident: u64, me: u32, mine: u64) -> bool {
    // Claim the takeover on the identity record first. It changes only when a holder takes
    // the lock, releases it, or is taken over from, so of the waiters that saw this dead
    // holder exactly one claims it, and a later holder that happens to get the same pid has
    // another start time, so it cannot be mistaken for the one that was claimed.
    if state
        .owner_ident
        .compare_exchange(ident, mine, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return false;
    }
    let mut current = seen;
    loop {
        let new = me | (current & WAITERS);
        match state
            .word
            .compare_exchange(current, new, Ordering::Acquire, Ordering::Acquire)
        {
            Ok(_) => return true,
            // Another waiter set the waiters bit: still the same dead holder.
            Err(actual) if actual != 0 && actual & PID_MASK == seen & PID_MASK => {
                current = actual;
            }
            Err(_) => {
                // Not the dead holder's any more: give the record back if it is still ours.
                let _ = state.owner_ident.compare_exchange(
                    mine,
                    ident,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
                return false;
            }
        }
    }
}

fn took_over(key: Key, seen: u32) {
    tracing::warn!(
        %key,
        dead_pid = seen & PID_MASK,
        "futex mutex: took the lock over from a holder that died"
    );
}

/// Releases this process's hold on `state`; returns how many sleepers it woke (0 or 1).
#[inline]
fn release(key: Key, state: &MutexState) -> CortexResult<u32> {
    let me = own_word();
    state.owner_ident.store(0, Ordering::Relaxed);
    // Release only our own hold: a word that names someone else (a waiter that wrongly took
    // over) is left alone rather than released under its holder. The first guess, no
    // waiters, needs no load before the CAS (one cache-line transfer, not two).
    let mut current = me;
    loop {
        match state
            .word
            .compare_exchange(current, 0, Ordering::Release, Ordering::Relaxed)
        {
            Ok(_) => break,
            Err(actual) if actual & PID_MASK == me => current = actual,
            Err(actual) => {
                tracing::error!(%key, word = actual, "futex mutex: released a lock this process did not hold");
                return Ok(0);
            }
        }
    }
    if current & WAITERS == 0 {
        return Ok(0);
    }
    futex::wake(&state.word, 1).map_err(|e| CortexError::clean("unlock", key, e))
}

impl Mutex {
    /// The contended part of [`lock`](CortexSync::lock): `seen` is the word the fast path
    /// found.
    #[cold]
    #[inline(never)]
    fn lock_contended(
        key: Key,
        state: &MutexState,
        wait: Wait,
        me: u32,
        seen: u32,
    ) -> CortexResult<()> {
        let mine = own_ident(me);
        if wait == Wait::Never {
            let ident = state.owner_ident.load(Ordering::Acquire);
            if holder_is_dead(seen, ident) && take_over(state, seen, ident, me, mine) {
                took_over(key, seen);
                return Ok(());
            }
            return Err(wait.gave_up(key));
        }
        let mut spins = 0;
        // WAITERS once this caller has slept: it cannot know whether others still sleep, so
        // it takes the lock with the bit set, and its release wakes the next one.
        let mut waiters = 0;
        // Check the holder before the first sleep and after every sleep that ran out.
        let mut check_holder = true;
        loop {
            let seen = state.word.load(Ordering::Acquire);
            if seen == 0 {
                if state
                    .word
                    .compare_exchange(0, me | waiters, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    state.owner_ident.store(mine, Ordering::Relaxed);
                    return Ok(());
                }
                continue;
            }
            if spins < SPIN_LIMIT {
                spins += 1;
                spin_loop();
                continue;
            }
            if check_holder {
                check_holder = false;
                let ident = state.owner_ident.load(Ordering::Acquire);
                if holder_is_dead(seen, ident) {
                    if take_over(state, seen, ident, me | waiters, mine) {
                        took_over(key, seen);
                        return Ok(());
                    }
                    continue;
                }
            }
            let timeout = match wait.remaining() {
                Remaining::For(left) => left.min(POLL),
                Remaining::Forever => POLL,
                Remaining::NoWait | Remaining::Expired => return Err(wait.gave_up(key)),
            };
            let asleep = seen | WAITERS;
            if seen & WAITERS == 0
                && state
                    .word
                    .compare_exchange(seen, asleep, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            waiters = WAITERS;
            match futex::wait(&state.word, asleep, Some(timeout)) {
                // Woken, or the word changed before we slept: look again.
                Ok(()) => {}
                Err(e) if e.errno == Errno::EAGAIN || e.errno == Errno::EINTR => {}
                // The holder kept the lock for a whole poll interval: is it alive?
                Err(e) if e.errno == Errno::ETIMEDOUT => check_holder = true,
                Err(e) => return Err(CortexError::clean("lock", key, e)),
            }
        }
    }
}

// SAFETY: the contract, point by point:
// 1. Exclusion: the lock is held by whoever changed the word from 0 (or from a dead holder's
//    value) to its pid with a compare-and-swap, and nobody else changes the pid bits until
//    the holder swaps the word back to 0 (setting the waiters bit keeps the pid). A waiter
//    replaces a holder only after `holder_is_dead`: no process has the pid, or it is a
//    zombie with no thread left, or the identity record names that pid with another start
//    time, which a holder (writing its record after its CAS, clearing it before its
//    release) never leaves behind while alive; and the record does not name another live
//    process (which would mean the word read was stale). The takeover first claims the
//    identity record by CAS and then changes the word by CAS from the dead holder's value,
//    so concurrent waiters take over at most once per dead holder, and a later holder that
//    reused the pid has a new record that the claim does not match. Residual assumptions,
//    documented on `Mutex`: one pid namespace for all users of the segment; and, for a
//    holder that died between its CAS and writing its record (so the record is 0), that its
//    pid is not reused by a process that takes the lock while a waiter is between its check
//    and its takeover.
// 2. Ordering: acquires are `Acquire` RMWs and the release is a `Release` swap; all writes
//    to the word are RMWs, so every release heads a release sequence that the next acquire
//    reads from.
// 3. State: the word and the identity record live in `MutexState` in the segment, and the
//    zero-filled state is a free lock; the futex is keyed by the shared page, not by this
//    process.
// 4. Holder death: sleepers wake at least every `POLL` and take over from a dead holder, and
//    a fresh waiter checks the holder before its first sleep, so a later lock succeeds.
// 5. Waits: `Wait::Never` makes one CAS and one holder check and never sleeps; sleeps last
//    at most the time left (recomputed after every wake-up, EINTR or timeout), and an
//    expired deadline returns `Timeout`. There is no kernel object that could be removed.
unsafe impl CortexSync for Mutex {
    type Settings = MutexSettings;
    type State = MutexState;
    const KIND: &'static str = "futex-mutex";
    const PID_BASED: bool = true;

    fn permission(settings: &MutexSettings) -> Permission {
        settings.mode
    }

    /// Nothing to make: a zero-filled state is a free lock.
    fn create(_key: Key, _state: &MutexState, _settings: &MutexSettings) -> CortexResult<Self> {
        Ok(Self { _private: () })
    }

    /// Nothing to open: the state in the segment is the whole lock.
    fn attach(_key: Key, _state: &MutexState) -> CortexResult<Self> {
        Ok(Self { _private: () })
    }

    #[inline]
    fn lock(&self, key: Key, state: &MutexState, wait: Wait) -> CortexResult<()> {
        let me = own_word();
        match state
            .word
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Acquire)
        {
            Ok(_) => {
                state.owner_ident.store(own_ident(me), Ordering::Relaxed);
                Ok(())
            }
            Err(seen) => Self::lock_contended(key, state, wait, me, seen),
        }
    }

    #[inline]
    unsafe fn unlock(&self, key: Key, state: &MutexState) -> CortexResult<()> {
        release(key, state).map(drop)
    }

    /// Nothing to remove.
    fn destroy(_key: Key, _state: &MutexState) -> CortexResult<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::process::{Child, Command};
    use std::time::Instant;

    use neocortex_core::ErrorKind;

    use super::*;

    const KEY: Key = Key(0x4d55_0001);

    fn free_state() -> Box<MutexState> {
        Box::new(MutexState {
            word: AtomicU32::new(0),
            owner_ident: AtomicU64::new(0),
        })
    }

    /// Forges a state held by `pid`, with `ident` as its identity record.
    fn held_by(pid: u32, ident: u64) -> Box<MutexState> {
        let state = free_state();
        state.word.store(pid, Ordering::Relaxed);
        state.owner_ident.store(ident, Ordering::Relaxed);
        state
    }

    /// A pid no process has: above every possible `pid_max`.
    fn dead_pid() -> u32 {
        let pid = PID_MASK;
        assert!(!pid_exists(pid as i32), "pid {pid} exists");
        pid
    }

    fn unlock(state: &MutexState) {
        // SAFETY: every caller took the lock on this state in this process just before.
        unsafe { LOCK.unlock(KEY, state) }.expect("unlock");
    }

    const LOCK: Mutex = Mutex { _private: () };

    /// Start-time ticks that are known (not 0) and differ from `ticks`.
    fn other_ticks(ticks: u32) -> u64 {
        u64::from(ticks.wrapping_add(1).max(1))
    }

    /// Waits until `f` holds, for at most 5 s.
    fn eventually(what: &str, f: impl Fn() -> bool) {
        let started = Instant::now();
        while !f() {
            assert!(started.elapsed() < Duration::from_secs(5), "never: {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// A child process that sleeps; killed and reaped on drop.
    struct Sleeper(Child);

    impl Sleeper {
        fn start() -> Self {
            Self(
                Command::new("sleep")
                    .arg("30")
                    .spawn()
                    .expect("spawn sleep"),
            )
        }

        fn pid(&self) -> u32 {
            self.0.id()
        }

        fn ident(&self) -> u64 {
            let status = proc_status(self.pid()).expect("child's /proc/<pid>/stat");
            make_ident(self.pid(), status.start_ticks)
        }
    }

    impl Drop for Sleeper {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn uncontended_lock_records_the_holder_and_unlock_clears_it() {
        let state = free_state();
        let lock = Mutex::create(KEY, &state, &MutexSettings::default()).expect("create");
        lock.lock(KEY, &state, Wait::Never).expect("free");
        let me = current_pid() as u32;
        assert_eq!(state.word.load(Ordering::Relaxed), me);
        let ident = state.owner_ident.load(Ordering::Relaxed);
        assert_eq!(ident_pid(ident), me);
        let ticks = neocortex_core::process::start_ticks(me as i32).expect("own start time");
        assert_eq!(ident_ticks(ident), ticks as u32);
        unlock(&state);
        assert_eq!(state.word.load(Ordering::Relaxed), 0);
        assert_eq!(state.owner_ident.load(Ordering::Relaxed), 0);
        Mutex::destroy(KEY, &state).expect("destroy is a no-op");
        assert_eq!(
            Mutex::permission(&MutexSettings::default()),
            Permission::OwnerOnly
        );
    }

    #[test]
    fn threads_do_not_lose_updates() {
        let state = free_state();
        let counter = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for i in 0..5000 {
                        LOCK.lock(KEY, &state, Wait::Forever).expect("lock");
                        // A non-atomic increment: only the lock keeps updates from being lost.
                        let v = counter.load(Ordering::Relaxed);
                        if i % 64 == 0 {
                            std::thread::yield_now();
                        }
                        counter.store(v + 1, Ordering::Relaxed);
                        unlock(&state);
                    }
                });
            }
        });
        assert_eq!(counter.load(Ordering::Relaxed), 20_000);
        assert_eq!(state.word.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn try_lock_on_a_held_lock_would_block() {
        let state = free_state();
        LOCK.lock(KEY, &state, Wait::Never).expect("free");
        let e = LOCK.lock(KEY, &state, Wait::Never).expect_err("held");
        assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
        let from_thread = std::thread::scope(|s| {
            s.spawn(|| LOCK.lock(KEY, &state, Wait::Never))
                .join()
                .expect("thread")
        });
        assert_eq!(from_thread.expect_err("held").kind(), ErrorKind::WouldBlock);
        // Still ours, untouched by the failed attempts.
        assert_eq!(state.word.load(Ordering::Relaxed), current_pid() as u32);
        unlock(&state);
    }

    #[test]
    fn timeouts_are_honoured_across_poll_intervals() {
        let state = free_state();
        LOCK.lock(KEY, &state, Wait::Never).expect("free");
        for timeout in [Duration::from_millis(20), Duration::from_millis(130)] {
            let started = Instant::now();
            let e = std::thread::scope(|s| {
                s.spawn(|| LOCK.lock(KEY, &state, Wait::timeout(timeout)))
                    .join()
                    .expect("thread")
            })
            .expect_err("held by a live holder");
            let waited = started.elapsed();
            assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
            assert!(waited >= timeout, "gave up after {waited:?} of {timeout:?}");
        }
        // The waiter slept, so the word says so; the holder is unchanged.
        let me = current_pid() as u32;
        assert_eq!(state.word.load(Ordering::Relaxed), me | WAITERS);
        unlock(&state);
        assert_eq!(state.word.load(Ordering::Relaxed), 0);
    }

    /// The scheduler state of thread `tid` of this process ('S' when asleep in the kernel).
    fn thread_state(tid: i32) -> Option<char> {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
        stat[stat.rfind(')')? + 1..]
            .split_whitespace()
            .next()?
            .chars()
            .next()
    }

    #[test]
    fn a_sleeping_waiter_is_woken_by_unlock() {
        let state = free_state();
        LOCK.lock(KEY, &state, Wait::Never).expect("free");
        let tid = std::sync::atomic::AtomicI32::new(0);
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                // SAFETY: gettid takes nothing and cannot fail.
                tid.store(unsafe { libc::gettid() }, Ordering::SeqCst);
                LOCK.lock(KEY, &state, Wait::timeout(Duration::from_secs(10)))?;
                // Taken with the waiters bit: it could not know it was the last sleeper.
                let word = state.word.load(Ordering::Relaxed);
                unlock(&state);
                Ok::<_, CortexError>(word)
            });
            eventually("the waiter marks the word", || {
                state.word.load(Ordering::Relaxed) & WAITERS != 0
            });
            // Marked, and asleep in the kernel: in FUTEX_WAIT, the only sleep after marking.
            eventually("the waiter sleeps", || {
                thread_state(tid.load(Ordering::SeqCst)) == Some('S')
            });
            // The release itself wakes it (rather than the waiter's own 50 ms poll).
            assert_eq!(
                release(KEY, &state).expect("release"),
                1,
                "one sleeper woken"
            );
            let word = waiter.join().expect("thread").expect("woken, locked");
            assert_eq!(word, current_pid() as u32 | WAITERS);
        });
        assert_eq!(state.word.load(Ordering::Relaxed), 0);
        // With nobody asleep, a release wakes nobody.
        LOCK.lock(KEY, &state, Wait::Never).expect("free");
        assert_eq!(release(KEY, &state).expect("release"), 0);
    }

    #[test]
    fn a_dead_holder_is_taken_over_at_once() {
        let me = current_pid() as u32;
        let mine = own_ident(me);
        // Without and with sleepers recorded in the word; the waiters bit is kept.
        for bits in [0, WAITERS] {
            let dead = dead_pid();
            let state = held_by(dead | bits, make_ident(dead, 12345));
            LOCK.lock(KEY, &state, Wait::Never).expect("taken over");
            assert_eq!(state.word.load(Ordering::Relaxed), me | bits);
            assert_eq!(state.owner_ident.load(Ordering::Relaxed), mine);
            unlock(&state);
            assert_eq!(state.word.load(Ordering::Relaxed), 0);
        }
        // A blocking acquire takes over too (it checks the holder before its first sleep).
        let state = held_by(dead_pid(), 0);
        LOCK.lock(KEY, &state, Wait::timeout(Duration::from_secs(10)))
            .expect("taken over");
        assert_eq!(state.word.load(Ordering::Relaxed) & PID_MASK, me);
        unlock(&state);
        // The record names a taker-over that died before it changed the word: taken over.
        let dead = dead_pid();
        let state = held_by(dead, make_ident(dead - 1, 99));
        assert!(!pid_exists((dead - 1) as i32));
        LOCK.lock(KEY, &state, Wait::Never).expect("taken over");
        assert_eq!(state.word.load(Ordering::Relaxed), me);
        unlock(&state);
        // The record names a live process: the word was read before the lock changed hands.
        let state = held_by(dead, mine);
        let e = LOCK
            .lock(KEY, &state, Wait::Never)
            .expect_err("record of a live holder");
        assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
        assert_eq!(state.word.load(Ordering::Relaxed), dead);
        assert_eq!(state.owner_ident.load(Ordering::Relaxed), mine);
        // A held word without a pid can never be released: taken over too.
        let state = held_by(WAITERS, 0);
        LOCK.lock(KEY, &state, Wait::Never).expect("taken over");
        assert_eq!(state.word.load(Ordering::Relaxed), me | WAITERS);
        unlock(&state);
    }

    #[test]
    fn a_reused_pid_is_told_apart_by_its_start_time() {
        // This process as the "holder": alive with its own start time, dead with another.
        let me = current_pid() as u32;
        let mine = own_ident(me);
        assert_ne!(ident_ticks(mine), 0, "needs /proc");
        for ident in [mine, 0, make_ident(me + 1, 7)] {
            let state = held_by(me, ident);
            let e = LOCK.lock(KEY, &state, Wait::Never).expect_err("alive");
            assert_eq!(e.kind(), ErrorKind::WouldBlock, "ident {ident:#x}");
        }
        let state = held_by(me, make_ident(me, other_ticks(ident_ticks(mine))));
        LOCK.lock(KEY, &state, Wait::Never)
            .expect("an earlier process with my pid");
        assert_eq!(state.owner_ident.load(Ordering::Relaxed), mine);
        unlock(&state);

        // Another live process, read through /proc.
        let other = Sleeper::start();
        let pid = other.pid();
        let real = other.ident();
        for ident in [real, 0] {
            let state = held_by(pid, ident);
            let e = LOCK.lock(KEY, &state, Wait::Never).expect_err("alive");
            assert_eq!(e.kind(), ErrorKind::WouldBlock, "ident {ident:#x}");
            assert_eq!(state.word.load(Ordering::Relaxed), pid);
        }
        let state = held_by(pid, make_ident(pid, other_ticks(ident_ticks(real))));
        LOCK.lock(KEY, &state, Wait::Never).expect("pid reused");
        assert_eq!(state.word.load(Ordering::Relaxed), me);
        unlock(&state);
    }

    #[test]
    fn a_holder_that_dies_while_others_sleep_is_taken_over() {
        for reap in [false, true] {
            let mut holder = Sleeper::start();
            let state = held_by(holder.pid(), holder.ident());
            std::thread::scope(|s| {
                let waiter =
                    s.spawn(|| LOCK.lock(KEY, &state, Wait::timeout(Duration::from_secs(10))));
                eventually("the waiter sleeps", || {
                    state.word.load(Ordering::Relaxed) & WAITERS != 0
                });
                std::thread::sleep(POLL + Duration::from_millis(20));
                assert!(!waiter.is_finished(), "took over from a live holder");
                holder.0.kill().expect("kill");
                if reap {
                    holder.0.wait().expect("reap");
                } // else it stays a zombie until the Sleeper drops
                waiter.join().expect("thread").expect("taken over");
            });
            assert_eq!(
                state.word.load(Ordering::Relaxed),
                current_pid() as u32 | WAITERS,
                "reaped: {reap}"
            );
            unlock(&state);
        }
    }

    #[test]
    fn proc_stat_lines_are_parsed() {
        let tail = "0 -1 4227148 222 0 0 0 0 0 0 0 20 0";
        let zombie = format!("7324 (py thon) Z 7283 7277 4271 {tail} 1 0 72826 0 0");
        assert_eq!(
            parse_status(&zombie),
            Some(ProcStatus {
                zombie: true,
                start_ticks: 72826
            })
        );
        // An exited thread-group leader whose other threads still run is not dead.
        let leader = format!("7537 (lz) Z 7522 7522 4271 {tail} 2 0 73137 0 0");
        assert_eq!(parse_status(&leader).map(|s| s.zombie), Some(false));
        let running = format!("7537 (a) b) S 7522 7522 4271 {tail} 1 0 99 0 0");
        assert_eq!(
            parse_status(&running),
            Some(ProcStatus {
                zombie: false,
                start_ticks: 99
            })
        );
        assert_eq!(parse_status("1 (x) S 1"), None);
    }

    #[test]
    fn own_identity_is_cached_per_pid() {
        let me = current_pid() as u32;
        let first = own_ident(me);
        assert_eq!(own_ident(me), first);
        assert_eq!(ident_pid(first), me);
        let status = proc_status(me).expect("own /proc/<pid>/stat");
        assert!(!status.zombie);
        assert_eq!(ident_ticks(first), status.start_ticks as u32);
    }
}

//! Unit tests of the futex lock on a stand-alone bench (no segment).

use std::time::Instant;

use neocortex_core::{ErrorKind, TestBench};

use super::*;

const LOCK: Semaphore = Semaphore { _private: () };

fn free_state() -> Box<SemaphoreState> {
    Box::new(SemaphoreState {
        word: AtomicU32::new(0),
    })
}

fn unlock(bench: &TestBench, state: &SemaphoreState) {
    // SAFETY: every caller took the lock on this state through this bench just before.
    unsafe { LOCK.unlock(&bench.cx(), state) }.expect("unlock");
}

/// Waits until `f` holds, for at most 5 s.
fn eventually(what: &str, f: impl Fn() -> bool) {
    let started = Instant::now();
    while !f() {
        assert!(started.elapsed() < Duration::from_secs(5), "never: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn uncontended_lock_names_the_holder_and_unlock_frees() {
    let bench = TestBench::new(0x5345_0001);
    let state = free_state();
    let cx = bench.cx();
    assert_eq!(
        LOCK.lock(&cx, &state, Wait::Never).expect("free"),
        Acquired::Released
    );
    let me = cx.token().expect("token").raw();
    assert_eq!(state.word.load(Ordering::Relaxed), me);
    assert_eq!(
        Semaphore::holder(&cx, &state),
        Some(std::process::id() as i32)
    );
    unlock(&bench, &state);
    assert_eq!(state.word.load(Ordering::Relaxed), 0);
    assert_eq!(Semaphore::holder(&cx, &state), None);
}

#[test]
fn threads_do_not_lose_updates() {
    let bench = TestBench::new(0x5345_0002);
    let state = free_state();
    let counter = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for i in 0..5000 {
                    LOCK.lock(&bench.cx(), &state, Wait::Forever).expect("lock");
                    // A non-atomic increment: only the lock keeps updates from being lost.
                    let v = counter.load(Ordering::Relaxed);
                    if i % 64 == 0 {
                        std::thread::yield_now();
                    }
                    counter.store(v + 1, Ordering::Relaxed);
                    unlock(&bench, &state);
                }
            });
        }
    });
    assert_eq!(counter.load(Ordering::Relaxed), 20_000);
    assert_eq!(state.word.load(Ordering::Relaxed), 0);
}

#[test]
fn a_held_lock_would_block_and_times_out_never_early() {
    let bench = TestBench::new(0x5345_0003);
    let state = free_state();
    LOCK.lock(&bench.cx(), &state, Wait::Never).expect("free");
    let e = LOCK
        .lock(&bench.cx(), &state, Wait::Never)
        .expect_err("held");
    assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
    for timeout in [
        Duration::ZERO,
        Duration::from_millis(20),
        Duration::from_millis(30),
    ] {
        let started = Instant::now();
        let e = std::thread::scope(|s| {
            s.spawn(|| LOCK.lock(&bench.cx(), &state, Wait::timeout(timeout)))
                .join()
                .expect("thread")
        })
        .expect_err("held by a live holder");
        assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
        assert!(started.elapsed() >= timeout);
    }
    unlock(&bench, &state);
    // A zero timeout on a free lock takes it.
    LOCK.lock(&bench.cx(), &state, Wait::timeout(Duration::ZERO))
        .expect("a free lock is taken even with no time to wait");
    unlock(&bench, &state);
}

#[test]
fn a_sleeping_waiter_is_woken_by_unlock() {
    let bench = TestBench::new(0x5345_0004);
    let state = free_state();
    LOCK.lock(&bench.cx(), &state, Wait::Never).expect("free");
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            LOCK.lock(&bench.cx(), &state, Wait::timeout(Duration::from_secs(10)))?;
            // Taken with the waiters bit: it could not know it was the last sleeper.
            let word = state.word.load(Ordering::Relaxed);
            unlock(&bench, &state);
            Ok::<_, CortexError>(word)
        });
        eventually("the waiter marks the word", || {
            state.word.load(Ordering::Relaxed) & WAITERS != 0
        });
        unlock(&bench, &state);
        let word = waiter.join().expect("thread").expect("woken, locked");
        assert_eq!(word & WAITERS, WAITERS);
    });
    assert_eq!(state.word.load(Ordering::Relaxed), 0);
}

#[test]
fn a_dead_or_missing_holder_is_taken_over() {
    let bench = TestBench::new(0x5345_0005);
    let cx = bench.cx();
    let me = cx.token().expect("token").raw();
    // A token nobody holds: slot 0 with a tag no claim made (the set is fresh).
    let dead = 7 << 12;
    assert!(!cx
        .is_alive(Token::from_raw(dead).expect("token"))
        .expect("ask"));
    for bits in [0, WAITERS] {
        let state = free_state();
        state.word.store(dead | bits, Ordering::Relaxed);
        let got = LOCK.lock(&cx, &state, Wait::Never).expect("taken over");
        assert!(matches!(got, Acquired::FromDeadHolder { .. }), "{got:?}");
        assert_eq!(
            state.word.load(Ordering::Relaxed),
            me | bits,
            "waiters bit kept"
        );
        unlock(&bench, &state);
    }
    // A word that names nobody at all is taken over too, also by a blocking acquire.
    let state = free_state();
    state.word.store(WAITERS | 5, Ordering::Relaxed);
    let got = LOCK
        .lock(&cx, &state, Wait::timeout(Duration::from_secs(10)))
        .expect("taken over");
    assert!(
        matches!(got, Acquired::FromDeadHolder { pid: None }),
        "{got:?}"
    );
    unlock(&bench, &state);
    // A live holder (this process's own token, from another thread's view) is not.
    let state = free_state();
    state.word.store(me, Ordering::Relaxed);
    let e = LOCK.lock(&cx, &state, Wait::Never).expect_err("alive");
    assert_eq!(e.kind(), ErrorKind::WouldBlock);
    assert_eq!(state.word.load(Ordering::Relaxed), me);
}

/// The re-check under the reaper lock: a takeover happens only if the word still names
/// the dead holder seen and is not marked removed, and it keeps the waiters bit.
#[test]
fn a_takeover_rechecks_the_word_under_the_reaper_lock() {
    let bench = TestBench::new(0x5345_0007);
    let cx = bench.cx();
    let me = cx.token().expect("token").raw();
    let dead = 7 << 12;
    let other_dead = (8 << 12) | 1;
    let take = |word: u32, seen: u32, new: u32| {
        let state = free_state();
        state.word.store(word, Ordering::Relaxed);
        let got = Semaphore::take_over(&cx, &state, Wait::Never, seen, new).expect("ask");
        (got, state.word.load(Ordering::Relaxed))
    };
    // Marked removed meanwhile: left alone.
    assert_eq!(take(dead | REMOVED, dead, me), (None, dead | REMOVED));
    // Another holder named meanwhile (dead too): left alone, the caller looks again.
    assert_eq!(take(other_dead, dead, me), (None, other_dead));
    // A live holder named meanwhile: left alone.
    assert_eq!(take(me, me, me), (None, me));
    // Still the dead holder seen: taken, the waiters bit kept or added, never dropped.
    for (word, new, after) in [
        (dead, me, me),
        (dead | WAITERS, me, me | WAITERS),
        (dead, me | WAITERS, me | WAITERS),
        (dead | WAITERS, me | WAITERS, me | WAITERS),
    ] {
        let (got, now) = take(word, dead, new);
        assert!(
            matches!(got, Some(Acquired::FromDeadHolder { .. })),
            "{word:#x}: {got:?}"
        );
        assert_eq!(now, after, "{word:#x} taken with {new:#x}");
    }
}

#[test]
fn removal_fails_waiters_and_later_acquires() {
    let bench = TestBench::new(0x5345_0006);
    let state = free_state();
    LOCK.lock(&bench.cx(), &state, Wait::Never).expect("free");
    std::thread::scope(|s| {
        let waiter = s.spawn(|| LOCK.lock(&bench.cx(), &state, Wait::Forever));
        eventually("the waiter sleeps", || {
            state.word.load(Ordering::Relaxed) & WAITERS != 0
        });
        bench.mark_removed();
        Semaphore::destroy(&bench.cx(), &state).expect("destroy");
        let e = waiter.join().expect("thread").expect_err("removed");
        assert_eq!(e.kind(), ErrorKind::LockRemoved);
    });
    // The holder's release keeps the mark; nobody gets in afterwards.
    unlock(&bench, &state);
    assert_eq!(state.word.load(Ordering::Relaxed), REMOVED);
    let e = LOCK
        .lock(&bench.cx(), &state, Wait::Never)
        .expect_err("removed");
    assert_eq!(e.kind(), ErrorKind::LockRemoved);
}

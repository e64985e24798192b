//! Many processes at once: racing creators, readers and writers, and lock holders that exit
//! or are killed at random points.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: an unexpected error fails the test with its message"
)]

mod common;

use std::time::{Duration, Instant};

use common::{assert_gone, fork, unique_key, Exit, Pipe};
use neocortex::{Cortex, CortexResult, CortexSync, ErrorKind, Key, Permission, Semaphore, Wait};

#[test]
fn eight_racing_creators_one_winner_per_round() {
    let key = unique_key("eight_racing_creators");
    for round in 0..100 {
        let go = Pipe::new();
        let children: Vec<_> = (0..8)
            .map(|_| {
                fork(|| {
                    go.recv();
                    // SAFETY: getpid takes nothing.
                    let me = u64::from(unsafe { libc::getpid() } as u32);
                    match Cortex::<u64, Semaphore>::new(key, me, None) {
                        // The winner leaves its segment in place for the parent to check.
                        Ok(cortex) => match cortex.detach() {
                            Ok(()) => 10,
                            Err(_) => 12,
                        },
                        Err(e) if e.kind() == ErrorKind::AlreadyExists => 11,
                        Err(_) => 13,
                    }
                })
            })
            .collect();
        go.release(8);
        let pids: Vec<i32> = children.iter().map(common::Child::pid).collect();
        let mut codes: Vec<Exit> = children.into_iter().map(common::Child::wait).collect();
        codes.sort_by_key(|e| format!("{e:?}"));
        let mut expected = vec![Exit::Code(10)];
        expected.extend([Exit::Code(11); 7]);
        assert_eq!(
            codes, expected,
            "round {round}: one winner, seven told AlreadyExists"
        );
        // Every loser is gone, and none removed the winner's segment.
        let winner =
            Cortex::<u64, Semaphore>::attach(key).unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert!(
            pids.contains(&(winner.read().unwrap() as i32)),
            "round {round}: the winner's value"
        );
        let ids = (winner.segment_id(), winner.raw_lock().id());
        winner.remove().unwrap();
        assert_gone(key, &[ids.0], &[ids.1]);
    }
}

neocortex::shm_safe! {
    /// A page of words that a writer keeps all equal.
    pub struct Page {
        /// All equal whenever no writer is half-way.
        pub words: [u64; 512],
    }
}

/// A "lock" that does nothing: deliberately breaks the exclusion promise, as a negative
/// control proving the torn-read check below can fail.
#[derive(Debug)]
struct NoLock;

neocortex::shm_safe! {
    /// Nothing: the no-lock has no state.
    #[derive(Debug)]
    pub struct NoState {}
}

// SAFETY: deliberately NOT upheld (no exclusion): used only in a forked-process negative
// control whose readers copy the words with volatile reads and never keep references.
unsafe impl CortexSync for NoLock {
    type Settings = ();
    type State = NoState;
    const KIND: &'static str = "test-no-lock";
    fn permission(_: &()) -> Permission {
        Permission::OwnerOnly
    }
    fn create(_: Key, _: &NoState, _: &()) -> CortexResult<Self> {
        Ok(NoLock)
    }
    fn attach(_: Key, _: &NoState) -> CortexResult<Self> {
        Ok(NoLock)
    }
    fn lock(&self, _: Key, _: &NoState, _: Wait) -> CortexResult<()> {
        Ok(())
    }
    unsafe fn unlock(&self, _: Key, _: &NoState) -> CortexResult<()> {
        Ok(())
    }
    fn destroy(_: Key, _: &NoState) -> CortexResult<()> {
        Ok(())
    }
}

/// Two writers and four readers on a page for `duration`; returns (torn reads seen, final
/// value, writes done).
fn page_torture<L: CortexSync>(
    key: i32,
    duration: Duration,
    writes_per_writer: u64,
) -> (u64, u64, u64) {
    let cortex: Cortex<Page, L> = Cortex::new_zeroed(key, None).unwrap();
    let go = Pipe::new();
    let torn = Pipe::new();
    let writers: Vec<_> = (0..2)
        .map(|_| {
            fork(|| {
                let Ok(c) = Cortex::<Page, L>::attach(key) else {
                    return 2;
                };
                go.recv();
                for _ in 0..writes_per_writer {
                    let Ok(mut g) = c.lock() else { return 3 };
                    let next = g.words[0] + 1;
                    for w in g.words.iter_mut() {
                        // Volatile, so the words really are written one by one.
                        // SAFETY: `w` is a valid, aligned, exclusive reference.
                        unsafe { std::ptr::write_volatile(w, next) };
                    }
                }
                0
            })
        })
        .collect();
    let readers: Vec<_> = (0..4)
        .map(|_| {
            fork(|| {
                let Ok(c) = Cortex::<Page, L>::attach(key) else {
                    return 2;
                };
                go.recv();
                let end = Instant::now() + duration;
                let mut seen_torn = 0u8;
                while Instant::now() < end && seen_torn == 0 {
                    let Ok(g) = c.lock_shared() else { return 3 };
                    // SAFETY: reads within the page the guard points to.
                    let first = unsafe { std::ptr::read_volatile(&g.words[0]) };
                    // SAFETY: as above, the last word.
                    let last = unsafe { std::ptr::read_volatile(&g.words[511]) };
                    if first != last {
                        seen_torn = 1;
                    }
                }
                torn.send(seen_torn);
                0
            })
        })
        .collect();
    go.release(6);
    let torn_count: u64 = (0..4).map(|_| u64::from(torn.recv())).sum();
    for child in writers.into_iter().chain(readers) {
        child.expect_success("writer or reader");
    }
    let value = cortex.lock().unwrap().words[0];
    drop(cortex);
    (torn_count, value, 2 * writes_per_writer)
}

fn never_torn<L: CortexSync>(name: &str) {
    let key = unique_key(name);
    let (torn, value, writes) = page_torture::<L>(key, Duration::from_millis(300), 2_000);
    assert_eq!(torn, 0, "no reader saw a half-written page");
    assert_eq!(value, writes, "no update was lost");
    assert_gone(key, &[], &[]);
}

#[test]
fn readers_and_writers_never_see_a_torn_page_or_lose_an_update_semaphore() {
    never_torn::<Semaphore>("never_torn_semaphore");
}

#[test]
fn readers_and_writers_never_see_a_torn_page_or_lose_an_update_rw_semaphore() {
    never_torn::<neocortex::RwSemaphore>("never_torn_rw_semaphore");
}

#[cfg(target_os = "linux")]
#[test]
fn readers_and_writers_never_see_a_torn_page_or_lose_an_update_mutex() {
    never_torn::<neocortex::Mutex>("never_torn_mutex");
}

#[test]
fn without_a_lock_the_same_check_catches_violations() {
    let key = unique_key("without_a_lock_the_same_check");
    let (torn, value, writes) = page_torture::<NoLock>(key, Duration::from_secs(2), 50_000);
    assert!(
        torn > 0 || value < writes,
        "the negative control must see torn reads or lost updates"
    );
    assert_gone(key, &[], &[]);
}

#[test]
fn holders_that_exit_or_die_at_random_points_always_leave_the_lock_free() {
    let key = unique_key("holders_that_exit_or_die");
    let cortex: Cortex<u64, Semaphore> = Cortex::new(key, 0, None).unwrap();
    let sem_id = cortex.raw_lock().id();
    let mut seed = u64::from(std::process::id()) | 1;
    let mut random = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for round in 0..40 {
        let exit_after = random(500);
        let by_exit = round % 2 == 0;
        let child = fork(move || {
            let Ok(c) = Cortex::<u64, Semaphore>::attach(key) else {
                return 2;
            };
            for i in 0.. {
                let Ok(mut g) = c.lock() else { return 3 };
                *g += 1;
                if by_exit && i == exit_after {
                    // Leaves holding the lock, without unwinding.
                    // SAFETY: ends this child at once.
                    unsafe { libc::_exit(0) };
                }
            }
            0
        });
        if by_exit {
            assert_eq!(child.wait(), Exit::Code(0));
        } else {
            std::thread::sleep(Duration::from_micros(random(3_000)));
            child.signal(libc::SIGKILL);
            assert_eq!(child.wait(), Exit::Signal(libc::SIGKILL));
        }
        assert_eq!(
            neocortex_sys::sem::get_value(sem_id, 0).unwrap(),
            1,
            "round {round}: free again"
        );
        let mut g = cortex.lock_timeout(Duration::from_secs(2)).unwrap();
        g.mark_consistent();
    }
    drop(cortex);
    assert_gone(key, &[], &[sem_id]);
}

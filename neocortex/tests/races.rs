//! Many processes at once: racing creators, readers and writers, and lock holders that exit
//! or are killed at random points.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: an unexpected error fails the test with its message"
)]

mod common;

use std::time::{Duration, Instant};

use common::{fork, semaphore_set_ids, unique_key, Exit, Made, Pipe, LOCK_WAIT};
use neocortex::{
    Acquired, Cortex, CortexResult, CortexSync, ErrorKind, InPlace, LockContext, Permission,
    Semaphore, Wait,
};

#[test]
fn eight_racing_creators_one_winner_per_round() {
    let _guard = common::watchdog();
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
        let made = Made::of(&winner);
        winner.remove().unwrap();
        made.assert_gone();
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
    type Access = InPlace;
    const KIND: &'static str = "test-no-lock";
    fn permission(_: &()) -> Permission {
        Permission::OwnerOnly
    }
    fn create(_: &LockContext<'_>, _: &NoState, _: &()) -> CortexResult<Self> {
        Ok(NoLock)
    }
    fn attach(_: &LockContext<'_>, _: &NoState) -> CortexResult<Self> {
        Ok(NoLock)
    }
    fn lock(&self, _: &LockContext<'_>, _: &NoState, _: Wait) -> CortexResult<Acquired> {
        Ok(Acquired::Released)
    }
    unsafe fn unlock(&self, _: &LockContext<'_>, _: &NoState) -> CortexResult<()> {
        Ok(())
    }
    fn destroy(_: &LockContext<'_>, _: &NoState) -> CortexResult<()> {
        Ok(())
    }
}

/// Two writers and four readers on a page for `duration`; returns (torn reads seen, final
/// value, writes done). Checks that the segment and its lock are gone afterwards.
fn page_torture<L: CortexSync<Access = InPlace>>(
    key: i32,
    duration: Duration,
    writes_per_writer: u64,
) -> (u64, u64, u64) {
    let cortex: Cortex<Page, L> = Cortex::new_zeroed(key, None).unwrap();
    let made = Made::of(&cortex);
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
    let value = cortex.lock_timeout(LOCK_WAIT).unwrap().words[0];
    drop(cortex);
    made.assert_gone();
    (torn_count, value, 2 * writes_per_writer)
}

fn never_torn<L: CortexSync<Access = InPlace>>(name: &str) {
    let key = unique_key(name);
    let (torn, value, writes) = page_torture::<L>(key, Duration::from_millis(300), 2_000);
    assert_eq!(torn, 0, "no reader saw a half-written page");
    assert_eq!(value, writes, "no update was lost");
}

#[test]
fn readers_and_writers_never_see_a_torn_page_or_lose_an_update_semaphore() {
    let _guard = common::watchdog();
    never_torn::<Semaphore>("never_torn_semaphore");
}

#[test]
fn readers_and_writers_never_see_a_torn_page_or_lose_an_update_rw_semaphore() {
    let _guard = common::watchdog();
    never_torn::<neocortex::RwSemaphore>("never_torn_rw_semaphore");
}

#[cfg(target_os = "linux")]
#[test]
fn readers_and_writers_never_see_a_torn_page_or_lose_an_update_sysv_semaphore() {
    let _guard = common::watchdog();
    never_torn::<neocortex::SysvSemaphore>("never_torn_sysv_semaphore");
}

#[test]
fn without_a_lock_the_same_check_catches_violations() {
    let _guard = common::watchdog();
    let key = unique_key("without_a_lock_the_same_check");
    let (torn, value, writes) = page_torture::<NoLock>(key, Duration::from_secs(2), 50_000);
    assert!(
        torn > 0 || value < writes,
        "the negative control must see torn reads or lost updates"
    );
}

/// Holders that exit or are killed at random points, 40 times: each time the next timed
/// acquire gets the lock (released by the kernel, or taken over), and `free` says whether
/// the lock itself shows it free right after the death.
fn holders_exit_or_die_at_random_points<L: CortexSync<Access = InPlace>>(
    name: &str,
    free: impl Fn(&Cortex<u64, L>) -> bool,
) {
    let key = unique_key(name);
    let cortex: Cortex<u64, L> = Cortex::new(key, 0, None).unwrap();
    let made = Made::of(&cortex);
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
            let Ok(c) = Cortex::<u64, L>::attach(key) else {
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
        assert!(free(&cortex), "round {round}: free again");
        let mut g = cortex.lock_timeout(LOCK_WAIT).unwrap();
        g.mark_consistent();
    }
    drop(cortex);
    made.assert_gone();
}

#[test]
fn sysv_holders_that_exit_or_die_at_random_points_leave_the_lock_free() {
    let _guard = common::watchdog();
    holders_exit_or_die_at_random_points::<neocortex::SysvSemaphore>(
        "sysv_holders_exit_or_die",
        |c| {
            let set = semaphore_set_ids(c)[1];
            neocortex_sys::sem::get_value(set, 0).unwrap() == 1
        },
    );
}

#[test]
fn semaphore_holders_that_exit_or_die_at_random_points_are_taken_over() {
    let _guard = common::watchdog();
    // The futex word still names the dead holder until a waiter takes over.
    holders_exit_or_die_at_random_points::<Semaphore>("semaphore_holders_exit_or_die", |_| true);
}

//! [`RwSemaphore`]: many readers or one writer, from a SysV semaphore set with `SEM_UNDO`.

use neocortex_core::{Acquired, CortexResult, CortexSync, InPlace, LockContext, Permission, Wait};

use crate::settings::SemaphoreSettings;
use crate::sysv::{self, Op, SysvState};

/// A readers–writer lock made of three SysV semaphores, every operation with `SEM_UNDO`.
///
/// Many processes (and threads) may hold it shared at once, or one exclusively. Each acquire
/// and release is one atomic multi-operation `semop`:
///
/// | semaphore | counts |
/// |---|---|
/// | 0 | active readers |
/// | 1 | active writer (0 or 1) |
/// | 2 | writers waiting or active |
///
/// - **Shared:** wait until no writer waits or writes (sem 2 = 0) and add a reader, at once.
///   Released by taking the reader back.
/// - **Exclusive:** first announce the writer (sem 2 + 1, never blocks), which stops new
///   readers so a stream of readers cannot starve writers; then wait until there are no
///   readers and no writer and become the writer, at once. A writer that gives up (timeout,
///   `WouldBlock`, error) withdraws its announcement before returning. Released by taking
///   back the writer and its announcement, at once.
///
/// Writers are preferred: while one waits, new readers wait too. So a thread that already
/// holds the lock shared must not ask for it (shared or exclusive) again: with a writer
/// waiting in between, it would wait for itself. The lock is not reentrant in any way.
///
/// - **Crash-safe:** the kernel undoes a dead process's holds and announcements (even after
///   `SIGKILL`), so readers and writers alike are released; the next exclusive guard reports
///   [`owner_died`](neocortex_core::CortexGuard::owner_died) when a writer died.
/// - **Per process:** like [`SysvSemaphore`](crate::SysvSemaphore), a thread that ends without
///   unwinding while holding the lock keeps it held until its process exits.
/// - The set is private (`IPC_PRIVATE`); its id is stored in the segment
///   ([`SysvState`]). The [`SemaphoreSettings`] mode governs the segment and the set.
///
/// Interrupted waits are retried with the remaining time; a set removed from outside gives
/// [`CortexError::LockRemoved`](neocortex_core::CortexError::LockRemoved).
#[derive(Debug)]
pub struct RwSemaphore {
    id: i32,
}

impl RwSemaphore {
    /// Active readers.
    const READERS: u16 = 0;
    /// The active writer: 0 or 1.
    const WRITER: u16 = 1;
    /// Writers waiting or active; new readers wait while it is not 0.
    const WRITERS: u16 = 2;
    /// The number of semaphores in the set.
    const NSEMS: u16 = 3;

    /// The semaphore set's id, as `ipcs -s` lists it.
    pub fn set_id(&self) -> i32 {
        self.id
    }
}

// SAFETY: the contract, point by point:
// 1. Exclusion: a writer becomes one only by an atomic semop that checks READERS = 0 and
//    WRITER = 0 and sets WRITER to 1, so at most one writer exists and it starts with no
//    reader. A writer holds its WRITERS announcement until it releases, and a reader enters
//    only by an atomic semop that checks WRITERS = 0 while adding to READERS, so no reader
//    enters while a writer is active. Hence between a successful `lock` and its `unlock`
//    no `lock` or `lock_shared` succeeds anywhere, and while a shared hold lasts
//    (READERS > 0) no `lock` succeeds.
// 2. Ordering: semop runs under the set's kernel lock, a full barrier between the releasing
//    and the acquiring process.
// 3. State: the set id is recorded in `SysvState` inside the segment; zero-filled means
//    "no set yet", which `attach` refuses and `destroy` skips.
// 4. Holder death: every operation (including the writer's announcement) uses SEM_UNDO, so
//    the kernel takes back a dead process's readers, writer and announcements, and the
//    counts return to what the living holders account for.
// 5. Waits: `sysv::acquire` uses IPC_NOWAIT for `Wait::Never`, semtimedop with the time
//    left for a deadline, retries EINTR with the recomputed time left, and maps EIDRM/EINVAL
//    to `LockRemoved`. The announcement never blocks, and a writer that gives up withdraws
//    it before returning, so readers are not kept out by a writer that left.
unsafe impl CortexSync for RwSemaphore {
    type Settings = SemaphoreSettings;
    type State = SysvState;
    type Access = InPlace;
    const KIND: &'static str = "sysv-rw-semaphore";
    const SHARED: bool = true;

    fn permission(settings: &SemaphoreSettings) -> Permission {
        settings.mode
    }

    fn create(
        cx: &LockContext<'_>,
        state: &SysvState,
        settings: &SemaphoreSettings,
    ) -> CortexResult<Self> {
        sysv::create(cx.key(), state, settings.mode, &[0; Self::NSEMS as usize])
            .map(|id| Self { id })
    }

    fn attach(cx: &LockContext<'_>, state: &SysvState) -> CortexResult<Self> {
        sysv::attach(cx.key(), state, Self::NSEMS).map(|id| Self { id })
    }

    fn lock(&self, cx: &LockContext<'_>, _state: &SysvState, wait: Wait) -> CortexResult<Acquired> {
        let key = cx.key();
        // Announce the writer: an increment never waits, and it stops new readers.
        sysv::apply_now("lock", key, self.id, [Op::add(Self::WRITERS, 1)])?;
        let taken = sysv::acquire(
            key,
            self.id,
            [
                Op::wait_zero(Self::READERS),
                Op::wait_zero(Self::WRITER),
                Op::add(Self::WRITER, 1),
            ],
            wait,
        );
        if taken.is_err() {
            // Withdraw the announcement, or readers would wait for a writer that left.
            if let Err(e) = sysv::apply_now("lock", key, self.id, [Op::add(Self::WRITERS, -1)]) {
                // Only possible when the set is gone (then `taken` says so too) or its counts
                // were changed from outside; SEM_UNDO withdraws it when this process exits.
                tracing::error!(key, semid = self.id, error = %e,
                    "withdrawing a writer's announcement failed; readers wait until this process exits");
            }
        }
        taken.map(|()| Acquired::Released)
    }

    unsafe fn unlock(&self, cx: &LockContext<'_>, _state: &SysvState) -> CortexResult<()> {
        sysv::apply_now(
            "unlock",
            cx.key(),
            self.id,
            [Op::add(Self::WRITER, -1), Op::add(Self::WRITERS, -1)],
        )
    }

    fn lock_shared(
        &self,
        cx: &LockContext<'_>,
        _state: &SysvState,
        wait: Wait,
    ) -> CortexResult<Acquired> {
        sysv::acquire(
            cx.key(),
            self.id,
            [Op::wait_zero(Self::WRITERS), Op::add(Self::READERS, 1)],
            wait,
        )
        .map(|()| Acquired::Released)
    }

    unsafe fn unlock_shared(&self, cx: &LockContext<'_>, _state: &SysvState) -> CortexResult<()> {
        sysv::apply_now("unlock", cx.key(), self.id, [Op::add(Self::READERS, -1)])
    }

    fn destroy(cx: &LockContext<'_>, state: &SysvState) -> CortexResult<()> {
        sysv::destroy(cx.key(), state)
    }

    fn semaphore_sets(&self) -> Vec<i32> {
        vec![self.id]
    }

    fn semaphore_sets_in(_cx: &LockContext<'_>, state: &SysvState) -> Vec<i32> {
        state.stored_id().into_iter().collect()
    }

    fn holder(_cx: &LockContext<'_>, state: &SysvState) -> Option<i32> {
        let id = state.stored_id()?;
        match neocortex_sys::sem::get_value(id, Self::WRITER) {
            Ok(1) => Some(neocortex_sys::sem::last_pid(id, Self::WRITER).unwrap_or(-1)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    use neocortex_core::ErrorKind;
    use neocortex_sys::{sem, Errno};

    use super::*;
    use crate::sysv::RemoveOnDrop;
    use crate::SysvSemaphore;
    use neocortex_core::TestBench;

    fn create(cx: &LockContext<'_>, state: &SysvState) -> RwSemaphore {
        RwSemaphore::create(cx, state, &SemaphoreSettings::default()).expect("create")
    }

    /// (readers, writer, writers waiting or active)
    fn counts(lock: &RwSemaphore) -> (i32, i32, i32) {
        let get = |n| sem::get_value(lock.set_id(), n).expect("getval");
        (
            get(RwSemaphore::READERS),
            get(RwSemaphore::WRITER),
            get(RwSemaphore::WRITERS),
        )
    }

    fn destroy_and_check(cx: &LockContext<'_>, state: &SysvState, id: i32) {
        RwSemaphore::destroy(cx, state).expect("destroy");
        assert_eq!(sem::stat(id).expect_err("removed").errno, Errno::EINVAL);
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
    fn set_has_three_semaphores_with_the_given_mode() {
        let bench = TestBench::new(0x5257_0001);
        let cx = &bench.cx();
        let state = SysvState::zeroed();
        let settings = SemaphoreSettings {
            mode: Permission::OwnerAndGroup,
        };
        let lock = RwSemaphore::create(cx, &state, &settings).expect("create");
        let _cleanup = RemoveOnDrop(cx.key(), &state);
        let ds = sem::stat(lock.set_id()).expect("stat");
        assert_eq!(ds.nsems, 3);
        assert_eq!(ds.mode & 0o777, 0o660);
        assert_eq!(counts(&lock), (0, 0, 0));
        assert_eq!(
            RwSemaphore::attach(cx, &state).expect("attach").set_id(),
            lock.set_id()
        );
        assert_eq!(RwSemaphore::semaphore_sets_in(cx, &state), [lock.set_id()]);
        destroy_and_check(cx, &state, lock.set_id());
        let gone = RwSemaphore::attach(cx, &state).expect_err("removed");
        assert_eq!(gone.kind(), ErrorKind::LockRemoved, "{gone}");
    }

    #[test]
    fn attach_refuses_a_set_of_another_size() {
        let bench = TestBench::new(0x5257_0002);
        let cx = &bench.cx();
        let state = SysvState::zeroed();
        let one = SysvSemaphore::create(cx, &state, &SemaphoreSettings::default()).expect("create");
        let _cleanup = RemoveOnDrop(cx.key(), &state);
        let e = RwSemaphore::attach(cx, &state).expect_err("1 semaphore, not 3");
        assert_eq!(e.kind(), ErrorKind::LayoutMismatch, "{e}");
        assert!(e.to_string().contains("expected 3"), "{e}");
        destroy_and_check(cx, &state, one.set_id());
    }

    #[test]
    fn readers_share_and_keep_writers_out() {
        let bench = TestBench::new(0x5257_0003);
        let cx = &bench.cx();
        let state = SysvState::zeroed();
        let lock = create(cx, &state);
        let _cleanup = RemoveOnDrop(cx.key(), &state);
        lock.lock_shared(cx, &state, Wait::Never)
            .expect("first reader");
        lock.lock_shared(cx, &state, Wait::Never)
            .expect("second reader");
        assert_eq!(counts(&lock), (2, 0, 0));

        let busy = lock
            .lock(cx, &state, Wait::Never)
            .expect_err("readers inside");
        assert_eq!(busy.kind(), ErrorKind::WouldBlock, "{busy}");
        let started = Instant::now();
        let late = lock
            .lock(cx, &state, Wait::timeout(Duration::from_millis(50)))
            .expect_err("readers inside");
        assert_eq!(late.kind(), ErrorKind::Timeout, "{late}");
        assert!(started.elapsed() >= Duration::from_millis(50));
        // The writers that gave up withdrew their announcements: readers still get in.
        assert_eq!(counts(&lock), (2, 0, 0));
        lock.lock_shared(cx, &state, Wait::Never)
            .expect("third reader");

        for _ in 0..3 {
            // SAFETY: three shared holds were taken above in this process.
            unsafe { lock.unlock_shared(cx, &state) }.expect("unlock shared");
        }
        assert_eq!(counts(&lock), (0, 0, 0));
        lock.lock(cx, &state, Wait::Never)
            .expect("free for a writer");
        assert_eq!(counts(&lock), (0, 1, 1));
        // SAFETY: taken exclusively just above.
        unsafe { lock.unlock(cx, &state) }.expect("unlock");
        assert_eq!(counts(&lock), (0, 0, 0));
        destroy_and_check(cx, &state, lock.set_id());
    }

    #[test]
    fn a_writer_keeps_everyone_out_and_timeouts_hold() {
        let bench = TestBench::new(0x5257_0004);
        let cx = &bench.cx();
        let state = SysvState::zeroed();
        let lock = create(cx, &state);
        let _cleanup = RemoveOnDrop(cx.key(), &state);
        lock.lock(cx, &state, Wait::Never).expect("writer");

        let e = lock
            .lock_shared(cx, &state, Wait::Never)
            .expect_err("writer inside");
        assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
        let e = lock
            .lock(cx, &state, Wait::Never)
            .expect_err("writer inside");
        assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
        for exclusive in [false, true] {
            let timeout = Duration::from_millis(60);
            let started = Instant::now();
            let e = if exclusive {
                lock.lock(cx, &state, Wait::timeout(timeout))
            } else {
                lock.lock_shared(cx, &state, Wait::timeout(timeout))
            }
            .expect_err("writer inside");
            let waited = started.elapsed();
            assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
            assert!(waited >= timeout, "gave up after {waited:?}");
        }
        // Only the holder's announcement is left.
        assert_eq!(counts(&lock), (0, 1, 1));
        // SAFETY: taken exclusively above.
        unsafe { lock.unlock(cx, &state) }.expect("unlock");
        assert_eq!(counts(&lock), (0, 0, 0));
        destroy_and_check(cx, &state, lock.set_id());
    }

    #[test]
    fn a_waiting_writer_blocks_new_readers_then_gets_in() {
        let bench = TestBench::new(0x5257_0005);
        let cx = &bench.cx();
        let state = SysvState::zeroed();
        let lock = create(cx, &state);
        let _cleanup = RemoveOnDrop(cx.key(), &state);
        lock.lock_shared(cx, &state, Wait::Never).expect("reader");
        let writer_in = AtomicBool::new(false);
        std::thread::scope(|s| {
            let writer = s.spawn(|| {
                lock.lock(cx, &state, Wait::timeout(Duration::from_secs(10)))?;
                writer_in.store(true, Ordering::SeqCst);
                // SAFETY: taken exclusively just above, on this thread.
                unsafe { lock.unlock(cx, &state) }
            });
            eventually("the writer announces itself", || counts(&lock).2 == 1);
            assert_eq!(counts(&lock), (1, 0, 1));
            let e = lock
                .lock_shared(cx, &state, Wait::Never)
                .expect_err("a writer is waiting");
            assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
            let e = lock
                .lock_shared(cx, &state, Wait::timeout(Duration::from_millis(30)))
                .expect_err("a writer is waiting");
            assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
            assert!(
                !writer_in.load(Ordering::SeqCst),
                "writer got in past a reader"
            );
            // SAFETY: the shared hold taken before the scope.
            unsafe { lock.unlock_shared(cx, &state) }.expect("unlock shared");
            writer.join().expect("writer thread").expect("writer");
        });
        assert!(writer_in.load(Ordering::SeqCst));
        assert_eq!(counts(&lock), (0, 0, 0));
        lock.lock_shared(cx, &state, Wait::Never)
            .expect("readers again");
        // SAFETY: taken just above.
        unsafe { lock.unlock_shared(cx, &state) }.expect("unlock shared");
        destroy_and_check(cx, &state, lock.set_id());
    }

    #[test]
    fn readers_and_writers_in_threads_see_whole_updates() {
        let bench = TestBench::new(0x5257_0006);
        let cx = &bench.cx();
        let state = SysvState::zeroed();
        let lock = create(cx, &state);
        let _cleanup = RemoveOnDrop(cx.key(), &state);
        // Two words a writer changes one after the other; a reader must see them equal.
        let a = AtomicU64::new(0);
        let b = AtomicU64::new(0);
        let readers_inside = AtomicU64::new(0);
        let torn_reads = AtomicU64::new(0);
        let writers_beside_readers = AtomicU64::new(0);
        // Nothing below panics while holding the lock (a held lock would hang the others);
        // violations are counted and asserted at the end, and every wait is bounded.
        let patience = || Wait::timeout(Duration::from_secs(20));
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    for _ in 0..300 {
                        lock.lock(cx, &state, patience()).expect("lock");
                        if readers_inside.load(Ordering::SeqCst) != 0 {
                            writers_beside_readers.fetch_add(1, Ordering::SeqCst);
                        }
                        let v = a.load(Ordering::Relaxed);
                        a.store(v + 1, Ordering::Relaxed);
                        std::thread::yield_now();
                        b.store(v + 1, Ordering::Relaxed);
                        // SAFETY: taken exclusively just above, on this thread.
                        unsafe { lock.unlock(cx, &state) }.expect("unlock");
                    }
                });
            }
            for _ in 0..3 {
                s.spawn(|| {
                    for _ in 0..300 {
                        lock.lock_shared(cx, &state, patience())
                            .expect("lock shared");
                        readers_inside.fetch_add(1, Ordering::SeqCst);
                        let first = a.load(Ordering::Relaxed);
                        std::thread::yield_now();
                        if first != b.load(Ordering::Relaxed) {
                            torn_reads.fetch_add(1, Ordering::SeqCst);
                        }
                        readers_inside.fetch_sub(1, Ordering::SeqCst);
                        // SAFETY: taken shared just above, on this thread.
                        unsafe { lock.unlock_shared(cx, &state) }.expect("unlock shared");
                    }
                });
            }
        });
        assert_eq!(torn_reads.load(Ordering::SeqCst), 0, "torn reads");
        assert_eq!(writers_beside_readers.load(Ordering::SeqCst), 0);
        assert_eq!(a.load(Ordering::Relaxed), 900, "lost updates");
        assert_eq!(counts(&lock), (0, 0, 0));
        destroy_and_check(cx, &state, lock.set_id());
    }

    #[test]
    fn removal_wakes_a_waiter_with_lock_removed() {
        let bench = TestBench::new(0x5257_0007);
        let cx = &bench.cx();
        let state = SysvState::zeroed();
        let lock = create(cx, &state);
        let _cleanup = RemoveOnDrop(cx.key(), &state);
        let id = lock.set_id();
        lock.lock(cx, &state, Wait::Never).expect("writer");
        std::thread::scope(|s| {
            let reader = s.spawn(|| lock.lock_shared(cx, &state, Wait::Forever));
            // Removed while the reader waits (EIDRM) or before it asks (EINVAL): both are
            // `LockRemoved`, never a hang.
            std::thread::sleep(Duration::from_millis(30));
            destroy_and_check(cx, &state, id);
            let e = reader.join().expect("reader thread").expect_err("removed");
            assert_eq!(e.kind(), ErrorKind::LockRemoved, "{e}");
        });
        // Everything else now says so too, and a release is not a hang.
        let e = lock.lock(cx, &state, Wait::Never).expect_err("removed");
        assert_eq!(e.kind(), ErrorKind::LockRemoved);
        // SAFETY: the exclusive hold taken above (its set is gone; this must just fail).
        let e = unsafe { lock.unlock(cx, &state) }.expect_err("removed");
        assert_eq!(e.kind(), ErrorKind::LockRemoved);
        assert!(e.leftovers().is_empty());
    }
}

//! [`SysvSemaphore`]: a SysV semaphore with `SEM_UNDO`, released by the kernel the instant
//! its holder dies.

use neocortex_core::{Acquired, CortexResult, CortexSync, InPlace, LockContext, Permission, Wait};

use crate::settings::SemaphoreSettings;
use crate::sysv::{self, Op, SysvState};

/// An exclusive lock made of one SysV semaphore, taken and released with `SEM_UNDO`.
///
/// ```
/// use neocortex::{Cortex, SysvSemaphore};
///
/// let key = neocortex::random_key()?;
/// let cortex: Cortex<u64, SysvSemaphore> = Cortex::new(key, 1, None)?;
/// println!("ipcs -s shows set {}", cortex.raw_lock().set_id());
/// assert_eq!(cortex.read()?, 1);
/// # Ok::<(), neocortex::CortexError>(())
/// ```
///
/// - **Crash-safe at once:** when a holder's process dies (even by `SIGKILL`), the kernel
///   undoes its hold at that instant, so the lock never stays taken and no waiter has to
///   notice the death; the next guard reports
///   [`owner_died`](neocortex_core::CortexGuard::owner_died).
/// - **Per process:** the kernel's undo record belongs to a process, so a *thread* that ends
///   without unwinding (e.g. `pthread_exit`) while holding the lock keeps it held until its
///   process exits. Rust panics unwind and release it.
/// - **Cost:** two system calls per lock and unlock (see the benchmarks); for speed use
///   [`Semaphore`](crate::Semaphore), which is crash-safe too.
/// - **Portable:** SysV semaphores exist on every Unix, so this lock works where futexes do
///   not (it is what `Semaphore` means off Linux).
/// - The set is private (`IPC_PRIVATE`): its id is stored in the segment, so no second key
///   space is used and no foreign set can be picked up by key.
///
/// Interrupted waits (a signal, `SIGSTOP`/`SIGCONT`) are retried with the remaining time; a
/// set removed from outside gives [`CortexError::LockRemoved`](neocortex_core::CortexError::LockRemoved).
#[derive(Debug)]
pub struct SysvSemaphore {
    id: i32,
}

impl SysvSemaphore {
    /// The semaphore of the set: 1 when free, 0 when held.
    const SEM: u16 = 0;

    /// The semaphore set's id, as `ipcs -s` lists it. (Changing the set's values from
    /// outside the lock needs `unsafe` calls and breaks the lock.)
    pub fn set_id(&self) -> i32 {
        self.id
    }
}

// SAFETY: the contract, point by point:
// 1. Exclusion: the set's one semaphore starts at 1 and `lock` decrements it by 1, which the
//    kernel lets happen only while it is 1, so at most one holder in any process at a time;
//    `unlock` gives the 1 back. Shared holds are exclusive holds (SHARED is false).
// 2. Ordering: semop runs under the set's kernel lock, a full barrier between the releasing
//    and the acquiring process.
// 3. State: the set id is recorded in `SysvState` inside the segment; zero-filled means
//    "no set yet", which `attach` refuses and `destroy` skips.
// 4. Holder death: every operation uses SEM_UNDO, so the kernel adds a dead holder's 1 back.
// 5. Waits: `sysv::acquire` uses IPC_NOWAIT for `Wait::Never`, semtimedop with the time left
//    for a deadline, retries EINTR with the recomputed time left, and maps EIDRM/EINVAL to
//    `LockRemoved`.
unsafe impl CortexSync for SysvSemaphore {
    type Settings = SemaphoreSettings;
    type State = SysvState;
    type Access = InPlace;
    const KIND: &'static str = "sysv-semaphore";

    fn permission(settings: &SemaphoreSettings) -> Permission {
        settings.mode
    }

    fn create(
        cx: &LockContext<'_>,
        state: &SysvState,
        settings: &SemaphoreSettings,
    ) -> CortexResult<Self> {
        sysv::create(cx.key(), state, settings.mode, &[1]).map(|id| Self { id })
    }

    fn attach(cx: &LockContext<'_>, state: &SysvState) -> CortexResult<Self> {
        sysv::attach(cx.key(), state, 1).map(|id| Self { id })
    }

    fn lock(&self, cx: &LockContext<'_>, _state: &SysvState, wait: Wait) -> CortexResult<Acquired> {
        sysv::acquire(cx.key(), self.id, [Op::add(Self::SEM, -1)], wait)?;
        Ok(Acquired::Released)
    }

    unsafe fn unlock(&self, cx: &LockContext<'_>, _state: &SysvState) -> CortexResult<()> {
        sysv::apply_now("unlock", cx.key(), self.id, [Op::add(Self::SEM, 1)])
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
        // Held (0) by the process that last operated on it.
        match neocortex_sys::sem::get_value(id, Self::SEM) {
            Ok(0) => Some(neocortex_sys::sem::last_pid(id, Self::SEM).unwrap_or(-1)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use neocortex_core::{ErrorKind, TestBench};
    use neocortex_sys::{sem, Errno};

    use super::*;
    use crate::sysv::RemoveOnDrop;

    #[test]
    fn excludes_times_out_and_is_removed() {
        let bench = TestBench::new(0x5359_0101);
        let cx = bench.cx();
        let state = Box::new(SysvState::zeroed());
        let lock =
            SysvSemaphore::create(&cx, &state, &SemaphoreSettings::default()).expect("create");
        let _cleanup = RemoveOnDrop(cx.key(), &state);
        let id = lock.set_id();
        assert_eq!(sem::stat(id).expect("stat").nsems, 1);
        let other = SysvSemaphore::attach(&cx, &state).expect("attach");
        assert_eq!(other.set_id(), id);
        assert_eq!(SysvSemaphore::semaphore_sets_in(&cx, &state), [id]);
        assert_eq!(
            SysvSemaphore::semaphore_sets_in(&cx, &SysvState::zeroed()),
            [] as [i32; 0]
        );

        assert_eq!(
            lock.lock(&cx, &state, Wait::Never).expect("free"),
            Acquired::Released
        );
        assert_eq!(sem::get_value(id, 0).expect("getval"), 0);
        assert_eq!(
            SysvSemaphore::holder(&cx, &state),
            Some(std::process::id() as i32)
        );
        let busy = other.lock(&cx, &state, Wait::Never).expect_err("held");
        assert_eq!(busy.kind(), ErrorKind::WouldBlock);
        let started = Instant::now();
        let late = other
            .lock(&cx, &state, Wait::timeout(Duration::from_millis(50)))
            .expect_err("held");
        assert_eq!(late.kind(), ErrorKind::Timeout);
        assert!(started.elapsed() >= Duration::from_millis(50));
        // SAFETY: this process took the lock above and has not released it.
        unsafe { lock.unlock(&cx, &state) }.expect("unlock");
        assert_eq!(sem::get_value(id, 0).expect("getval"), 1);
        assert_eq!(SysvSemaphore::holder(&cx, &state), None);
        other
            .lock(&cx, &state, Wait::timeout(Duration::ZERO))
            .expect("a free lock, even with no time to wait");
        // SAFETY: taken just above through `other`.
        unsafe { other.unlock(&cx, &state) }.expect("unlock");

        SysvSemaphore::destroy(&cx, &state).expect("destroy");
        assert_eq!(sem::stat(id).expect_err("removed").errno, Errno::EINVAL);
        let removed = lock.lock(&cx, &state, Wait::Never).expect_err("removed");
        assert_eq!(removed.kind(), ErrorKind::LockRemoved);
    }

    #[test]
    fn threads_do_not_lose_updates() {
        use std::sync::atomic::{AtomicU64, Ordering};
        let bench = TestBench::new(0x5359_0102);
        let cx = bench.cx();
        let state = SysvState::zeroed();
        let lock =
            SysvSemaphore::create(&cx, &state, &SemaphoreSettings::default()).expect("create");
        let _cleanup = RemoveOnDrop(cx.key(), &state);
        let counter = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    let cx = bench.cx();
                    for _ in 0..500 {
                        lock.lock(&cx, &state, Wait::Forever).expect("lock");
                        // A non-atomic increment: only the lock keeps it from losing updates.
                        let v = counter.load(Ordering::Relaxed);
                        std::thread::yield_now();
                        counter.store(v + 1, Ordering::Relaxed);
                        // SAFETY: taken just above on this thread, in this process.
                        unsafe { lock.unlock(&cx, &state) }.expect("unlock");
                    }
                });
            }
        });
        assert_eq!(counter.load(Ordering::Relaxed), 2000);
        let id = lock.set_id();
        SysvSemaphore::destroy(&cx, &state).expect("destroy");
        assert_eq!(sem::stat(id).expect_err("removed").errno, Errno::EINVAL);
    }
}

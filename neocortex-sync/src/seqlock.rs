//! [`SeqLock`]: wait-free readers for a value one writer updates at a high rate.

use neocortex_core::{
    Acquired, CortexResult, CortexSync, LockContext, Optimistic, Permission, Wait,
};

use crate::settings::SemaphoreSettings;
use crate::Semaphore;

/// A sequence lock: readers copy the value without locking and never write shared memory;
/// writers exclude each other with a [`Semaphore`] (the same recovery from a dead writer).
///
/// `Cortex<T, SeqLock>::read()` reads the segment's change counter, copies the value word by
/// word with atomic loads, and keeps the copy only if the counter was even and did not move
/// (else it copies again). A writer makes the counter odd, stores the value with atomic
/// stores, and makes it even. So readers never block a writer and never take a cache line
/// away from it, and a reader never returns a value that a write overlapped (a torn value).
///
/// The value is only ever touched through atomics, so there are no guards: `lock()` and
/// `lock_shared()` do not exist for a `SeqLock` segment (the type system refuses them), and
/// [`read`](neocortex_core::Cortex::read), [`write`](neocortex_core::Cortex::write) and
/// [`update`](neocortex_core::Cortex::update) (which works on a copy and writes it back) are
/// the ways in. A `read()` copies the whole value: keep `SeqLock` values small enough to copy
/// (up to a few KiB).
///
/// ```
/// use neocortex::{Cortex, SeqLock};
///
/// let key = neocortex::random_key()?;
/// let quote: Cortex<[f64; 2], SeqLock> = Cortex::new(key, [100.0, 100.5], None)?;
/// quote.write([100.25, 100.75])?;               // the writer
/// let reader: Cortex<[f64; 2], SeqLock> = Cortex::attach(key)?;
/// assert_eq!(reader.read()?, [100.25, 100.75]); // readers never lock
/// # Ok::<(), neocortex::CortexError>(())
/// ```
///
/// # When a writer dies
///
/// A writer killed in the middle of a write leaves the counter odd. A reader that finds it
/// odd waits while the writer's member token is alive (asking the kernel every millisecond)
/// and gets [`ErrorKind::OwnerDied`](neocortex_core::ErrorKind::OwnerDied) as soon as it is
/// not: never a torn value, never a hang. The next `write()` takes the writer lock over and
/// repairs; `update()` refuses a torn value with `OwnerDied`.
#[derive(Debug)]
pub struct SeqLock {
    writers: Semaphore,
}

// SAFETY: writers are excluded by the inner Semaphore, which upholds the contract (points
// 1–6) for `lock`/`unlock`; `Access = Optimistic` tells Cortex that readers do not lock, so
// Cortex touches the value only through atomics (its sequence protocol) and hands out no
// references into it. `lock_shared` is never called by Cortex for optimistic locks; it
// defaults to the exclusive lock, which is still sound.
unsafe impl CortexSync for SeqLock {
    type Settings = SemaphoreSettings;
    type State = <Semaphore as CortexSync>::State;
    type Access = Optimistic;
    const KIND: &'static str = "seqlock";
    const DETECTS_DEAD_HOLDERS: bool = <Semaphore as CortexSync>::DETECTS_DEAD_HOLDERS;

    fn permission(settings: &SemaphoreSettings) -> Permission {
        settings.mode
    }

    fn create(
        cx: &LockContext<'_>,
        state: &Self::State,
        settings: &SemaphoreSettings,
    ) -> CortexResult<Self> {
        Semaphore::create(cx, state, settings).map(|writers| Self { writers })
    }

    fn attach(cx: &LockContext<'_>, state: &Self::State) -> CortexResult<Self> {
        Semaphore::attach(cx, state).map(|writers| Self { writers })
    }

    #[inline]
    fn lock(
        &self,
        cx: &LockContext<'_>,
        state: &Self::State,
        wait: Wait,
    ) -> CortexResult<Acquired> {
        self.writers.lock(cx, state, wait)
    }

    #[inline]
    unsafe fn unlock(&self, cx: &LockContext<'_>, state: &Self::State) -> CortexResult<()> {
        // SAFETY: forwarded: the caller holds the writer lock through this handle.
        unsafe { self.writers.unlock(cx, state) }
    }

    fn destroy(cx: &LockContext<'_>, state: &Self::State) -> CortexResult<()> {
        Semaphore::destroy(cx, state)
    }

    fn holder(cx: &LockContext<'_>, state: &Self::State) -> Option<i32> {
        Semaphore::holder(cx, state)
    }
}

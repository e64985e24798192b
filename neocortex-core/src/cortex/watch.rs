//! Waiting for a change: the version counter in the header, and a cross-process wake-up.
//!
//! The header's change counter (twice the version) moves when an exclusive access that may
//! have changed the value ends. A waiter counts itself in the header's sleepers hint, checks
//! the counter once more, and sleeps on it (a shared futex on Linux, keyed by the page, so
//! every process mapping the segment shares it). A writer moves the counter with a
//! sequentially consistent read-modify-write and then looks at the hint: either the writer
//! sees the waiter counted, and wakes it, or the waiter sees the new counter and does not
//! sleep. A writer makes no system call while the hint is zero.
//!
//! A waiter that is killed while counted leaves the hint too high: writers then make a
//! spare wake-up call. It cannot last: when a wake finds nobody asleep, the writer asks the
//! kernel how many watcher handles are alive (each registered once with `SEM_UNDO`, so a
//! killed one is uncounted by the kernel), and when none is, clears the hint.

use std::sync::atomic::Ordering;
use std::time::Duration;

use neocortex_sys::{shm, Errno};

use super::Cortex;
use crate::error::{CortexError, CortexResult, IntoOs};
use crate::header::Header;
use crate::marker::{ShmSafe, Value};
use crate::members;
use crate::sync::{Access, CortexSync, Remaining, Wait};

/// How long a waiter sleeps before it checks whether the segment was removed from outside
/// (`ipcrm`, systemd `RemoveIPC`), which wakes nobody.
const CHECK_EVERY: Duration = Duration::from_millis(200);

/// Marks a removed segment in `shm_perm.mode`.
const SHM_DEST: u32 = 0o1000;

impl<T: ?Sized + Value, L: CortexSync> Cortex<T, L> {
    /// The value's version: how many exclusive accesses that may have changed it have ended
    /// (`write`, `update`, and guards through which the value was borrowed mutably). One
    /// atomic load.
    ///
    /// ```
    /// use neocortex::{Cortex, Semaphore};
    ///
    /// let key = neocortex::random_key()?;
    /// let cortex: Cortex<u64, Semaphore> = Cortex::new(key, 0, None)?;
    /// let before = cortex.version();
    /// cortex.write(5)?;
    /// let _ = cortex.read()?; // reading changes nothing
    /// assert_eq!(cortex.version(), before + 1);
    /// # Ok::<(), neocortex::CortexError>(())
    /// ```
    #[inline]
    pub fn version(&self) -> u64 {
        self.header().seq().load(Ordering::Acquire) >> 1
    }

    /// Waits until the version differs from `since`, and returns it (at once if it already
    /// differs). `Duration::MAX` waits without limit.
    ///
    /// Works with every lock (the counter is in the segment's header) and from every process
    /// attached to the segment. Interrupted waits are resumed with the time left.
    ///
    /// ```
    /// use std::time::Duration;
    /// use neocortex::{Cortex, Semaphore};
    ///
    /// let key = neocortex::random_key()?;
    /// let cortex: Cortex<u64, Semaphore> = Cortex::new(key, 0, None)?;
    /// let seen = cortex.version();
    /// std::thread::scope(|s| {
    ///     s.spawn(|| cortex.write(1));
    ///     let now = cortex.wait_for_change(seen, Duration::from_secs(10))?;
    ///     assert!(now > seen);
    ///     Ok::<(), neocortex::CortexError>(())
    /// })?;
    /// # Ok::<(), neocortex::CortexError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `Timeout` when nothing changed in time (never before `timeout`); `LockRemoved` as soon
    /// as the segment is removed by its owner (or within a fraction of a second when removed
    /// from outside); `LimitReached` when every member slot is taken.
    pub fn wait_for_change(&self, since: u64, timeout: Duration) -> CortexResult<u64> {
        let wait = Wait::timeout(timeout);
        let header = self.header();
        let seq = header.seq();
        let now = seq.load(Ordering::SeqCst) >> 1;
        if header.is_removed() {
            return Err(CortexError::lock_removed(self.key(), None));
        }
        if now != since {
            return Ok(now);
        }
        self.members.watch(self.key())?;
        let mut slept = Duration::ZERO;
        loop {
            if header.is_removed() {
                return Err(CortexError::lock_removed(self.key(), None));
            }
            let sleepers = header.sleepers();
            sleepers.fetch_add(1, Ordering::SeqCst);
            let s = seq.load(Ordering::SeqCst);
            // A removal moves the counter too, after marking the header: having seen the move
            // (SeqCst), this load sees the mark.
            if header.is_removed() {
                sleepers.fetch_sub(1, Ordering::SeqCst);
                return Err(CortexError::lock_removed(self.key(), None));
            }
            if s >> 1 != since {
                sleepers.fetch_sub(1, Ordering::SeqCst);
                return Ok(s >> 1);
            }
            let nap = match wait.remaining() {
                Remaining::For(left) => left.min(CHECK_EVERY),
                Remaining::Forever => CHECK_EVERY,
                Remaining::NoWait | Remaining::Expired => {
                    sleepers.fetch_sub(1, Ordering::SeqCst);
                    return Err(CortexError::Timeout {
                        key: self.key(),
                        after: timeout,
                        waiting_for: "a change",
                    });
                }
            };
            let started = std::time::Instant::now();
            let woken = sleep_on(seq, s, nap);
            sleepers.fetch_sub(1, Ordering::SeqCst);
            woken.map_err(|e| CortexError::clean("wait for a change", self.key(), e.os()))?;
            slept += started.elapsed();
            if slept >= CHECK_EVERY {
                slept = Duration::ZERO;
                self.check_not_removed_from_outside()?;
            }
            // Woken, timed out or interrupted: the top of the loop looks again.
        }
    }

    /// A [`Watcher`] that starts from the current version.
    ///
    /// ```
    /// use std::time::Duration;
    /// use neocortex::{Cortex, ErrorKind, Semaphore};
    ///
    /// let key = neocortex::random_key()?;
    /// let cortex: Cortex<u64, Semaphore> = Cortex::new(key, 0, None)?;
    /// let mut watcher = cortex.watch();
    /// cortex.write(7)?;
    /// assert_eq!(watcher.next_value(Duration::from_secs(1))?, 7);
    /// let idle = watcher.next_value(Duration::from_millis(10)).unwrap_err();
    /// assert_eq!(idle.kind(), ErrorKind::Timeout);
    /// # Ok::<(), neocortex::CortexError>(())
    /// ```
    pub fn watch(&self) -> Watcher<'_, T, L> {
        Watcher {
            cortex: self,
            seen: self.version(),
        }
    }

    /// Whether the kernel says the segment was removed (by `ipcrm` or systemd's
    /// `RemoveIPC`: nobody marks the header then).
    fn check_not_removed_from_outside(&self) -> CortexResult<()> {
        match shm::stat(self.map.id) {
            Ok(ds) if u32::from(ds.mode) & SHM_DEST == 0 => Ok(()),
            Ok(_) => Err(CortexError::lock_removed(self.key(), None)),
            Err(e) if e.errno == Errno::EINVAL || e.errno == Errno::EIDRM => {
                Err(CortexError::lock_removed(self.key(), Some(e.os())))
            }
            Err(_) => Ok(()),
        }
    }

    /// The end of an exclusive access that may have changed the value: moves the counter by
    /// one version. Call under the lock; wake the waiters after releasing it.
    #[inline]
    pub(crate) fn note_change(&self) {
        self.header().seq().fetch_add(2, Ordering::SeqCst);
    }

    /// Wakes every waiter if any may be asleep (no system call otherwise). Call after the
    /// counter moved.
    #[inline]
    pub(crate) fn wake_watchers(&self) {
        let sleepers = self.header().sleepers().load(Ordering::SeqCst);
        if sleepers != 0 {
            self.wake_sleepers(sleepers);
        }
    }

    #[cold]
    #[inline(never)]
    fn wake_sleepers(&self, seen: u32) {
        match wake_all(self.header().seq()) {
            Ok(0) => {
                // Nobody was asleep: a waiter about to sleep (it will see the new counter),
                // or a count left by a waiter that was killed. If no watcher handle is alive,
                // the count is stale: clear it (unless it moved meanwhile).
                if self.members.should_audit() && members::watchers(self.members.set()) == Ok(0) {
                    let _ = self.header().sleepers().compare_exchange(
                        seen,
                        0,
                        Ordering::SeqCst,
                        Ordering::Relaxed,
                    );
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(key = self.key(), error = %e, "could not wake the waiters"),
        }
    }

    /// On removal: moves the counter and wakes every waiter, who then sees the removal.
    pub(crate) fn wake_watchers_for_removal(&self) {
        wake_for_removal(self.key(), self.header());
    }
}

/// On removal (by the owner, or of a stale or forced segment): moves the counter and wakes
/// every waiter, who then sees the header's removed mark.
pub(crate) fn wake_for_removal(key: i32, header: &Header) {
    header.seq().fetch_add(2, Ordering::SeqCst);
    // As in `wake_watchers`: a waiter counts itself in `sleepers` before it checks the
    // counter and sleeps, and both sides use SeqCst, so with no sleeper counted nobody can
    // be asleep on the old counter.
    if header.sleepers().load(Ordering::SeqCst) == 0 {
        return;
    }
    if let Err(e) = wake_all(header.seq()) {
        tracing::warn!(key, error = %e, "could not wake the waiters");
    }
}

#[cfg(target_os = "linux")]
fn sleep_on(
    seq: &std::sync::atomic::AtomicU64,
    seen: u64,
    nap: Duration,
) -> Result<(), neocortex_sys::SysError> {
    match neocortex_sys::futex::wait_low_half(seq, seen as u32, Some(nap)) {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.errno, Errno::EAGAIN | Errno::EINTR | Errno::ETIMEDOUT) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(target_os = "linux")]
fn wake_all(seq: &std::sync::atomic::AtomicU64) -> Result<u32, neocortex_sys::SysError> {
    neocortex_sys::futex::wake_low_half(seq, u32::MAX)
}

/// Without futexes, a waiter polls.
#[cfg(not(target_os = "linux"))]
fn sleep_on(
    seq: &std::sync::atomic::AtomicU64,
    seen: u64,
    nap: Duration,
) -> Result<(), neocortex_sys::SysError> {
    let until = std::time::Instant::now() + nap;
    while seq.load(Ordering::SeqCst) == seen && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_micros(500).min(nap));
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn wake_all(_seq: &std::sync::atomic::AtomicU64) -> Result<u32, neocortex_sys::SysError> {
    Ok(1)
}

/// Remembers the last version it saw, so that a loop can wait for the next change and read
/// it: `loop { let v = watcher.next_value(timeout)?; ... }`.
///
/// Made by [`Cortex::watch`]. Each change is seen at least once; changes that come faster
/// than the loop reads are seen as one (the latest value).
#[derive(Debug)]
#[must_use = "a watcher does nothing until waited on"]
pub struct Watcher<'a, T: ?Sized + Value, L: CortexSync> {
    cortex: &'a Cortex<T, L>,
    seen: u64,
}

impl<T: ?Sized + Value, L: CortexSync> Watcher<'_, T, L> {
    /// The version this watcher saw last.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// Whether the value changed since the version last seen (one atomic load).
    pub fn has_changed(&self) -> bool {
        self.cortex.version() != self.seen
    }

    /// Waits for a version other than the last one seen, and remembers it.
    ///
    /// # Errors
    ///
    /// As [`Cortex::wait_for_change`].
    pub fn changed(&mut self, timeout: Duration) -> CortexResult<u64> {
        let now = self.cortex.wait_for_change(self.seen, timeout)?;
        self.seen = now;
        Ok(now)
    }
}

impl<T: ShmSafe + Copy, L: CortexSync> Watcher<'_, T, L> {
    /// Waits for the next change, then reads the value; the version remembered is the one
    /// the value read belongs to.
    ///
    /// # Errors
    ///
    /// As [`Cortex::wait_for_change`] and [`Cortex::read`].
    pub fn next_value(&mut self, timeout: Duration) -> CortexResult<T> {
        self.cortex.wait_for_change(self.seen, timeout)?;
        let (value, version) = self.cortex.read_versioned()?;
        self.seen = version;
        Ok(value)
    }
}

impl<T: ShmSafe + Copy, L: CortexSync> Cortex<T, L> {
    /// The value and the version it belongs to, read together.
    fn read_versioned(&self) -> CortexResult<(T, u64)> {
        if <L::Access as Access>::OPTIMISTIC {
            return self.read_optimistic_versioned();
        }
        let guard = crate::guard::CortexReadGuard::acquire(self, Wait::Forever)?;
        guard.refuse_if_inconsistent()?;
        // Under the lock the version cannot move: writers move it before they release.
        Ok((*guard, self.version()))
    }
}

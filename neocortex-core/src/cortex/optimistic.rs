//! The optimistic (sequence lock) access paths, for locks whose `Access` is `Optimistic`:
//! readers never lock and never write shared memory; writers lock among themselves.
//!
//! The sequence is the header's change counter. A writer, holding the lock, makes it odd,
//! stores the value word by word with atomic stores, and makes it even again; a reader
//! loads it, copies the value word by word with atomic loads, and keeps the copy only if the
//! counter was even and has not moved. So the value is only ever touched through atomics
//! (no data race in Rust's memory model, whatever the timing), and a reader never returns a
//! value that a write overlapped.
//!
//! A writer that dies mid-write leaves the counter odd. A reader that finds it odd waits
//! for the writer while the writer's member token is alive, and reports `OwnerDied` as soon
//! as it is not; the next `write()` (which takes the lock over) repairs.

use std::mem::size_of;
use std::sync::atomic::{fence, AtomicU64, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use neocortex_sys::process::current_pid;

use super::Cortex;
use crate::error::{CortexError, CortexResult};
use crate::marker::{ShmSafe, Value};
use crate::members::{self, Token};
use crate::sync::{CortexSync, Wait};

/// Spins on an odd counter before sleeping between looks.
const SPINS: u32 = 200;
/// How often a reader blocked by a writer asks whether the writer is alive.
const LIVENESS_EVERY: Duration = Duration::from_millis(1);

/// Copies `len` bytes from shared memory at `src` to `dst` with atomic loads: 8-byte words,
/// then single bytes for the tail.
///
/// # Safety
///
/// `src` is 8-byte aligned and `len` bytes from it lie in a live mapping that is only
/// accessed through atomics of the same granularity at the same offsets (this function and
/// [`store_bytes`]); `dst` is valid for `len` bytes of writes and does not overlap `src`.
unsafe fn load_bytes(src: *const u8, dst: *mut u8, len: usize) {
    let words = len / 8;
    for i in 0..words {
        let from = src.wrapping_add(8 * i).cast::<AtomicU64>();
        // SAFETY: in bounds and 8-aligned (offset 8*i from an 8-aligned start); an AtomicU64
        // may be built over u64-sized memory that is only accessed atomically (caller's
        // promise).
        let word = unsafe { &*from }.load(Ordering::Relaxed);
        // SAFETY: `dst` is valid for `len` bytes; no alignment is assumed.
        unsafe { dst.wrapping_add(8 * i).cast::<u64>().write_unaligned(word) };
    }
    for i in 8 * words..len {
        // SAFETY: in bounds; a byte is always aligned.
        let byte = unsafe { &*src.wrapping_add(i).cast::<AtomicU8>() }.load(Ordering::Relaxed);
        // SAFETY: in bounds of `dst`.
        unsafe { dst.wrapping_add(i).write(byte) };
    }
}

/// Copies `len` bytes from `src` to shared memory at `dst` with atomic stores, as
/// [`load_bytes`] reads them.
///
/// # Safety
///
/// As [`load_bytes`] with the roles swapped; every one of the `len` bytes at `src` is
/// initialised (ShmSafe types have no padding).
unsafe fn store_bytes(src: *const u8, dst: *mut u8, len: usize) {
    let words = len / 8;
    for i in 0..words {
        // SAFETY: `src` holds `len` initialised bytes; no alignment is assumed.
        let word = unsafe { src.wrapping_add(8 * i).cast::<u64>().read_unaligned() };
        let to = dst.wrapping_add(8 * i).cast::<AtomicU64>();
        // SAFETY: in bounds and 8-aligned; only ever accessed atomically.
        unsafe { &*to }.store(word, Ordering::Relaxed);
    }
    for i in 8 * words..len {
        // SAFETY: in bounds of `src`, initialised.
        let byte = unsafe { src.wrapping_add(i).read() };
        // SAFETY: in bounds; a byte is always aligned.
        unsafe { &*dst.wrapping_add(i).cast::<AtomicU8>() }.store(byte, Ordering::Relaxed);
    }
}

/// The exclusive hold of an optimistic writer; released on drop (also when the caller's
/// closure panics, which leaves the shared value untouched: it works on a copy).
struct WriteHold<'a, T: ?Sized + Value, L: CortexSync> {
    cortex: &'a Cortex<T, L>,
    pid: i32,
    /// This writer's member token, named in the header while it writes.
    token: Token,
    /// The value was left half-written by a writer that died: its pid, -1 when unknown.
    torn: Option<i32>,
    /// A new value was published: wake the waiters once the lock is released.
    published: bool,
}

impl<'a, T: ?Sized + Value, L: CortexSync> WriteHold<'a, T, L> {
    fn acquire(cortex: &'a Cortex<T, L>) -> CortexResult<Self> {
        let cx = cortex.lock_cx();
        // Claim the token first: readers that find the counter odd check it.
        let token = cx.token()?;
        let state = cortex.lock_state();
        let acquired = cortex.raw_lock().lock(&cx, state, Wait::Forever)?;
        let header = cortex.header();
        crate::guard::refuse_if_removed(header, cx.key(), || {
            // SAFETY: taken just above by this thread.
            let _ = unsafe { cortex.raw_lock().unlock(&cx, state) };
        })?;
        let torn = (header.seq().load(Ordering::Relaxed) & 1 == 1).then(|| {
            let dead = Token::from_raw(header.writer().load(Ordering::Relaxed))
                .and_then(|t| cx.pid_of(t))
                .unwrap_or(-1);
            header.mark_inconsistent(dead);
            tracing::warn!(
                key = cx.key(),
                dead_pid = dead,
                ?acquired,
                "a writer died in the middle of a write; the value is torn until written whole"
            );
            dead
        });
        // The header names this writer only once it starts writing (`publish`): a writer
        // that finds the value torn and gives up must leave the dead writer named there, so
        // readers keep reporting the death rather than waiting for a live process.
        Ok(Self {
            cortex,
            pid: current_pid(),
            token,
            torn,
            published: false,
        })
    }
}

impl<T: ?Sized + Value, L: CortexSync> Drop for WriteHold<'_, T, L> {
    fn drop(&mut self) {
        if current_pid() != self.pid {
            return;
        }
        let cx = self.cortex.lock_cx();
        // SAFETY: this hold took the lock exclusively in this process.
        if let Err(e) = unsafe { self.cortex.raw_lock().unlock(&cx, self.cortex.lock_state()) } {
            tracing::warn!(error = %e, "releasing the writer lock failed");
        }
        if self.published {
            self.cortex.wake_watchers();
        }
    }
}

impl<T: ?Sized + Value, L: CortexSync> Cortex<T, L> {
    /// The bytes of the value in the segment.
    fn value_bytes(&self) -> (*mut u8, usize) {
        let ptr = self.map.at::<u8>(Self::OFFSETS.data_offset).as_ptr();
        (ptr, self.len * size_of::<T::Elem>())
    }

    /// Stores `src` (the value's bytes) as a writer holding `hold`: counter odd, atomic
    /// stores, counter even; wakes the waiters.
    fn publish(&self, hold: &mut WriteHold<'_, T, L>, src: *const u8) {
        let header = self.header();
        header.writer().store(hold.token.raw(), Ordering::Relaxed);
        let seq = header.seq();
        let s = seq.load(Ordering::Relaxed);
        // Release: a reader that sees the odd counter (Acquire) sees this writer named above.
        seq.store(s | 1, Ordering::Release);
        // And the value's stores below stay after the odd counter for every reader.
        fence(Ordering::Release);
        let (dst, len) = self.value_bytes();
        // SAFETY: `dst` is the value's 64-byte aligned region of `len` bytes, only accessed
        // through `load_bytes`/`store_bytes`; `src` holds `len` initialised bytes (a whole
        // value of ShmSafe elements, which have no padding).
        unsafe { store_bytes(src, dst, len) };
        if hold.torn.is_some() {
            header.mark_consistent();
        }
        // Even again: a release, and the store-load barrier the waiters' handshake needs.
        seq.fetch_add(1, Ordering::SeqCst);
        hold.published = true;
    }

    /// Copies the value into `dst` (`len` bytes), retrying until no write overlapped;
    /// returns the version the copy belongs to.
    fn copy_consistent(&self, dst: *mut u8) -> CortexResult<u64> {
        let header = self.header();
        let seq = header.seq();
        let (src, len) = self.value_bytes();
        let mut blocked: Option<Blocked> = None;
        loop {
            let s1 = seq.load(Ordering::Acquire);
            if s1 & 1 == 1 {
                self.wait_for_writer(s1, &mut blocked)?;
                continue;
            }
            // SAFETY: `src` is the value's region (see `publish`); `dst` is the caller's
            // buffer of `len` bytes.
            unsafe { load_bytes(src, dst, len) };
            fence(Ordering::Acquire);
            if seq.load(Ordering::Relaxed) == s1 {
                if header.is_removed() {
                    return Err(CortexError::lock_removed(self.key(), None));
                }
                if let Some(pid) = header.dead_holder() {
                    return Err(CortexError::OwnerDied {
                        key: self.key(),
                        pid,
                    });
                }
                return Ok(s1 >> 1);
            }
        }
    }

    /// The counter is odd: a writer is at work. Spin, then sleep a little, asking every
    /// millisecond whether the writer is alive; `OwnerDied` once it is not.
    #[cold]
    fn wait_for_writer(&self, odd: u64, blocked: &mut Option<Blocked>) -> CortexResult<()> {
        let header = self.header();
        if header.is_removed() {
            return Err(CortexError::lock_removed(self.key(), None));
        }
        let b = match blocked {
            Some(b) if b.seq == odd => b,
            _ => blocked.insert(Blocked {
                seq: odd,
                spins: 0,
                since: Instant::now(),
                checked: None,
            }),
        };
        b.spins += 1;
        if b.spins <= SPINS {
            std::hint::spin_loop();
            return Ok(());
        }
        if b.checked.map_or(true, |at| at.elapsed() >= LIVENESS_EVERY) {
            b.checked = Some(Instant::now());
            let writer = Token::from_raw(header.writer().load(Ordering::Relaxed));
            let alive = match writer {
                // An odd counter always has a writer's token beside it; without one, nobody
                // will ever make it even.
                None => false,
                Some(token) => members::is_alive(self.members.set(), token)
                    .map_err(|e| members::members_error("read", self.key(), e))?,
            };
            if !alive {
                return Err(CortexError::OwnerDied {
                    key: self.key(),
                    pid: writer
                        .and_then(|t| self.map.members().pid_of(t))
                        .unwrap_or(-1),
                });
            }
        }
        let nap = if b.since.elapsed() < Duration::from_millis(10) {
            20
        } else {
            200
        };
        std::thread::sleep(Duration::from_micros(nap));
        Ok(())
    }
}

/// A reader's wait for one writer.
struct Blocked {
    /// The odd counter the reader waits to change.
    seq: u64,
    spins: u32,
    since: Instant,
    /// When the writer's liveness was last asked.
    checked: Option<Instant>,
}

impl<T: ShmSafe, L: CortexSync> Cortex<T, L> {
    /// `read()` of an optimistic lock (see `copy_out` for where the copy lands).
    #[inline]
    pub(super) fn read_optimistic(&self) -> CortexResult<T>
    where
        T: Copy,
    {
        super::copy_out::copied(|dst: *mut T| self.copy_consistent(dst.cast()).map(drop))
    }

    /// `read()` of an optimistic lock, with the version the value belongs to.
    pub(super) fn read_optimistic_versioned(&self) -> CortexResult<(T, u64)>
    where
        T: Copy,
    {
        let mut version = 0;
        let value = super::copy_out::copied(|dst: *mut T| {
            version = self.copy_consistent(dst.cast())?;
            Ok(())
        })?;
        Ok((value, version))
    }

    /// `write()` of an optimistic lock.
    pub(super) fn write_optimistic(&self, value: &T) -> CortexResult<()> {
        let mut hold = WriteHold::acquire(self)?;
        self.publish(&mut hold, std::ptr::from_ref(value).cast());
        Ok(())
    }
}

impl<T: ?Sized + Value, L: CortexSync> Cortex<T, L> {
    /// `update()` of an optimistic lock: on a copy, written back whole.
    pub(super) fn update_optimistic<R>(&self, f: impl FnOnce(&mut T) -> R) -> CortexResult<R> {
        let mut hold = WriteHold::acquire(self)?;
        if let Some(pid) = hold.torn {
            return Err(CortexError::OwnerDied {
                key: self.key(),
                pid,
            });
        }
        let (src, len) = self.value_bytes();
        let mut copy: Vec<T::Elem> = Vec::with_capacity(self.len);
        // SAFETY: the writer lock is held, so nobody else stores into the value; `copy` has
        // room for `len` bytes (self.len elements).
        unsafe { load_bytes(src, copy.as_mut_ptr().cast(), len) };
        // SAFETY: the `self.len` elements were just initialised from the segment's bytes,
        // and any bytes are a valid element (ShmSafe).
        unsafe { copy.set_len(self.len) };
        let elems =
            std::ptr::NonNull::new(copy.as_mut_ptr()).unwrap_or(std::ptr::NonNull::dangling());
        // SAFETY: `elems` points to `self.len` initialised elements owned by `copy`, which
        // outlives the reference and is not otherwise touched meanwhile.
        let value = unsafe { T::from_elems(elems, self.len).as_mut() };
        let result = f(value);
        self.publish(&mut hold, copy.as_ptr().cast());
        Ok(result)
    }

    /// Copies the value into `out` as `read()` does, for slices and values alike.
    pub(super) fn read_optimistic_into(&self, out: &mut [T::Elem]) -> CortexResult<()> {
        debug_assert_eq!(out.len(), self.len);
        self.copy_consistent(out.as_mut_ptr().cast()).map(drop)
    }

    /// Writes `src` (the value's elements) as `write()` does, for slices and values alike.
    pub(super) fn write_optimistic_from(&self, src: &[T::Elem]) -> CortexResult<()> {
        debug_assert_eq!(src.len(), self.len);
        let mut hold = WriteHold::acquire(self)?;
        self.publish(&mut hold, src.as_ptr().cast());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_through_word_and_byte_copies() {
        // Shared memory as the copies see it: atomics (interior mutability), 8-aligned.
        let shared = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];
        let src: Vec<u8> = (1..=19).collect();
        let base = shared.as_ptr().cast::<u8>().cast_mut();
        // SAFETY: `shared` is 8-aligned atomics, 24 >= 19 bytes, only touched through these
        // copies.
        unsafe { store_bytes(src.as_ptr(), base, 19) };
        let mut back = [0u8; 19];
        // SAFETY: as above; `back` has 19 bytes.
        unsafe { load_bytes(base, back.as_mut_ptr(), 19) };
        assert_eq!(&back[..], &src[..]);
        // SAFETY: as above.
        let tail = unsafe { &*base.wrapping_add(19).cast::<AtomicU8>() }.load(Ordering::Relaxed);
        assert_eq!(tail, 0, "nothing past the end is written");
    }
}

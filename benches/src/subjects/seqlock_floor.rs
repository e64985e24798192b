//! A bare sequence lock in a SysV segment: the floor of `SeqLock`. One writer, no writer
//! lock, no header: the counter and the value's first words share a cache line, the
//! writer makes the counter odd, stores the words and makes it even; a reader copies the
//! words between two loads of an even, unchanged counter. Everything shared is touched only
//! through atomics (word by word), as `SeqLock` does it.

use std::hint::black_box;
use std::sync::atomic::{fence, AtomicU64, Ordering};

use super::{show, timed, Case, Payload, Setup, PAGE};
use crate::cleanup::{key_for, Leftover};
use crate::contended::{Pair, WRITER};
use crate::floors::SysvSegment;
use crate::measure::Batch;

/// A counter and `words` 8-byte words after it, at the start of a SysV segment. Forked
/// workers use the mapping they inherit.
struct BareSeq {
    seg: SysvSegment,
    words: usize,
}

impl BareSeq {
    fn new(words: usize) -> Result<Self, String> {
        let seg = SysvSegment::create(key_for(Leftover::RawKey), 8 * (1 + words)).map_err(show)?;
        // The kernel zero-fills the segment: counter 0 (even), value all zero.
        Ok(Self { seg, words })
    }

    /// The counter and the value's words, as atomics.
    fn words(&self) -> (&AtomicU64, &[AtomicU64]) {
        let base = self.seg.as_ptr().cast::<AtomicU64>();
        // SAFETY: the segment holds 1 + `words` 8-byte words from its page-aligned start,
        // lives as long as `self`, and is only ever accessed through these atomics.
        let all = unsafe { std::slice::from_raw_parts(base.cast_const(), 1 + self.words) };
        (&all[0], &all[1..])
    }

    /// The single writer's store of `value` (as many words as the value has).
    fn write(&self, value: &[u64]) {
        let (seq, words) = self.words();
        let s = seq.load(Ordering::Relaxed);
        seq.store(s.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        for (w, v) in words.iter().zip(value) {
            w.store(*v, Ordering::Relaxed);
        }
        seq.store(s.wrapping_add(2), Ordering::Release);
    }

    /// A consistent copy into `out`, retried while a write overlaps.
    fn read(&self, out: &mut [u64]) {
        let (seq, words) = self.words();
        loop {
            let s1 = seq.load(Ordering::Acquire);
            if s1 & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            for (o, w) in out.iter_mut().zip(words) {
                *o = w.load(Ordering::Relaxed);
            }
            fence(Ordering::Acquire);
            if seq.load(Ordering::Relaxed) == s1 {
                return;
            }
        }
    }
}

impl Pair for BareSeq {
    fn worker(&self, role: usize) -> Result<Batch<'_>, String> {
        if role == WRITER {
            let mut v = u64::initial();
            let mut i = 0u64;
            Ok(Box::new(move |n| {
                for _ in 0..n {
                    i += 1;
                    v.stamp(i);
                    self.write(&[black_box(v)]);
                }
            }))
        } else {
            Ok(Box::new(move |n| {
                for _ in 0..n {
                    let mut v = [0u64; 1];
                    self.read(&mut v);
                    black_box(v);
                }
            }))
        }
    }
}

/// The bare seqlock's cases: the reads and `seqlock_1w1r`.
///
/// # Errors
///
/// Creating the segment failed.
pub fn setup(case: Case) -> Result<Setup, String> {
    match case {
        Case::ReadU64 => {
            let s = BareSeq::new(1)?;
            s.write(&[u64::initial()]);
            timed(move |n| {
                for _ in 0..n {
                    let mut v = [0u64; 1];
                    s.read(&mut v);
                    black_box(v);
                }
            })
        }
        Case::Read4k => {
            let s = BareSeq::new(PAGE / 8)?;
            s.write(&[0x5a5a_5a5a_5a5a_5a5a; PAGE / 8]);
            let mut buf = Box::new([0u64; PAGE / 8]);
            timed(move |n| {
                for _ in 0..n {
                    s.read(black_box(&mut buf[..]));
                }
            })
        }
        Case::Seqlock1w1r => Ok(Setup::SoloAndPair(Box::new(BareSeq::new(1)?))),
        _ => Ok(Setup::Unsupported(
            "a seqlock floor: the read cases and seqlock_1w1r only",
        )),
    }
}

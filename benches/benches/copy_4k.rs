//! Where the time of a 4 KiB `read()` goes, in-process (criterion): the ways of copying
//! 4 KiB out of a SysV segment that a sequence lock could use, and neocortex's `read()` by
//! value against copying into a caller's buffer.
//!
//! ```text
//! cargo bench -p neocortex-benches --bench copy_4k
//! ```
//!
//! - `atomic_u64_words`: 8-byte relaxed atomic loads, one word at a time (what `SeqLock`'s
//!   reader does; atomics are never merged into vector loads);
//! - `asm_sse2_16b` / `asm_avx_32b`: the same copy with 16- or 32-byte vector moves in
//!   inline assembly, which the Rust memory model treats as opaque, so a racing writer is
//!   not a data race; a torn copy is thrown away by the sequence check as before;
//! - `memcpy`: the floor;
//! - `semaphore_read_by_value` / `semaphore_lock_shared_copy`, `seqlock_read_by_value` /
//!   `seqlock_slice_read_into`: the library's paths, by value and into a buffer.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::Criterion;
use neocortex::{Cortex, Semaphore, SeqLock};
use neocortex_benches::cleanup::{key_for, sweep, Leftover};
use neocortex_benches::floors::SysvSegment;
use neocortex_benches::subjects::{new_cortex, PAGE};

/// Copies `PAGE` bytes from `src` with 8-byte atomic loads.
///
/// # Safety
///
/// `src` is 8-byte aligned with `PAGE` bytes only ever accessed atomically; `dst` has
/// `PAGE` writable bytes.
unsafe fn atomic_words(src: *const u8, dst: *mut u8) {
    for i in 0..PAGE / 8 {
        // SAFETY: in bounds, aligned, only accessed atomically (the caller's promise).
        let w = unsafe { &*src.wrapping_add(8 * i).cast::<AtomicU64>() }.load(Ordering::Relaxed);
        // SAFETY: in bounds of `dst`.
        unsafe { dst.wrapping_add(8 * i).cast::<u64>().write_unaligned(w) };
    }
}

/// Copies `PAGE` bytes from `src` with `movdqu`, 64 bytes per iteration.
///
/// # Safety
///
/// `src` and `dst` each have `PAGE` bytes (readable, writable) and do not overlap.
#[cfg(target_arch = "x86_64")]
unsafe fn asm_sse2(src: *const u8, dst: *mut u8) {
    for i in (0..PAGE).step_by(64) {
        let (s, t) = (src.wrapping_add(i), dst.wrapping_add(i));
        // SAFETY: 64 bytes at offset `i` are in bounds of both buffers; SSE2 is part of
        // x86_64; the block touches only those bytes and four xmm registers it declares.
        unsafe {
            core::arch::asm!(
                "movdqu {a}, [{s}]",
                "movdqu {b}, [{s} + 16]",
                "movdqu {c}, [{s} + 32]",
                "movdqu {d}, [{s} + 48]",
                "movdqu [{t}], {a}",
                "movdqu [{t} + 16], {b}",
                "movdqu [{t} + 32], {c}",
                "movdqu [{t} + 48], {d}",
                s = in(reg) s,
                t = in(reg) t,
                a = out(xmm_reg) _,
                b = out(xmm_reg) _,
                c = out(xmm_reg) _,
                d = out(xmm_reg) _,
                options(nostack, preserves_flags),
            );
        }
    }
}

/// Copies `PAGE` bytes from `src` with `vmovdqu`, 128 bytes per iteration.
///
/// # Safety
///
/// As [`asm_sse2`], and the CPU has AVX.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn asm_avx(src: *const u8, dst: *mut u8) {
    for i in (0..PAGE).step_by(128) {
        let (s, t) = (src.wrapping_add(i), dst.wrapping_add(i));
        // SAFETY: 128 bytes at offset `i` are in bounds of both buffers; AVX is enabled (the
        // caller's promise); the block touches only those bytes and the ymm registers it
        // declares.
        unsafe {
            core::arch::asm!(
                "vmovdqu {a}, [{s}]",
                "vmovdqu {b}, [{s} + 32]",
                "vmovdqu {c}, [{s} + 64]",
                "vmovdqu {d}, [{s} + 96]",
                "vmovdqu [{t}], {a}",
                "vmovdqu [{t} + 32], {b}",
                "vmovdqu [{t} + 64], {c}",
                "vmovdqu [{t} + 96], {d}",
                s = in(reg) s,
                t = in(reg) t,
                a = out(ymm_reg) _,
                b = out(ymm_reg) _,
                c = out(ymm_reg) _,
                d = out(ymm_reg) _,
                options(nostack, preserves_flags),
            );
        }
    }
}

fn raw_copies(c: &mut Criterion) {
    let seg = SysvSegment::create(key_for(Leftover::RawKey), PAGE).expect("segment");
    // SAFETY: the fresh segment has PAGE bytes that nobody else uses.
    unsafe { seg.as_ptr().write_bytes(0x5a, PAGE) };
    let src = seg.as_ptr().cast_const();
    let mut buf = vec![0u8; PAGE];
    let mut g = c.benchmark_group("copy_4k_out_of_a_segment");
    g.bench_function("atomic_u64_words", |b| {
        // SAFETY: the segment is page-aligned, has PAGE bytes, and only this thread reads it.
        b.iter(|| unsafe { atomic_words(black_box(src), buf.as_mut_ptr()) })
    });
    #[cfg(target_arch = "x86_64")]
    {
        g.bench_function("asm_sse2_16b", |b| {
            // SAFETY: both buffers have PAGE bytes and do not overlap.
            b.iter(|| unsafe { asm_sse2(black_box(src), buf.as_mut_ptr()) })
        });
        if std::arch::is_x86_feature_detected!("avx") {
            g.bench_function("asm_avx_32b", |b| {
                // SAFETY: as above, and AVX was detected.
                b.iter(|| unsafe { asm_avx(black_box(src), buf.as_mut_ptr()) })
            });
        }
    }
    g.bench_function("memcpy", |b| {
        // SAFETY: both buffers have PAGE bytes and do not overlap.
        b.iter(|| unsafe { std::ptr::copy_nonoverlapping(black_box(src), buf.as_mut_ptr(), PAGE) })
    });
    g.finish();
    drop(seg);
}

fn library_paths(c: &mut Criterion) {
    let sem = new_cortex::<[u8; PAGE], Semaphore>([0x5a; PAGE]).expect("segment");
    let seq = new_cortex::<[u8; PAGE], SeqLock>([0x5a; PAGE]).expect("segment");
    let slice_key = key_for(|key| Leftover::Cortex {
        key,
        remove: neocortex_benches::subjects::remove_cortex::<[u8], SeqLock>,
    });
    let slice: Cortex<[u8], SeqLock> =
        Cortex::new_slice(slice_key, PAGE, 0x5a, None).expect("segment");
    let mut buf = vec![0u8; PAGE];
    let mut g = c.benchmark_group("read_4k");
    g.bench_function("semaphore_read_by_value", |b| {
        b.iter(|| black_box(sem.read().expect("read")))
    });
    g.bench_function("semaphore_lock_shared_copy", |b| {
        b.iter(|| {
            let guard = sem.lock_shared().expect("lock");
            black_box(&mut buf).copy_from_slice(&*guard);
        })
    });
    g.bench_function("seqlock_read_by_value", |b| {
        b.iter(|| black_box(seq.read().expect("read")))
    });
    g.bench_function("seqlock_slice_read_into", |b| {
        b.iter(|| slice.read_into(black_box(&mut buf)).expect("read"))
    });
    g.finish();
    drop((sem, seq, slice));
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(30)
}

// What `criterion_group!`/`criterion_main!` expand to, written out so that it stays
// documented under the workspace's `missing_docs` lint.
fn main() {
    let mut c = config().configure_from_args();
    raw_copies(&mut c);
    library_paths(&mut c);
    sweep();
    Criterion::default().configure_from_args().final_summary();
}

//! How a value read by value reaches the caller: [`copied`] picks where the one copy out of
//! the segment lands, by the value's size.
//!
//! - A small value (up to [`SMALL_VALUE`]) lands in a local, which the optimiser keeps in
//!   registers.
//! - A larger one lands straight in the caller's result: a copy in between would be a
//!   second copy of the whole value, and for some sizes and stack placements glibc's memcpy
//!   of a few KiB between nearby stack buffers costs several times the first.
//! - A large one (above [`HEAP_BUFFER_ABOVE`]) lands in a buffer on the heap and is moved
//!   into the result from there: in a debug build every move is a copy on the stack, and a
//!   large value must still fit a thread's stack.
//!
//! Each way lives in its own function, so that a debug build's frame holds only its own
//! buffer.

use std::mem::{size_of, MaybeUninit};

use crate::error::CortexResult;
use crate::marker::{zeroed, HeapBuffer, ShmSafe};

/// Values up to this size are copied through a local (registers).
pub(super) const SMALL_VALUE: usize = 64;
/// Values larger than this are copied through a buffer on the heap.
pub(super) const HEAP_BUFFER_ABOVE: usize = 16 << 10;

/// The value `fill` copies: `fill` gets a destination for `size_of::<T>()` bytes and must
/// write every one of them when it returns `Ok`.
#[inline(always)]
pub(super) fn copied<T: ShmSafe + Copy>(
    fill: impl FnOnce(*mut T) -> CortexResult<()>,
) -> CortexResult<T> {
    if size_of::<T>() <= SMALL_VALUE {
        through_a_local(fill)
    } else if size_of::<T>() <= HEAP_BUFFER_ABOVE {
        in_the_result(fill)
    } else {
        through_the_heap(fill)
    }
}

#[inline]
fn through_a_local<T: ShmSafe + Copy>(
    fill: impl FnOnce(*mut T) -> CortexResult<()>,
) -> CortexResult<T> {
    let mut out = MaybeUninit::<T>::uninit();
    fill(out.as_mut_ptr())?;
    // SAFETY: `fill` returned Ok, so it wrote all size_of::<T>() bytes of `out`; any bytes
    // are a valid T (ShmSafe).
    Ok(unsafe { out.assume_init() })
}

#[inline]
fn in_the_result<T: ShmSafe + Copy>(
    fill: impl FnOnce(*mut T) -> CortexResult<()>,
) -> CortexResult<T> {
    // Zero bytes are a valid T (ShmSafe), so the result holds a T before `fill` overwrites it.
    let mut result: CortexResult<T> = Ok(zeroed());
    if let Ok(value) = &mut result {
        fill(std::ptr::from_mut(value))?;
    }
    result
}

#[inline(never)]
fn through_the_heap<T: ShmSafe + Copy>(
    fill: impl FnOnce(*mut T) -> CortexResult<()>,
) -> CortexResult<T> {
    let mut out = HeapBuffer::<T>::new();
    fill(out.as_mut_ptr())?;
    // SAFETY: `fill` returned Ok, so it wrote every byte of the buffer.
    Ok(unsafe { out.into_value() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::CortexError;

    /// Fills with a pattern, or fails after writing half.
    fn pattern<const N: usize>(fail: bool) -> impl FnOnce(*mut [u8; N]) -> CortexResult<()> {
        move |dst| {
            let bytes: Vec<u8> = (0..N).map(|i| (i % 251) as u8).collect();
            // SAFETY: `dst` has room for one [u8; N]; half of it is written on failure.
            unsafe {
                dst.cast::<u8>()
                    .copy_from(bytes.as_ptr(), if fail { N / 2 } else { N })
            };
            if fail {
                Err(CortexError::lock_removed(1, None))
            } else {
                Ok(())
            }
        }
    }

    fn every_way<const N: usize>() {
        let value = copied(pattern::<N>(false)).expect("filled");
        assert!(
            value.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8),
            "{N} bytes"
        );
        assert!(
            copied(pattern::<N>(true)).is_err(),
            "{N} bytes: the error comes through"
        );
    }

    #[test]
    fn every_size_gets_the_bytes_written_and_errors_pass_through() {
        every_way::<8>();
        every_way::<SMALL_VALUE>();
        every_way::<{ SMALL_VALUE + 1 }>();
        every_way::<4096>();
        every_way::<HEAP_BUFFER_ABOVE>();
        every_way::<{ HEAP_BUFFER_ABOVE + 1 }>();
        every_way::<{ 64 << 10 }>();
    }
}

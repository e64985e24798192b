//! A raw, untyped attachment of a SysV segment: the one place core turns an address into
//! references.

use std::ptr::NonNull;

use neocortex_sys::{shm, SysError};

use crate::error::{CortexError, CortexResult, Leftover};
use crate::header::Header;
use crate::key::Key;

/// A segment attached in this process.
#[derive(Debug)]
pub(crate) struct Mapping {
    pub(crate) id: i32,
    base: NonNull<libc::c_void>,
    /// The real size of the segment (`shm_segsz`), checked at attach time.
    size: u64,
}

// SAFETY: a Mapping is an address and two integers; the memory behind it is shared between
// processes anyway and every access to it goes through atomics or the cortex lock.
unsafe impl Send for Mapping {}
// SAFETY: as above; `&Mapping` hands out only `&Header` (all atomics) and raw pointers.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Attaches segment `id`, whose real size is `size`, read-write.
    pub(crate) fn attach(id: i32, size: u64) -> Result<Self, SysError> {
        let base = shm::attach(id, 0)?;
        Ok(Self { id, base, size })
    }

    /// The real size of the segment.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// The header at the start of the segment.
    #[inline]
    pub(crate) fn header(&self) -> &Header {
        debug_assert!(self.size >= std::mem::size_of::<Header>() as u64);
        // SAFETY: `shmat` returns a page-aligned address (so aligned for Header's 64 bytes),
        // every Mapping is checked to be at least a header long before it is made (see
        // `open`/`create` in cortex.rs), Header consists only of atomics (valid for every bit
        // pattern and sound to share across threads and processes), and the mapping lives as
        // long as `self`.
        unsafe { self.base.cast::<Header>().as_ref() }
    }

    /// A pointer to a `U` at `offset`.
    ///
    /// Turning it into a reference is up to the caller, who must check that
    /// `offset + size_of::<U>() <= size` and that `offset` is aligned for `U`.
    #[inline]
    pub(crate) fn at<U>(&self, offset: u64) -> NonNull<U> {
        debug_assert!(offset + std::mem::size_of::<U>() as u64 <= self.size);
        // SAFETY: callers pass an offset inside the mapping (checked against the header
        // descriptor), so the result stays within the same allocation and is not null.
        unsafe { self.base.cast::<u8>().add(offset as usize).cast() }
    }

    /// The address, for error messages.
    pub(crate) fn addr(&self) -> usize {
        self.base.as_ptr() as usize
    }

    /// Unmaps the segment.
    ///
    /// # Safety
    ///
    /// Called at most once, and neither `self` nor any reference or pointer obtained from it
    /// is used afterwards.
    pub(crate) unsafe fn unmap(&self, key: Key, op: &'static str) -> CortexResult<()> {
        let addr = self.addr();
        // SAFETY: `self.base` is a live attachment made by `attach`; the caller guarantees
        // this is the last use of it.
        unsafe { shm::detach(self.base) }
            .map_err(|e| CortexError::dirty(op, key, e, vec![Leftover::Mapping(addr)]))
    }
}

//! A raw, untyped attachment of a SysV segment: the one place core turns an address into
//! references.

use std::ptr::NonNull;

use neocortex_sys::{shm, Errno, SysError};

use crate::error::{CortexError, CortexResult, IntoOs, Leftover};
use crate::header::{Header, SegmentLayout};
use crate::members::MemberTable;

/// The smallest segment that can be a neocortex segment: a header and a member table.
pub(crate) const MIN_SIZE: u64 = SegmentLayout::MEMBERS_OFFSET + MemberTable::SIZE;

/// A segment attached in this process.
#[derive(Debug)]
pub(crate) struct Mapping {
    pub(crate) id: i32,
    base: NonNull<libc::c_void>,
    /// The real size of the segment (`shm_segsz`), checked at attach time.
    size: u64,
}

// SAFETY: a Mapping is an address and a few integers; the memory behind it is shared between
// processes anyway and every access to it goes through atomics or the cortex lock.
unsafe impl Send for Mapping {}
// SAFETY: as above; `&Mapping` hands out only `&Header` and `&MemberTable` (all atomics) and
// raw pointers.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Attaches segment `id`, whose real size is `size` (at least [`MIN_SIZE`]), read-write
    /// or read-only.
    ///
    /// # Errors
    ///
    /// `EINVAL` when `size` is below [`MIN_SIZE`]; the errors of `shmat`.
    pub(crate) fn attach(id: i32, size: u64, read_only: bool) -> Result<Self, SysError> {
        if size < MIN_SIZE {
            return Err(SysError {
                call: "shmat",
                errno: Errno::EINVAL,
            });
        }
        let flags = if read_only { libc::SHM_RDONLY } else { 0 };
        // SAFETY: every access through the mapping is to atomics (header, member table, lock
        // states) or to the value under the segment's lock or its sequence protocol; nothing
        // is written through a read-only mapping (only inspection maps read-only, and it
        // never writes); the mapping is detached once, by `unmap`.
        let base = unsafe { shm::attach(id, flags) }?;
        Ok(Self { id, base, size })
    }

    /// The real size of the segment.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// The header at the start of the segment.
    #[inline]
    pub(crate) fn header(&self) -> &Header {
        // SAFETY: `shmat` returns a page-aligned address (so aligned for Header's 64 bytes),
        // every Mapping is at least MIN_SIZE long (checked in `attach`), Header consists only
        // of atomics (valid for every bit pattern and sound to share across threads and
        // processes; reading through a read-only mapping is fine), and the mapping lives as
        // long as `self`.
        unsafe { self.base.cast::<Header>().as_ref() }
    }

    /// The member table after the header.
    #[inline]
    pub(crate) fn members(&self) -> &MemberTable {
        let at = self.at::<MemberTable>(SegmentLayout::MEMBERS_OFFSET);
        // SAFETY: the table's offset is a multiple of 64 from a page-aligned base (aligned),
        // it ends within MIN_SIZE <= size (checked in `attach`), it holds only atomics, and
        // it lives as long as `self`.
        unsafe { at.as_ref() }
    }

    /// A pointer to a `U` at `offset`.
    ///
    /// Turning it into a reference is up to the caller, who must check that
    /// `offset + size_of::<U>() <= size` and that `offset` is aligned for `U`.
    #[inline]
    pub(crate) fn at<U>(&self, offset: u64) -> NonNull<U> {
        debug_assert!(offset <= self.size);
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
    pub(crate) unsafe fn unmap(&self, key: i32, op: &'static str) -> CortexResult<()> {
        let addr = self.addr();
        // SAFETY: `self.base` is a live attachment made by `attach`; the caller guarantees
        // this is the last use of it.
        unsafe { shm::detach(self.base) }
            .map_err(|e| CortexError::dirty(op, key, e.os(), vec![Leftover::Mapping(addr)]))
    }
}

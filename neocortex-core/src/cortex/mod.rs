//! [`Cortex<T, L>`]: a typed value in a shared segment, guarded by a cross-process lock.

use std::marker::PhantomData;
use std::mem::{align_of, size_of};
use std::time::Duration;

use neocortex_sys::process::current_pid;
use neocortex_sys::{shm, Errno};

use crate::error::{CortexError, CortexResult, ErrorKind, Leftover};
use crate::failpoints;
use crate::header::{Descriptor, Header, Name, SegmentLayout};
use crate::key::Key;
use crate::marker::{combine_tags, tag_of_name, ShmSafe};
use crate::segment::Mapping;
use crate::sync::CortexSync;

/// How long [`Cortex::attach`] waits for a segment that is still being initialised.
pub const ATTACH_INIT_WAIT: Duration = Duration::from_millis(500);

/// How many times a random key is drawn before giving up on collisions.
const RANDOM_KEY_TRIES: usize = 64;

mod access;
mod attach;
mod create;
mod stale;

/// A value of type `T` in a System V shared memory segment, shared between processes and
/// guarded by the cross-process lock `L`.
///
/// The process that creates the segment ([`new`](Self::new)) owns it: dropping that handle
/// removes the segment and its lock. Other processes [`attach`](Self::attach) and only
/// detach on drop. A forked child never removes or unlocks what its parent owns.
pub struct Cortex<T: ShmSafe, L: CortexSync> {
    key: Key,
    map: Mapping,
    lock: L,
    /// The pid allowed to remove the segment on drop, or 0 for none.
    owner_pid: i32,
    released: bool,
    _value: PhantomData<T>,
}

impl<T: ShmSafe, L: CortexSync> std::fmt::Debug for Cortex<T, L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cortex")
            .field("key", &self.key)
            .field("shmid", &self.map.id)
            .field("type", &std::any::type_name::<T>())
            .field("lock", &self.lock)
            .field("owner", &self.is_owner())
            .finish()
    }
}

impl<T: ShmSafe, L: CortexSync> Cortex<T, L> {
    /// Where the lock state and the value are, for this `T` and `L`.
    const LAYOUT: SegmentLayout = match SegmentLayout::new(
        (size_of::<L::State>(), align_of::<L::State>()),
        (size_of::<T>(), align_of::<T>()),
    ) {
        Some(layout) => layout,
        None => panic!("the value type is too large for a shared memory segment"),
    };

    const CHECKS: () = {
        assert!(
            align_of::<T>() <= 4096,
            "ShmSafe types may be aligned to at most a page"
        );
        assert!(
            align_of::<L::State>() <= 4096,
            "lock states may be aligned to at most a page"
        );
    };

    /// The layout a segment for `T` and `L` has, and what its header must say.
    fn expected() -> Option<Descriptor> {
        let layout = SegmentLayout::new(
            (size_of::<L::State>(), align_of::<L::State>()),
            (size_of::<T>(), align_of::<T>()),
        )?;
        Some(Descriptor {
            layout,
            type_size: size_of::<T>() as u64,
            type_align: align_of::<T>() as u64,
            type_tag: T::TYPE_TAG,
            lock_tag: combine_tags(tag_of_name(L::KIND), <L::State as ShmSafe>::TYPE_TAG),
            type_name: Name::new(std::any::type_name::<T>()),
            lock_name: Name::new(L::KIND),
        })
    }

    fn check_key(key: Key) -> CortexResult<()> {
        if key.is_shareable() {
            Ok(())
        } else {
            Err(CortexError::InvalidInput {
                key,
                reason: "key 0 is IPC_PRIVATE and cannot be shared by key; pick another key \
                         or use CortexBuilder::random_key()"
                    .into(),
            })
        }
    }

    /// The descriptor and byte size of a segment for `T` and `L`.
    fn plan(key: Key) -> CortexResult<(Descriptor, usize)> {
        // Evaluating the constant runs the compile-time layout checks for this T and L.
        let () = Self::CHECKS;
        let too_large = || CortexError::InvalidInput {
            key,
            reason: format!(
                "`{}` is too large for a segment",
                std::any::type_name::<T>()
            ),
        };
        let expected = Self::expected().ok_or_else(too_large)?;
        let size = usize::try_from(expected.layout.total_size).map_err(|_| too_large())?;
        Ok((expected, size))
    }

    /// The key, as the seed crate returned it.
    pub fn key(&self) -> i32 {
        self.key.raw()
    }

    /// The segment's id, as `ipcs -m` lists it.
    pub fn segment_id(&self) -> i32 {
        self.map.id
    }

    /// Whether this handle removes the segment when dropped (in this process).
    pub fn is_owner(&self) -> bool {
        self.owner_pid != 0 && self.owner_pid == current_pid()
    }

    /// The lock handle, for lock-specific queries.
    #[inline]
    pub fn raw_lock(&self) -> &L {
        &self.lock
    }

    #[inline]
    pub(crate) fn header(&self) -> &Header {
        self.map.header()
    }

    #[inline]
    pub(crate) fn lock_state(&self) -> &L::State {
        let offset = Self::LAYOUT.lock_offset;
        // SAFETY: the segment was created or validated for exactly this layout, so the offset
        // is aligned for L::State and inside the mapping; L::State is ShmSafe.
        unsafe { self.map.at::<L::State>(offset).as_ref() }
    }

    #[inline]
    pub(crate) fn value_ptr(&self) -> std::ptr::NonNull<T> {
        let offset = Self::LAYOUT.data_offset;
        self.map.at::<T>(offset)
    }

    #[inline]
    pub(crate) fn key_typed(&self) -> Key {
        self.key
    }

    /// Unmaps this handle and leaves the segment and its lock in place, even when this
    /// handle created them: the way to keep a segment alive past its creator. Another process
    /// can attach later, and adopt it with `CortexBuilder::force_ownership()`.
    ///
    /// # Errors
    ///
    /// `DirtySystem` when `shmdt` fails (the mapping is left).
    pub fn detach(mut self) -> CortexResult<()> {
        self.released = true;
        // SAFETY: `self` is consumed and `released` stops Drop from touching the mapping.
        unsafe { self.map.unmap(self.key, "detach") }
    }

    /// Removes the segment and its lock now, whoever created them, then unmaps this handle.
    /// Other attached processes keep their mapping until they detach, but can no longer lock.
    ///
    /// # Errors
    ///
    /// `DirtySystem` naming what could not be removed (for example `EPERM`: not the owner).
    pub fn remove(mut self) -> CortexResult<()> {
        self.released = true;
        self.remove_and_unmap("remove")
    }

    fn remove_and_unmap(&self, op: &'static str) -> CortexResult<()> {
        failpoints::reach("drop.before_remove");
        let lock = L::destroy(self.key, self.lock_state());
        let removed = failpoints::hit("drop.rmid", "shmctl(IPC_RMID)")
            .and_then(|()| shm::remove(self.map.id));
        let segment = match removed {
            Ok(()) => Ok(()),
            Err(e) if e.errno == Errno::EINVAL || e.errno == Errno::EIDRM => {
                tracing::warn!(key = %self.key, shmid = self.map.id, "segment was already removed from outside");
                Ok(())
            }
            Err(e) => Err(CortexError::dirty(
                op,
                self.key,
                e,
                vec![Leftover::Segment(self.map.id)],
            )),
        };
        // SAFETY: called once, from `remove` or `drop`, after which the mapping is not used.
        let unmap = unsafe { self.map.unmap(self.key, op) };
        CortexError::combine([lock, segment, unmap])
    }
}

impl<T: ShmSafe, L: CortexSync> Drop for Cortex<T, L> {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        // Ask the kernel, not the pid cache: a child made by a raw clone() skips the fork
        // handler that resets the cache, and must never remove its parent's segment.
        let owner = self.owner_pid != 0 && self.owner_pid == neocortex_sys::process::pid_uncached();
        let result = if owner {
            self.remove_and_unmap("drop")
        } else {
            // SAFETY: drop runs once; nothing borrowed from the mapping outlives `self`.
            unsafe { self.map.unmap(self.key, "drop") }
        };
        if let Err(e) = result {
            if e.is_dirty() {
                tracing::error!(error = %e, "neocortex: dropping a Cortex left system objects behind");
            } else {
                tracing::warn!(error = %e, "neocortex: error while dropping a Cortex");
            }
        }
    }
}

// SAFETY: a Cortex can move between threads: the mapping is process-wide, the lock handle is
// Send, and the value is only reached through the cross-process lock.
unsafe impl<T: ShmSafe, L: CortexSync> Send for Cortex<T, L> {}
// SAFETY: `&Cortex` only gives access to the value through the lock, which excludes across
// threads as well as processes (CortexSync contract), like `std::sync::Mutex<T>` with T: Send.
unsafe impl<T: ShmSafe, L: CortexSync> Sync for Cortex<T, L> {}

pub(super) fn none_if_would_block<G>(r: CortexResult<G>) -> CortexResult<Option<G>> {
    match r {
        Ok(g) => Ok(Some(g)),
        Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}

/// What `new` found on a taken key.
pub(super) enum Occupant {
    /// Removed from under us meanwhile: try again.
    Gone,
    /// A half-made segment whose creator is dead and that nobody uses: removable.
    Debris { id: i32, creator: i32 },
    /// A ready segment whose creator is dead and that nobody uses: removable on request.
    Orphan { id: i32, creator: i32 },
    /// Anything else, with the reason it must be left alone.
    Keep(String),
}

//! [`Cortex<T, L>`]: a typed value (or slice) in a shared segment, guarded by a
//! cross-process lock.
//!
//! The parts, each in its own file: [`create`] (the creation state machine and its
//! rollback), [`attach`] (every check before a byte of the value is read), [`stale`] (what
//! `new` finds on a taken key, and reclaiming debris), [`access`] (guards and the by-value
//! paths), [`slice`] (values of run-time length), [`watch`] (waiting for a change), and here
//! the handle itself: its layout, accessors, and removal.

use std::marker::PhantomData;
use std::mem::{align_of, size_of};
use std::time::Duration;

use neocortex_sys::process::{current_pid, pid_uncached};
use neocortex_sys::{shm, Errno};

use crate::error::{CortexError, CortexResult, ErrorKind, IntoOs, Leftover};
use crate::failpoints;
use crate::header::{Descriptor, Header, Name, SegmentLayout, Shape};
use crate::key::Key;
use crate::marker::{ShmSafe, Value};
use crate::members::{self, Membership};
use crate::sync::{CortexSync, LockContext};

mod access;
mod attach;
mod copy_out;
mod create;
mod optimistic;
mod slice;
pub(crate) mod stale;
mod watch;

pub(crate) use create::CreateOptions;
pub use watch::Watcher;

/// How long [`Cortex::attach`] waits for a segment that is still being initialised.
pub const ATTACH_INIT_WAIT: Duration = Duration::from_millis(500);

/// How many times a random key is drawn before giving up on collisions.
const RANDOM_KEY_TRIES: usize = 64;

/// A value of type `T` (or a slice `[T]`) in a System V shared memory segment, shared
/// between processes and guarded by the cross-process lock `L`.
///
/// The process that creates the segment ([`new`](Self::new)) owns it: dropping that handle
/// removes the segment and its lock. Other processes [`attach`](Self::attach) and only
/// detach on drop. A forked child never removes or unlocks what its parent owns.
///
/// `Cortex` is `Send` and `Sync`: share it between threads with `&Cortex` or an `Arc`;
/// every access goes through the cross-process lock, which excludes threads as well. Guards
/// are neither `Send` nor `Sync`-transferable: a lock is released by the thread that took it.
///
/// ```
/// use neocortex::{Cortex, Semaphore};
///
/// let key = neocortex::random_key()?;
/// let owner: Cortex<[u32; 2], Semaphore> = Cortex::new(key, [1, 2], None)?;
/// std::thread::scope(|s| {
///     s.spawn(|| owner.update(|v| v[0] += 10));
/// });
/// assert_eq!(owner.read()?, [11, 2]);
/// # Ok::<(), neocortex::CortexError>(())
/// ```
pub struct Cortex<T: ?Sized + Value, L: CortexSync> {
    key: Key,
    map: crate::segment::Mapping,
    /// Elements: 1 for a value, the slice's length for a slice.
    pub(crate) len: usize,
    lock: L,
    members: Membership,
    /// The pid allowed to remove the segment on drop, or 0 for none.
    owner_pid: i32,
    released: bool,
    _value: PhantomData<T>,
}

impl<T: ?Sized + Value, L: CortexSync> std::fmt::Debug for Cortex<T, L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cortex")
            .field("key", &self.key)
            .field("shmid", &self.map.id)
            .field("type", &std::any::type_name::<T>())
            .field("len", &self.len)
            .field("lock", &self.lock)
            .field("owner", &self.is_owner())
            .finish()
    }
}

impl<T: ?Sized + Value, L: CortexSync> Cortex<T, L> {
    /// The offsets of the member table, the lock state and the value for this `T` and `L`
    /// (they do not depend on a slice's length).
    const OFFSETS: SegmentLayout = match SegmentLayout::new(
        (size_of::<L::State>(), align_of::<L::State>()),
        (size_of::<T::Elem>(), align_of::<T::Elem>()),
        if T::IS_SLICE { 0 } else { 1 },
    ) {
        Some(layout) => layout,
        None => panic!("the value type is too large for a shared memory segment"),
    };

    const CHECKS: () = {
        assert!(
            align_of::<T::Elem>() <= 4096,
            "ShmSafe types may be aligned to at most a page"
        );
        assert!(
            align_of::<L::State>() <= 4096,
            "lock states may be aligned to at most a page"
        );
    };

    /// The layout and header descriptor a segment of `len` elements of `T` with `L` has.
    fn expected(len: usize) -> Option<Descriptor> {
        let layout = SegmentLayout::new(
            (size_of::<L::State>(), align_of::<L::State>()),
            (size_of::<T::Elem>(), align_of::<T::Elem>()),
            u64::try_from(len).ok()?,
        )?;
        Some(Descriptor {
            layout,
            shape: if T::IS_SLICE {
                Shape::Slice
            } else {
                Shape::Value
            },
            elem_size: size_of::<T::Elem>() as u64,
            elem_align: align_of::<T::Elem>() as u64,
            elem_tag: <T::Elem as ShmSafe>::TYPE_TAG,
            len: len as u64,
            lock_tag: Self::lock_tag(),
            type_name: Name::new(std::any::type_name::<T>()),
            lock_name: Name::new(L::KIND),
        })
    }

    /// The fingerprint of the lock kind, its state type and its access model.
    fn lock_tag() -> u64 {
        crate::sync::lock_tag::<L>()
    }

    fn check_key(key: Key) -> CortexResult<()> {
        if key.is_shareable() {
            Ok(())
        } else {
            Err(CortexError::InvalidInput {
                key: key.raw(),
                reason: "key 0 is IPC_PRIVATE and cannot be shared by key; pick another key \
                         or use CortexBuilder::random_key()"
                    .into(),
            })
        }
    }

    /// The descriptor and byte size of a segment of `len` elements.
    fn plan(key: Key, len: usize) -> CortexResult<(Descriptor, usize)> {
        // Evaluating the constants runs the compile-time layout checks for this T and L.
        let () = Self::CHECKS;
        let _ = Self::OFFSETS;
        let too_large = || CortexError::InvalidInput {
            key: key.raw(),
            reason: format!(
                "{len} element(s) of `{}` are too large for a segment; use fewer, or split \
                 the data over several segments",
                std::any::type_name::<T::Elem>()
            ),
        };
        let expected = Self::expected(len).ok_or_else(too_large)?;
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

    /// The id of the segment's members set (a SysV semaphore set, as `ipcs -s` lists it),
    /// through which holders of a futex lock are known to be alive.
    pub fn members_set_id(&self) -> i32 {
        self.members.set()
    }

    /// Every SysV semaphore set of the segment (its members set first, then the lock's own),
    /// as `ipcs -s` lists them.
    pub fn semaphore_sets(&self) -> Vec<i32> {
        let mut sets = vec![self.members.set()];
        sets.extend(self.lock.semaphore_sets());
        sets
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

    /// What the lock gets on every call.
    #[inline]
    pub(crate) fn lock_cx(&self) -> LockContext<'_> {
        LockContext::new(
            self.key.raw(),
            &self.members,
            self.map.header(),
            self.map.members(),
        )
    }

    #[inline]
    pub(crate) fn lock_state(&self) -> &L::State {
        // SAFETY: the segment was created or validated for exactly this layout, so the offset
        // is aligned for L::State and inside the mapping; L::State is ShmSafe.
        unsafe { self.map.at::<L::State>(Self::OFFSETS.lock_offset).as_ref() }
    }

    /// A pointer to the value: its `len` elements.
    #[inline]
    pub(crate) fn value_ptr(&self) -> std::ptr::NonNull<T> {
        let elems = self.map.at::<T::Elem>(Self::OFFSETS.data_offset);
        T::from_elems(elems, self.len)
    }

    /// Unmaps this handle and leaves the segment and its lock in place, even when this
    /// handle created them: the way to keep a segment alive past its creator. Another process
    /// can attach later, and adopt it with `CortexBuilder::force_ownership()`. While the
    /// creating process runs, the segment counts as in use by it (stale-segment removal
    /// leaves it alone); once that process exits and nobody is attached, it is an orphan.
    ///
    /// ```
    /// use neocortex::{Cortex, Semaphore};
    ///
    /// let key = neocortex::random_key()?;
    /// let creator: Cortex<u64, Semaphore> = Cortex::new(key, 7, None)?;
    /// creator.detach()?; // the segment stays
    /// let later: Cortex<u64, Semaphore> = Cortex::attach(key)?;
    /// assert_eq!(later.read()?, 7);
    /// later.remove()?; // and now it is gone
    /// # Ok::<(), neocortex::CortexError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `DirtySystem` when `shmdt` fails (the mapping is left).
    pub fn detach(mut self) -> CortexResult<()> {
        self.released = true;
        // The creator keeps its member token until it exits, so that the segment is not
        // judged an orphan while its creator runs.
        self.members.leave(self.key.raw(), self.is_owner());
        // SAFETY: `self` is consumed and `released` stops Drop from touching the mapping.
        unsafe { self.map.unmap(self.key.raw(), "detach") }
    }

    /// Removes the segment and its lock now, whoever created them, then unmaps this handle.
    /// Other attached processes keep their mapping until they detach, but their next lock,
    /// read or wait fails with `LockRemoved`.
    ///
    /// ```
    /// use neocortex::{Cortex, ErrorKind, Semaphore};
    ///
    /// let key = neocortex::random_key()?;
    /// let owner: Cortex<u64, Semaphore> = Cortex::new(key, 1, None)?;
    /// let other: Cortex<u64, Semaphore> = Cortex::attach(key)?;
    /// owner.remove()?;
    /// assert_eq!(other.read().unwrap_err().kind(), ErrorKind::LockRemoved);
    /// # Ok::<(), neocortex::CortexError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `DirtySystem` naming what could not be removed (for example `EPERM`: not the owner).
    pub fn remove(mut self) -> CortexResult<()> {
        self.released = true;
        let _span = tracing::debug_span!(
            "remove",
            key = self.key.raw(),
            shmid = self.map.id,
            r#type = std::any::type_name::<T>(),
            lock = L::KIND
        )
        .entered();
        self.remove_and_unmap("remove")
    }

    fn remove_and_unmap(&self, op: &'static str) -> CortexResult<()> {
        let key = self.key.raw();
        failpoints::reach("drop.before_remove");
        // First tell every attached process (their next access fails), and wake whoever
        // waits for a change.
        let header = self.header();
        header.mark_removed();
        self.wake_watchers_for_removal();
        let cx = self.lock_cx();
        let lock = L::destroy(&cx, self.lock_state());
        let members = match members::remove_set(self.members.set()) {
            Ok(()) => Ok(()),
            Err(e) if e.errno == Errno::EINVAL || e.errno == Errno::EIDRM => Ok(()),
            Err(e) => Err(CortexError::dirty(
                op,
                key,
                e.os(),
                vec![Leftover::SemaphoreSet(self.members.set())],
            )),
        };
        let removed = failpoints::hit("drop.rmid", "shmctl(IPC_RMID)").and_then(|()| {
            // SAFETY: this handle owns the segment (or `remove` was asked for explicitly), and
            // every attached process was told through the header's removed mark above.
            unsafe { shm::remove(self.map.id) }
        });
        let segment = match removed {
            Ok(()) => Ok(()),
            Err(e) if e.errno == Errno::EINVAL || e.errno == Errno::EIDRM => {
                tracing::warn!(
                    key = self.key.raw(),
                    shmid = self.map.id,
                    "segment was already removed from outside"
                );
                Ok(())
            }
            Err(e) => Err(CortexError::dirty(
                op,
                key,
                e.os(),
                vec![Leftover::Segment(self.map.id)],
            )),
        };
        // SAFETY: called once, from `remove` or `drop`, after which the mapping is not used.
        let unmap = unsafe { self.map.unmap(key, op) };
        let result = CortexError::combine([lock, members, segment, unmap]);
        if result.is_ok() {
            tracing::debug!(
                key = self.key.raw(),
                shmid = self.map.id,
                r#type = std::any::type_name::<T>(),
                lock = L::KIND,
                "removed segment"
            );
        }
        result
    }
}

impl<T: ?Sized + Value, L: CortexSync> Drop for Cortex<T, L> {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        // Ask the kernel, not the pid cache: a child must never remove its parent's segment.
        let owner = self.owner_pid != 0 && self.owner_pid == pid_uncached();
        let _span = tracing::debug_span!(
            "drop",
            key = self.key.raw(),
            shmid = self.map.id,
            r#type = std::any::type_name::<T>(),
            lock = L::KIND
        )
        .entered();
        let result = if owner {
            self.remove_and_unmap("drop")
        } else {
            self.members.leave(self.key.raw(), false);
            // SAFETY: drop runs once; nothing borrowed from the mapping outlives `self`.
            unsafe { self.map.unmap(self.key.raw(), "drop") }
        };
        if let Err(e) = result {
            if e.is_dirty() {
                tracing::error!(error = %e, "dropping a Cortex left system objects behind");
            } else {
                tracing::warn!(error = %e, "error while dropping a Cortex");
            }
        }
    }
}

// SAFETY: a Cortex can move between threads: the mapping is process-wide, the lock handle is
// Send, the membership is atomics, and the value is only reached through the cross-process
// lock (or, for optimistic locks, through atomic word copies).
unsafe impl<T: ?Sized + Value, L: CortexSync> Send for Cortex<T, L> {}
// SAFETY: `&Cortex` only gives access to the value through the lock, which excludes across
// threads as well as processes (CortexSync contract), like `std::sync::Mutex<T>` with T: Send;
// optimistic reads copy with atomic loads and never hand out references into the segment.
unsafe impl<T: ?Sized + Value, L: CortexSync> Sync for Cortex<T, L> {}

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

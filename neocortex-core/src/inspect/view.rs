//! A segment mapped read-only for looking, and the lock kinds the inspection knows: the one
//! place the inspection turns a lock offset into a lock state.

use std::mem::{align_of, size_of};

use neocortex_sys::shm;
use neocortex_sys::{Errno, SysError};

use crate::error::{CortexError, CortexResult, ErrorKind, IntoOs};
use crate::header::{Descriptor, Header, SegmentLayout};
use crate::key::Key;
use crate::members::Membership;
use crate::segment::{Mapping, MIN_SIZE};
use crate::sync::{lock_tag, CortexSync, LockContext};

/// A lock type the inspection can recognise in a segment's header (by the same fingerprint
/// `attach` compares), ask who holds it, list its kernel objects and tear it down with the
/// segment.
///
/// Core knows no concrete lock: whoever inspects passes the lock types it knows, e.g.
/// `[LockKind::of::<Semaphore>(), LockKind::of::<SysvSemaphore>()]` (the `neocortex` crate
/// has them as `neocortex::inspect::BUILT_IN_LOCKS`). A segment made with a lock kind that is
/// not passed is still listed and judged, but never removed: its lock's kernel objects would
/// be left behind.
#[derive(Clone, Copy)]
pub struct LockKind {
    name: &'static str,
    tag: u64,
    /// Where `L::State` lies in every segment of this lock kind.
    offset: u64,
    /// `size_of::<L::State>()`, or `u64::MAX` for a state no segment can hold.
    size: u64,
    detects_dead_holders: bool,
    holder: fn(&LockContext<'_>, &Mapping, u64) -> Option<i32>,
    sets: fn(&LockContext<'_>, &Mapping, u64) -> Vec<i32>,
    destroy: fn(&LockContext<'_>, &Mapping, u64) -> CortexResult<()>,
}

impl std::fmt::Debug for LockKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockKind")
            .field("name", &self.name)
            .field("tag", &format_args!("{:#018x}", self.tag))
            .field("offset", &self.offset)
            .finish_non_exhaustive()
    }
}

impl LockKind {
    /// The lock kind `L`.
    pub const fn of<L: CortexSync>() -> Self {
        // The state's offset depends only on its own size and alignment (see
        // `SegmentLayout`), so it is the same in every segment made with `L`.
        let align = align_of::<L::State>();
        let (offset, size) = match SegmentLayout::new((size_of::<L::State>(), align), (0, 1), 0) {
            // Core refuses to make a segment whose lock state is aligned to more than a page
            // (`Cortex::CHECKS`): such a kind never matches.
            Some(layout) if align <= 4096 => (layout.lock_offset, size_of::<L::State>() as u64),
            _ => (u64::MAX, u64::MAX),
        };
        Self {
            name: L::KIND,
            tag: lock_tag::<L>(),
            offset,
            size,
            detects_dead_holders: L::DETECTS_DEAD_HOLDERS,
            holder: holder_in::<L>,
            sets: sets_in::<L>,
            destroy: destroy_in::<L>,
        }
    }

    /// The lock's name, as headers record it (`L::KIND`).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Whether a descriptor names this lock kind, with its state where this kind keeps it.
    pub(crate) fn is_named_by(&self, d: &Descriptor) -> bool {
        d.lock_tag == self.tag && d.layout.lock_offset == self.offset
    }

    /// Whether the header of `map` describes a lock that is not this kind where this kind
    /// keeps it (another kind, or a damaged offset): removing such a segment with this kind
    /// would leave its lock's kernel objects behind. `false` when the header describes no
    /// lock yet (a creator that died before writing it made no lock either).
    pub(crate) fn names_another_lock(&self, map: &Mapping) -> bool {
        let described = map
            .header()
            .read(map.size())
            .ok()
            .and_then(|published| published.descriptor())
            .is_some();
        described && !self.is_in(map)
    }

    /// Whether the header of `map` names this lock kind, and its state fits in the segment
    /// (whatever the header says: `offset` and `size` are this kind's own).
    fn is_in(&self, map: &Mapping) -> bool {
        let fits = self
            .offset
            .checked_add(self.size)
            .is_some_and(|end| end <= map.size());
        fits && map
            .header()
            .read(map.size())
            .ok()
            .and_then(|published| published.descriptor())
            .is_some_and(|d| self.is_named_by(&d))
    }

    /// `L::destroy` on the segment's lock state; `None` when its header names another kind.
    pub(crate) fn destroy(&self, cx: &LockContext<'_>, map: &Mapping) -> Option<CortexResult<()>> {
        self.is_in(map)
            .then(|| (self.destroy)(cx, map, self.offset))
    }

    /// What the lock says about itself; `None` when the header names another kind.
    pub(crate) fn look(&self, cx: &LockContext<'_>, map: &Mapping) -> Option<LockView> {
        if !self.is_in(map) {
            return None;
        }
        Some(LockView {
            kind: self.name,
            holder: (self.holder)(cx, map, self.offset),
            semaphore_sets: (self.sets)(cx, map, self.offset),
            detects_dead_holders: self.detects_dead_holders,
        })
    }
}

/// The lock state of kind `L` at `offset` in `map`.
///
/// Called only through a [`LockKind`] of `L` that checked `is_in(map)`.
fn state_in<L: CortexSync>(map: &Mapping, offset: u64) -> &L::State {
    debug_assert!(offset + size_of::<L::State>() as u64 <= map.size());
    // SAFETY: `offset` is `LockKind::of::<L>().offset`, the lock offset of every layout with
    // an `L::State`, aligned for it (SegmentLayout aligns it to max(align, 64), and `of`
    // refuses alignments above a page, the mapping's own alignment); `is_in` checked that
    // `offset + size_of::<L::State>()` lies within the segment's real size; `L::State` is
    // ShmSafe (valid for every bit pattern, changed only through atomics) and lives as long
    // as `map`.
    unsafe { map.at::<L::State>(offset).as_ref() }
}

fn holder_in<L: CortexSync>(cx: &LockContext<'_>, map: &Mapping, offset: u64) -> Option<i32> {
    L::holder(cx, state_in::<L>(map, offset))
}

fn sets_in<L: CortexSync>(cx: &LockContext<'_>, map: &Mapping, offset: u64) -> Vec<i32> {
    L::semaphore_sets_in(cx, state_in::<L>(map, offset))
}

fn destroy_in<L: CortexSync>(cx: &LockContext<'_>, map: &Mapping, offset: u64) -> CortexResult<()> {
    L::destroy(cx, state_in::<L>(map, offset))
}

/// What a segment's lock says about itself, read without attaching.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockView {
    /// The lock's name (`CortexSync::KIND`).
    pub kind: &'static str,
    /// Who holds it now ([`CortexSync::holder`]): a pid (as that process sees itself; -1
    /// when held by a process the lock cannot name), or `None` when it is free or the lock
    /// cannot tell.
    pub holder: Option<i32>,
    /// The SysV semaphore sets of the lock itself (not the segment's members set).
    pub semaphore_sets: Vec<i32>,
    /// Whether the lock reports dead holders itself (`CortexSync::DETECTS_DEAD_HOLDERS`).
    pub detects_dead_holders: bool,
}

/// A segment mapped read-only (`SHM_RDONLY`) to look at it: nothing is ever written
/// through it, and no value is read, only the header, the member table and the lock state.
///
/// ```
/// use neocortex::inspect::SegmentView;
/// use neocortex::{Cortex, Semaphore, SysvSemaphore};
///
/// let key = neocortex::random_key()?;
/// let cortex: Cortex<u64, SysvSemaphore> = Cortex::new(key, 7, None)?;
/// let view = SegmentView::open(key)?;
/// assert!(view.lock::<Semaphore>().is_none(), "another lock kind");
/// let lock = view.lock::<SysvSemaphore>().expect("the segment's lock kind");
/// assert_eq!(lock.holder, None);
/// assert_eq!(lock.semaphore_sets, [cortex.raw_lock().set_id()]);
/// let guard = cortex.lock()?;
/// assert_eq!(view.lock::<SysvSemaphore>().unwrap().holder, Some(std::process::id() as i32));
/// # drop(guard);
/// # Ok::<(), neocortex::CortexError>(())
/// ```
#[derive(Debug)]
pub struct SegmentView {
    key: i32,
    map: Mapping,
}

impl SegmentView {
    /// Maps the segment on `key` read-only.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for key 0; `NotFound`; `PermissionDenied` (no read access);
    /// `LayoutMismatch` for a segment too small to hold a neocortex header.
    pub fn open(key: i32) -> CortexResult<Self> {
        const OP: &str = "inspect segment";
        if !Key(key).is_shareable() {
            return Err(CortexError::InvalidInput {
                key,
                reason: "key 0 is IPC_PRIVATE: it names no segment".into(),
            });
        }
        let id = shm::shmget(key, 0, 0).map_err(|e| CortexError::clean(OP, key, e.os()))?;
        let stat = shm::stat(id).map_err(|e| CortexError::clean(OP, key, e.os()))?;
        if stat.size < MIN_SIZE {
            return Err(CortexError::ForeignSegment {
                key,
                reason: format!(
                    "it is not a neocortex segment ({} bytes, smaller than a neocortex header: \
                     {MIN_SIZE} bytes)",
                    stat.size
                ),
            });
        }
        Self::open_id(key, id, stat.size).map_err(|e| {
            let kind = match e.errno {
                Errno::EINVAL | Errno::EIDRM => ErrorKind::NotFound,
                errno => ErrorKind::from_raw_os_error(errno.raw()),
            };
            CortexError::clean_with_hint(OP, key, kind, e.os(), "")
        })
    }

    /// Maps segment `id` on `key`, of `size` bytes (its real size), read-only.
    pub(crate) fn open_id(key: i32, id: i32, size: u64) -> Result<Self, SysError> {
        let map = Mapping::attach(id, size, true)?;
        Ok(Self { key, map })
    }

    /// The key, as the segment was found by (0 for a segment removed while still attached).
    pub fn key(&self) -> i32 {
        self.key
    }

    /// The segment's id, as `ipcs -m` lists it.
    pub fn shmid(&self) -> i32 {
        self.map.id
    }

    /// What the segment's lock says about itself, if the header names the lock kind `L`
    /// (the same fingerprint `attach` compares); `None` for any other lock kind, or a
    /// header that is not a neocortex one.
    pub fn lock<L: CortexSync>(&self) -> Option<LockView> {
        self.lock_of(&LockKind::of::<L>())
    }

    /// [`lock`](Self::lock) for a lock kind given as a value.
    pub fn lock_of(&self, kind: &LockKind) -> Option<LockView> {
        let header = self.header();
        let membership = Membership::new(header.members_id().unwrap_or(-1), 0);
        let cx = LockContext::read_only(self.key, &membership, header, self.map.members());
        kind.look(&cx, &self.map)
    }

    pub(crate) fn header(&self) -> &Header {
        self.map.header()
    }

    pub(crate) fn mapping(&self) -> &Mapping {
        &self.map
    }
}

impl Drop for SegmentView {
    fn drop(&mut self) {
        // SAFETY: drop runs once; nothing borrowed from the mapping outlives `self`.
        if let Err(e) = unsafe { self.map.unmap(self.key, "inspect segment") } {
            tracing::error!(error = %e, "could not detach a segment mapped for inspection");
        }
    }
}

/// `ENOENT` as the error for a key nothing is on.
pub(crate) fn not_found(op: &'static str, key: i32) -> CortexError {
    CortexError::clean_with_hint(
        op,
        key,
        ErrorKind::NotFound,
        SysError {
            call: "shmget",
            errno: Errno::ENOENT,
        }
        .os(),
        "nothing is on the key",
    )
}

//! Looking at segments from outside, and removing the ones left behind: the library side of
//! the operator's tool (`neocortex list | inspect | gc | rm | doctor`).
//!
//! ```
//! use neocortex::inspect::{self, Verdict};
//! use neocortex::{Cortex, Semaphore};
//!
//! let key = neocortex::random_key()?;
//! let cortex: Cortex<[u32; 4], Semaphore> = Cortex::new(key, [1, 2, 3, 4], None)?;
//! let info = inspect::segment(key)?;
//! let nc = info.neocortex.as_ref().expect("a neocortex segment");
//! assert_eq!((nc.type_name.as_str(), nc.lock.as_str()), ("[u32; 4]", "semaphore"));
//! assert_eq!(nc.creator_alive, Some(true));
//! // Its creator (this process) lives: in use, so never removed without force.
//! assert_eq!(info.verdict, Verdict::InUse);
//! let refused = inspect::remove(key, false).unwrap_err();
//! assert_eq!(refused.kind(), neocortex::ErrorKind::AlreadyExists);
//! # drop(cortex);
//! # Ok::<(), neocortex::CortexError>(())
//! ```
//!
//! # What it promises
//!
//! - Segments are only ever mapped read-only (`SHM_RDONLY`) to be looked at; the header is
//!   read through the same checks as [`Cortex::attach`](crate::Cortex::attach), and no value
//!   is ever read or written.
//! - The verdict is the one `Cortex::new` comes to on a taken key: the same code. Removal
//!   ([`remove`], [`collect`]) takes only this user's own neocortex segments that nobody is
//!   attached to and whose creator is dead ([`Verdict::Stale`], [`Verdict::Orphan`]),
//!   unless forced by name; it never takes a foreign segment or another user's, forced or
//!   not, nor one whose lock kind the caller did not pass (its kernel objects would leak).
//! - Removing writes: the header's removed mark, the change counter (to wake waiters) and
//!   what the lock's `destroy` writes (the futex lock's removed bit), so that a process
//!   still attached to a forcibly removed segment gets `LockRemoved` on its next access
//!   instead of using a segment nobody else sees. It then removes the segment, its members
//!   set and the lock's kernel objects (the SysV locks' set, named in their state).
//!
//! Core knows no concrete lock: the functions here take the [`LockKind`]s to recognise. The
//! `neocortex` crate's `neocortex::inspect` passes its built-in locks.

use neocortex_sys::shm::ShmStat;

mod describe;
mod proc;
mod removal;
mod system;
#[expect(unsafe_code, reason = "turns a lock offset into a lock state")]
mod view;

pub use describe::{segment, segments};
pub use removal::{collect, remove, Collected, Outcome};
pub use system::{limits, usage, Limits, Usage, MEMBERS_SET_SEMAPHORES};
pub use view::{LockKind, LockView, SegmentView};

/// What the staleness rules say may be done with a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Verdict {
    /// Someone is attached, or its creator lives (or is still making it): never removed
    /// unless forced.
    InUse,
    /// Debris: its creation never finished, its creator is dead and nobody is attached.
    /// `Cortex::new` on its key reclaims it; [`collect`] removes it.
    Stale,
    /// Ready, but its creator is dead (exited or was killed without removing it; a creator
    /// that detached counts as alive until it exits) and nobody is attached: data someone
    /// may still want. Removed by [`remove`], and by [`collect`] when asked for orphans.
    Orphan,
    /// Not a neocortex segment, or not one this build reads (another program's, a blank
    /// one, another header format, a damaged header): never removed.
    Foreign,
    /// Made by, or handed to, another user: never removed.
    OtherUser,
    /// Cannot be judged from here: its creator is in another pid namespace, or the segment
    /// cannot be mapped. Never removed unless forced.
    Unknown,
}

impl Verdict {
    /// A short name: `in-use`, `stale`, `orphan`, `foreign`, `other-user`, `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InUse => "in-use",
            Self::Stale => "stale",
            Self::Orphan => "orphan",
            Self::Foreign => "foreign",
            Self::OtherUser => "other-user",
            Self::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How far a neocortex segment's creation got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SegmentState {
    /// Its creator is setting it up (or died doing so).
    Initializing,
    /// Ready for use.
    Ready,
}

impl SegmentState {
    /// `initializing` or `ready`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initializing => "initializing",
            Self::Ready => "ready",
        }
    }
}

/// Whether a segment holds one value or a slice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Shape {
    /// One value (`Cortex<T, L>`).
    Value,
    /// A slice (`Cortex<[T], L>`).
    Slice,
}

/// Where the parts of a neocortex segment are, as its header records them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Layout {
    /// One value, or a slice.
    pub shape: Shape,
    /// `size_of` the element (the value's type, or the slice's element).
    pub element_size: u64,
    /// `align_of` the element.
    pub element_align: u64,
    /// Elements: 1 for a value.
    pub len: u64,
    /// Offset of the lock's state.
    pub lock_offset: u64,
    /// Offset of the value.
    pub data_offset: u64,
    /// Bytes the segment needs: `data_offset + element_size * len`.
    pub total_size: u64,
}

/// A handle that holds a member token of the segment (it locked, wrote or watched), alive
/// as the kernel says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Member {
    /// Its pid, as that process saw itself (from the member table, which notes the first
    /// 64 slots).
    pub pid: i32,
    /// Its slot in the members set.
    pub slot: u16,
    /// Whether this is the creator's token.
    pub creator: bool,
}

/// What a neocortex segment's header says, and what its members set and lock say.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct NeocortexInfo {
    /// How far creation got.
    pub state: SegmentState,
    /// The value's type name (as `std::any::type_name` said it; truncated to 56 bytes).
    pub type_name: String,
    /// The lock kind's name (`CortexSync::KIND`).
    pub lock: String,
    /// Whether the lock kind is one of those passed in (so its holder, its kernel objects
    /// and its removal are known).
    pub lock_known: bool,
    /// Where everything is.
    pub layout: Layout,
    /// The creator's pid, as it saw itself.
    pub creator_pid: i32,
    /// Whether the creator lives (its member token, or its pid and start time); `None` when
    /// it cannot be told from here.
    pub creator_alive: Option<bool>,
    /// Whether a holder died holding the lock and the value was not marked consistent
    /// since: the next guard reports `owner_died()`.
    pub owner_died: bool,
    /// The pid of that dead holder, as it saw itself (-1 if not known).
    pub dead_holder: Option<i32>,
    /// Who holds the lock now, if the lock kind is known and says (-1: held, holder not
    /// known).
    pub holder: Option<i32>,
    /// The value's version: how many exclusive accesses that may have changed it ended.
    pub version: u64,
    /// Whether the segment is marked removed (its users get `LockRemoved`).
    pub removed: bool,
    /// The members set's id (a SysV semaphore set), once created.
    pub members_set: Option<i32>,
    /// How many member slots the set has (the creator's `max_handles`), if it is there.
    pub member_slots: Option<u16>,
    /// The live members noted in the member table.
    pub members: Vec<Member>,
    /// How many handles are registered as waiting for changes, if the set is there.
    pub watchers: Option<i32>,
    /// Every SysV semaphore set of the segment: the members set, then the lock's own.
    pub semaphore_sets: Vec<i32>,
}

/// Everything known about one segment.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SegmentInfo {
    /// The key (0 for a segment removed while processes are still attached).
    pub key: i32,
    /// The segment's id, as `ipcs -m` lists it.
    pub shmid: i32,
    /// The owner's uid.
    pub uid: u32,
    /// The creator's uid.
    pub creator_uid: u32,
    /// The permission bits (`0o600`, ...).
    pub mode: u32,
    /// Whether the kernel has it marked for removal (`SHM_DEST`): it goes when the last
    /// process detaches.
    pub pending_removal: bool,
    /// The real size in bytes.
    pub size: u64,
    /// How many attachments it has.
    pub attached: u64,
    /// The pids that map it, from `/proc/*/maps` (only [`segment`] looks, on Linux; only
    /// processes this user may look at are seen).
    pub attached_pids: Option<Vec<i32>>,
    /// The creator's pid as the kernel reports it to this process (0: another pid
    /// namespace).
    pub kernel_creator_pid: i32,
    /// When it was created (or last changed with `IPC_SET`), in seconds since the epoch.
    pub created: i64,
    /// What its header says, for a neocortex segment this build reads.
    pub neocortex: Option<NeocortexInfo>,
    /// What the staleness rules say may be done with it.
    pub verdict: Verdict,
    /// Why, for people.
    pub reason: String,
}

impl SegmentInfo {
    fn from_stat(key: i32, shmid: i32, ds: &ShmStat) -> Self {
        /// `SHM_DEST` on Linux: removed, still attached.
        const SHM_DEST: u16 = 0o1000;
        Self {
            key,
            shmid,
            uid: ds.uid,
            creator_uid: ds.cuid,
            mode: u32::from(ds.mode) & 0o777,
            pending_removal: cfg!(target_os = "linux") && ds.mode & SHM_DEST != 0,
            size: ds.size,
            attached: ds.attached,
            attached_pids: None,
            kernel_creator_pid: ds.cpid,
            created: ds.ctime,
            neocortex: None,
            verdict: Verdict::Unknown,
            reason: String::new(),
        }
    }
}

//! Looking at segments from outside, and removing what was left behind: the library behind
//! the `neocortex` binary (`list`, `inspect`, `gc`, `rm`, `doctor`; feature `cli`).
//!
//! ```
//! # #[cfg(feature = "semaphore")] fn main() -> Result<(), neocortex::CortexError> {
//! use neocortex::inspect::{self, Verdict};
//! use neocortex::{Cortex, ErrorKind, Semaphore};
//!
//! let key = neocortex::random_key()?;
//! let cortex: Cortex<[u32; 4], Semaphore> = Cortex::new(key, [1, 2, 3, 4], None)?;
//! let info = inspect::segment(key)?;
//! let nc = info.neocortex.as_ref().expect("a neocortex segment");
//! assert_eq!((nc.type_name.as_str(), nc.lock.as_str()), ("[u32; 4]", "semaphore"));
//! assert_eq!((nc.creator_pid, nc.creator_alive), (std::process::id() as i32, Some(true)));
//! assert_eq!(info.verdict, Verdict::InUse); // its creator, this process, lives
//! let refused = inspect::remove(key, false).unwrap_err();
//! assert_eq!(refused.kind(), ErrorKind::AlreadyExists);
//! # drop(cortex);
//! # Ok(()) }
//! # #[cfg(not(feature = "semaphore"))] fn main() {}
//! ```
//!
//! Segments are mapped read-only to be looked at, and their headers read through the same
//! checks as [`Cortex::attach`](crate::Cortex::attach); no value is ever read. The verdicts
//! are those of `Cortex::new` on a taken key (see [`Verdict`]), and removal takes only this
//! user's own neocortex segments whose creator is dead and that nobody is attached to,
//! unless forced by name ([`remove`]); never a foreign segment or another user's.
//!
//! The functions here know the built-in locks ([`BUILT_IN_LOCKS`]). For a segment made with
//! a lock of your own, pass its [`LockKind`] too, to the `*_with` functions:
//!
//! ```
//! # #[cfg(feature = "semaphore")] fn main() -> Result<(), neocortex::CortexError> {
//! use neocortex::inspect::{self, LockKind, BUILT_IN_LOCKS};
//! use neocortex::Cortex;
//! # use neocortex::SysvSemaphore as MyLock;
//!
//! let locks: Vec<LockKind> = BUILT_IN_LOCKS
//!     .iter()
//!     .copied()
//!     .chain([LockKind::of::<MyLock>()])
//!     .collect();
//! let key = neocortex::random_key()?;
//! let mine: Cortex<u64, MyLock> = Cortex::new(key, 1, None)?;
//! let info = inspect::segment_with(key, &locks)?;
//! assert!(info.neocortex.expect("a neocortex segment").lock_known);
//! // inspect::segments_with(&locks) and inspect::collect_with(.., &locks) likewise.
//! # Ok(()) }
//! # #[cfg(not(feature = "semaphore"))] fn main() {}
//! ```

pub use neocortex_core::inspect::{
    collect as collect_with, limits, remove as remove_with, segment as segment_with,
    segments as segments_with, usage, Collected, Layout, Limits, LockKind, LockView, Member,
    NeocortexInfo, Outcome, SegmentInfo, SegmentState, SegmentView, Shape, Usage, Verdict,
    MEMBERS_SET_SEMAPHORES,
};

use crate::CortexResult;

/// The lock kinds of this crate: [`Semaphore`](crate::Semaphore) (also
/// [`Mutex`](crate::Mutex)), [`SysvSemaphore`](crate::SysvSemaphore),
/// [`RwSemaphore`](crate::RwSemaphore) and [`SeqLock`](crate::SeqLock), with the `semaphore`
/// feature; none without it.
#[cfg(all(feature = "semaphore", target_os = "linux"))]
pub const BUILT_IN_LOCKS: &[LockKind] = &[
    LockKind::of::<crate::Semaphore>(),
    LockKind::of::<crate::SysvSemaphore>(),
    LockKind::of::<crate::RwSemaphore>(),
    LockKind::of::<crate::SeqLock>(),
];

/// The lock kinds of this crate: [`SysvSemaphore`](crate::SysvSemaphore) (which is
/// `Semaphore` off Linux), [`RwSemaphore`](crate::RwSemaphore) and
/// [`SeqLock`](crate::SeqLock), with the `semaphore` feature; none without it.
#[cfg(all(feature = "semaphore", not(target_os = "linux")))]
pub const BUILT_IN_LOCKS: &[LockKind] = &[
    LockKind::of::<crate::SysvSemaphore>(),
    LockKind::of::<crate::RwSemaphore>(),
    LockKind::of::<crate::SeqLock>(),
];

/// The lock kinds of this crate: none without the `semaphore` feature.
#[cfg(not(feature = "semaphore"))]
pub const BUILT_IN_LOCKS: &[LockKind] = &[];

/// Every segment in this IPC namespace, described as [`segment`] does (without the
/// attached pids), foreign ones included (their [`SegmentInfo::neocortex`] is `None`).
///
/// # Errors
///
/// When `/proc/sysvipc/shm` cannot be read; off Linux, listing is not supported (an error
/// of kind `Other` that says so).
pub fn segments() -> CortexResult<Vec<SegmentInfo>> {
    segments_with(BUILT_IN_LOCKS)
}

/// Everything known about the segment on `key`: the kernel's record, and for a neocortex
/// segment its header, state, creator, members, lock holder and semaphore sets, the pids
/// attached to it, and the verdict of the staleness rules.
///
/// # Errors
///
/// `InvalidInput` for key 0, `NotFound`, or a system error.
pub fn segment(key: i32) -> CortexResult<SegmentInfo> {
    segment_with(key, BUILT_IN_LOCKS)
}

/// Removes the neocortex segment on `key` and its lock (members set, the SysV locks' set)
/// when nobody is attached and its creator is dead; with `force` even when processes are
/// attached or the creator lives: their next access fails with `LockRemoved`. Never a
/// foreign segment or another user's. Returns the segment as it was found.
///
/// # Errors
///
/// `NotFound`; `AlreadyExists` when it is left alone, saying why and who is attached; a
/// system error from the removal.
pub fn remove(key: i32, force: bool) -> CortexResult<SegmentInfo> {
    remove_with(key, force, BUILT_IN_LOCKS)
}

/// Removes every stale segment in this IPC namespace (what `Cortex::new` would reclaim on
/// its key: creation never finished, creator dead, nobody attached) and with `orphans`
/// every orphan too (ready, creator dead, nobody attached); with `dry_run` removes nothing.
/// Returns every stale or orphaned segment found and what was done with it.
///
/// # Errors
///
/// When the segments cannot be listed (off Linux: not supported).
pub fn collect(orphans: bool, dry_run: bool) -> CortexResult<Vec<Collected>> {
    collect_with(orphans, dry_run, BUILT_IN_LOCKS)
}

//! The segment header: what a segment holds, whether it is ready, who made it, and the words
//! every access touches.
//!
//! Every neocortex segment starts with a [`Header`], followed by the member table, the lock's
//! state and the value:
//!
//! ```text
//! [ Header | member table | lock state L::State | T or [T] ]
//! ```
//!
//! All header fields are atomics, because any attached process may write the segment at any
//! time; a torn or hostile header must be a clean error, never undefined behaviour.
//!
//! Creation is a state machine in the state word: a new segment is all zeros
//! ([`InitState::Uninit`]); the creator writes the descriptor and its identity, moves to
//! [`InitState::Initializing`], sets up the members, the lock and the value, and publishes
//! [`InitState::Ready`] with release ordering. Zero never means ready.
//!
//! This module is the segment format: it is internal, and its items may change in any
//! release (the format version in the header says which one a segment has).

use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};

use crate::process::ProcessIdentity;

mod descriptor;

use descriptor::NAME_WORDS;
pub(crate) use descriptor::{Descriptor, Mismatch, Name, SegmentLayout, Shape};

/// "NEOCRTX" and a format byte, little-endian, so `ipcs`/`hexdump` users can spot it.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"NEOCRTX\x01");

/// Version of this header format; bumped on any incompatible change.
pub(crate) const FORMAT_VERSION: u32 = 2;

/// Where a segment has got to in its creation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InitState {
    /// All zeros: the creator has not written the header yet.
    Uninit,
    /// The header is written; the members, the lock and the value are being set up.
    Initializing,
    /// Ready for use.
    Ready,
}

impl InitState {
    const fn word(self) -> u32 {
        match self {
            Self::Uninit => 0,
            Self::Initializing => 0x1a1a_0001,
            Self::Ready => 0x5eed_0002,
        }
    }

    /// Decodes a state word; `None` for anything neocortex never writes.
    pub(crate) fn from_word(word: u32) -> Option<Self> {
        [Self::Uninit, Self::Initializing, Self::Ready]
            .into_iter()
            .find(|s| s.word() == word)
    }
}

/// What a header says, once it passed the checks that every reader makes (attach, the
/// stale-segment rules and the operator's tool all read headers through [`Header::read`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Published {
    /// Nothing published yet (state [`InitState::Uninit`]): the rest of the header may be
    /// blank or half-written, so only the kernel's record of the segment can be trusted.
    Blank,
    /// The creator is setting the segment up; the descriptor is written and adds up.
    Initializing(Descriptor),
    /// Ready for use; the descriptor adds up.
    Ready(Descriptor),
}

impl Published {
    /// The descriptor, past [`Published::Blank`].
    pub(crate) fn descriptor(self) -> Option<Descriptor> {
        match self {
            Self::Blank => None,
            Self::Initializing(d) | Self::Ready(d) => Some(d),
        }
    }
}

/// Why a header is not one this build reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Unreadable {
    /// Another magic or format, or a state word neocortex never writes: not a neocortex
    /// segment (of this format).
    NotOurs(String),
    /// The shape word is neither a value nor a slice.
    NoShape,
    /// The descriptor does not add up for the segment's size: damaged or forged.
    Damaged(&'static str),
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotOurs(why) => write!(f, "it is not a neocortex segment ({why})"),
            Self::NoShape => f.write_str("its header names neither a value nor a slice"),
            Self::Damaged(why) => write!(f, "its header is damaged or forged: {why}"),
        }
    }
}

/// The first bytes of every neocortex segment.
///
/// `Header::default()` is the all-zero header of a fresh segment.
///
/// Three parts, each starting a cache line: what creation writes once, the words an
/// exclusive access or a death touches, and the change counter with its waiters.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct Header {
    fixed: Fixed,
    hot: Hot,
    change: Change,
}

/// Written at creation, read at attach.
#[repr(C, align(64))]
#[derive(Debug, Default)]
struct Fixed {
    magic: AtomicU64,
    format: AtomicU32,
    state: AtomicU32,
    members_offset: AtomicU64,
    lock_offset: AtomicU64,
    data_offset: AtomicU64,
    total_size: AtomicU64,
    elem_size: AtomicU64,
    elem_align: AtomicU64,
    elem_tag: AtomicU64,
    len: AtomicU64,
    lock_tag: AtomicU64,
    shape: AtomicU32,
    creator_pid: AtomicI32,
    creator_start: AtomicU64,
    /// Identity of the creator's pid namespace (the inode of `/proc/<pid>/ns/pid`), 0 if
    /// unknown.
    creator_pidns: AtomicU64,
    type_name: [AtomicU64; NAME_WORDS],
    lock_name: [AtomicU64; NAME_WORDS],
    /// 1 once `members_id` holds the id of the members' semaphore set.
    members_valid: AtomicU32,
    members_id: AtomicI32,
    /// The creator's member token, 0 until it has one.
    creator_token: AtomicU32,
    /// Counts member claims; each claim's tag comes from it.
    next_tag: AtomicU32,
}

/// Touched by exclusive holders (for locks that do not report deaths themselves), by a
/// holder's death and by removal.
#[repr(C, align(64))]
#[derive(Debug, Default)]
struct Hot {
    /// Non-zero once the segment is being removed: every access then fails with
    /// `LockRemoved`.
    removed: AtomicU32,
    /// Pid of the process holding the exclusive lock, 0 when free. Written only under the
    /// lock, and only for locks that do not report a dead holder themselves.
    holder: AtomicI32,
    /// Pid of a holder that died or panicked holding the lock, 0 when consistent (-1 when
    /// the pid is not known).
    inconsistent: AtomicI32,
}

/// The change counter, and who waits for it to move.
#[repr(C, align(64))]
#[derive(Debug, Default)]
struct Change {
    /// Twice the version; odd while an optimistic (`SeqLock`) writer is writing.
    seq: AtomicU64,
    /// The token of the optimistic writer while `seq` is odd.
    writer: AtomicU32,
    /// How many threads may be asleep waiting for `seq` to change (a hint: may be too high
    /// after a waiter died, never too low).
    sleepers: AtomicU32,
}

static_assertions::const_assert!(std::mem::size_of::<Header>() <= 512);

/// The creator of a segment, as its header records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Creator {
    /// Pid and start time, as seen in the creator's pid namespace.
    pub(crate) identity: ProcessIdentity,
    /// The creator's pid namespace, 0 if unknown.
    pub(crate) pidns: u64,
    /// The creator's member token, 0 if it has none (yet).
    pub(crate) token: u32,
}

impl Header {
    /// Writes the descriptor and the creator while the state is [`InitState::Uninit`], then
    /// moves to [`InitState::Initializing`] (release).
    pub(crate) fn begin(&self, d: &Descriptor, creator: ProcessIdentity, pidns: u64) {
        let r = Ordering::Relaxed;
        let f = &self.fixed;
        f.magic.store(MAGIC, r);
        f.format.store(FORMAT_VERSION, r);
        f.members_offset.store(d.layout.members_offset, r);
        f.lock_offset.store(d.layout.lock_offset, r);
        f.data_offset.store(d.layout.data_offset, r);
        f.total_size.store(d.layout.total_size, r);
        f.shape.store(d.shape.word(), r);
        f.elem_size.store(d.elem_size, r);
        f.elem_align.store(d.elem_align, r);
        f.elem_tag.store(d.elem_tag, r);
        f.len.store(d.len, r);
        f.lock_tag.store(d.lock_tag, r);
        store_name(&f.type_name, &d.type_name);
        store_name(&f.lock_name, &d.lock_name);
        f.creator_pid.store(creator.pid, r);
        f.creator_start.store(creator.start_ticks, r);
        f.creator_pidns.store(pidns, r);
        f.state
            .store(InitState::Initializing.word(), Ordering::Release);
    }

    /// Publishes the segment as ready (release): everything written before is visible to a
    /// process that reads [`InitState::Ready`] with [`state`](Self::state).
    pub(crate) fn publish(&self) {
        self.fixed
            .state
            .store(InitState::Ready.word(), Ordering::Release);
    }

    /// The creation state (acquire).
    ///
    /// # Errors
    ///
    /// The raw word, when it is not one neocortex writes.
    pub(crate) fn state(&self) -> Result<InitState, u32> {
        let word = self.fixed.state.load(Ordering::Acquire);
        InitState::from_word(word).ok_or(word)
    }

    /// Checks that magic and format are this version's.
    ///
    /// # Errors
    ///
    /// What differs, for a message.
    pub(crate) fn format(&self) -> Result<(), String> {
        let magic = self.fixed.magic.load(Ordering::Relaxed);
        if magic != MAGIC {
            return Err(format!("magic {magic:#018x}, expected {MAGIC:#018x}"));
        }
        let format = self.fixed.format.load(Ordering::Relaxed);
        if format != FORMAT_VERSION {
            return Err(format!(
                "header format {format}, this build reads {FORMAT_VERSION}"
            ));
        }
        Ok(())
    }

    /// Reads the header of a segment of `segment_size` bytes (its real size, from the
    /// kernel) as every reader must: the state first (acquire), then, past
    /// [`InitState::Uninit`], magic and format, then a descriptor that adds up.
    ///
    /// # Errors
    ///
    /// Why the header is not one this build reads.
    pub(crate) fn read(&self, segment_size: u64) -> Result<Published, Unreadable> {
        let state = match self.state() {
            Ok(InitState::Uninit) => return Ok(Published::Blank),
            Ok(state) => state,
            Err(_) => {
                return Err(Unreadable::NotOurs(
                    self.format()
                        .err()
                        .unwrap_or_else(|| "unknown state word".into()),
                ))
            }
        };
        self.format().map_err(Unreadable::NotOurs)?;
        let descriptor = self.descriptor().ok_or(Unreadable::NoShape)?;
        descriptor
            .check_consistent(segment_size)
            .map_err(Unreadable::Damaged)?;
        Ok(if state == InitState::Ready {
            Published::Ready(descriptor)
        } else {
            Published::Initializing(descriptor)
        })
    }

    /// The descriptor as written by the creator; `None` when the shape word is not one
    /// neocortex writes.
    pub(crate) fn descriptor(&self) -> Option<Descriptor> {
        let r = Ordering::Relaxed;
        let f = &self.fixed;
        Some(Descriptor {
            layout: SegmentLayout {
                members_offset: f.members_offset.load(r),
                lock_offset: f.lock_offset.load(r),
                data_offset: f.data_offset.load(r),
                total_size: f.total_size.load(r),
            },
            shape: Shape::from_word(f.shape.load(r))?,
            elem_size: f.elem_size.load(r),
            elem_align: f.elem_align.load(r),
            elem_tag: f.elem_tag.load(r),
            len: f.len.load(r),
            lock_tag: f.lock_tag.load(r),
            type_name: load_name(&f.type_name),
            lock_name: load_name(&f.lock_name),
        })
    }

    /// The creator recorded in the header.
    pub(crate) fn creator(&self) -> Creator {
        let r = Ordering::Relaxed;
        let f = &self.fixed;
        Creator {
            identity: ProcessIdentity {
                pid: f.creator_pid.load(r),
                start_ticks: f.creator_start.load(r),
            },
            pidns: f.creator_pidns.load(r),
            token: f.creator_token.load(Ordering::Acquire),
        }
    }

    /// Records the creator's member token.
    pub(crate) fn set_creator_token(&self, token: u32) {
        self.fixed.creator_token.store(token, Ordering::Release);
    }

    /// The id of the members' semaphore set, once recorded.
    pub(crate) fn members_id(&self) -> Option<i32> {
        let f = &self.fixed;
        (f.members_valid.load(Ordering::Acquire) == 1).then(|| f.members_id.load(Ordering::Relaxed))
    }

    /// Records the members' set id (before it is used, so a creator that dies right after
    /// leaves a set that a reclaimer finds and removes).
    pub(crate) fn record_members(&self, id: i32) {
        self.fixed.members_id.store(id, Ordering::Relaxed);
        self.fixed.members_valid.store(1, Ordering::Release);
    }

    /// Forgets the members' set id (after a failed creation removed it).
    pub(crate) fn forget_members(&self) {
        self.fixed.members_valid.store(0, Ordering::Release);
    }

    /// The next claim's number.
    pub(crate) fn next_claim(&self) -> u32 {
        self.fixed.next_tag.fetch_add(1, Ordering::Relaxed)
    }

    /// Marks the segment as being removed.
    pub(crate) fn mark_removed(&self) {
        self.hot.removed.store(1, Ordering::SeqCst);
    }

    /// Whether the segment is being removed.
    #[inline]
    pub(crate) fn is_removed(&self) -> bool {
        self.hot.removed.load(Ordering::Relaxed) != 0
    }

    /// Records `pid` as the exclusive holder; returns the previous holder, which is non-zero
    /// only when that holder died or panicked without releasing. Call only under the lock.
    #[inline]
    pub(crate) fn take_holder(&self, pid: i32) -> i32 {
        // Only the holder writes this word, so a load and a store do (no locked instruction).
        let previous = self.hot.holder.load(Ordering::Relaxed);
        self.hot.holder.store(pid, Ordering::Relaxed);
        if previous != 0 {
            self.mark_inconsistent(previous);
        }
        previous
    }

    /// Under a shared hold: the holder that died while holding the lock exclusively, if
    /// any (a live exclusive holder cannot exist while a shared hold does). Recorded as
    /// inconsistent too, so that it stays reported until repaired.
    #[inline]
    pub(crate) fn dead_holder_seen_shared(&self) -> Option<i32> {
        let holder = self.hot.holder.load(Ordering::Relaxed);
        if holder != 0 {
            self.mark_inconsistent(holder);
        }
        self.dead_holder()
    }

    /// The holder word as it is now (0 when nobody holds the lock, or for locks that report
    /// dead holders themselves), for inspection.
    pub(crate) fn recorded_holder(&self) -> i32 {
        self.hot.holder.load(Ordering::Relaxed)
    }

    /// Clears the holder on a clean release. Call only under the lock.
    #[inline]
    pub(crate) fn clear_holder(&self) {
        self.hot.holder.store(0, Ordering::Relaxed);
    }

    /// Marks the data inconsistent because `pid` died or panicked holding the lock (-1 when
    /// not known). The first culprit is kept until the data is marked consistent.
    #[inline]
    pub(crate) fn mark_inconsistent(&self, pid: i32) {
        let _ = self.hot.inconsistent.compare_exchange(
            0,
            if pid == 0 { -1 } else { pid },
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// The pid of the holder that died holding the lock (-1 if not known), while the data is
    /// not repaired.
    #[inline]
    pub(crate) fn dead_holder(&self) -> Option<i32> {
        match self.hot.inconsistent.load(Ordering::Relaxed) {
            0 => None,
            pid => Some(pid),
        }
    }

    /// Marks the data consistent again, after a repair (no write when it already is, so
    /// that repairs do not dirty a line readers share).
    #[inline]
    pub(crate) fn mark_consistent(&self) {
        if self.hot.inconsistent.load(Ordering::Relaxed) != 0 {
            self.hot.inconsistent.store(0, Ordering::Relaxed);
        }
    }

    /// The change counter: twice the version, odd while an optimistic writer writes.
    #[inline]
    pub(crate) fn seq(&self) -> &AtomicU64 {
        &self.change.seq
    }

    /// The optimistic writer's token, while it writes.
    #[inline]
    pub(crate) fn writer(&self) -> &AtomicU32 {
        &self.change.writer
    }

    /// The sleepers hint.
    #[inline]
    pub(crate) fn sleepers(&self) -> &AtomicU32 {
        &self.change.sleepers
    }
}

fn store_name(words: &[AtomicU64; NAME_WORDS], name: &Name) {
    for (word, chunk) in words.iter().zip(name.0.chunks_exact(8)) {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        word.store(u64::from_le_bytes(bytes), Ordering::Relaxed);
    }
}

fn load_name(words: &[AtomicU64; NAME_WORDS]) -> Name {
    let mut bytes = [0u8; NAME_WORDS * 8];
    for (chunk, word) in bytes.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
    }
    Name(bytes)
}

#[cfg(test)]
mod tests;

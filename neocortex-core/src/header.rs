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

/// "NEOCRTX" and a format byte, little-endian, so `ipcs`/`hexdump` users can spot it.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"NEOCRTX\x01");

/// Version of this header format; bumped on any incompatible change.
pub(crate) const FORMAT_VERSION: u32 = 2;

/// Bytes of a type or lock name kept in the header, for messages.
const NAME_WORDS: usize = 7;

/// The cache line size of the machines neocortex targets.
const CACHE_LINE: u64 = 64;

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

/// Whether a segment holds one value or a slice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    /// One value of the element type.
    Value,
    /// A slice of elements, its length chosen at creation.
    Slice,
}

impl Shape {
    const fn word(self) -> u32 {
        match self {
            Self::Value => 1,
            Self::Slice => 2,
        }
    }

    fn from_word(word: u32) -> Option<Self> {
        match word {
            1 => Some(Self::Value),
            2 => Some(Self::Slice),
            _ => None,
        }
    }
}

/// Offsets of the parts of a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SegmentLayout {
    /// Offset of the member table.
    pub(crate) members_offset: u64,
    /// Offset of the lock state.
    pub(crate) lock_offset: u64,
    /// Offset of the value.
    pub(crate) data_offset: u64,
    /// Size to ask `shmget` for.
    pub(crate) total_size: u64,
}

impl SegmentLayout {
    /// Where the member table starts: right after the header, on a line of its own.
    pub(crate) const MEMBERS_OFFSET: u64 =
        align_up(std::mem::size_of::<Header>() as u64, CACHE_LINE);

    /// The layout for a lock state and `len` elements of the given size and alignment, or
    /// `None` when the sizes overflow.
    pub(crate) const fn new(state: (usize, usize), elem: (usize, usize), len: u64) -> Option<Self> {
        let members_offset = Self::MEMBERS_OFFSET;
        let members_size = crate::members::MemberTable::SIZE;
        // The lock state and the value each start a cache line of their own (or their own
        // alignment, if larger). Measured with `compare` (two processes contending on 8 B):
        // a lock word that shares its line with the header's hot words is ~12% slower,
        // because a waiter polling the word steals the line from the holder's writes.
        let lock_offset = align_up(
            members_offset + members_size,
            max(state.1 as u64, CACHE_LINE),
        );
        let Some(after_lock) = lock_offset.checked_add(state.0 as u64) else {
            return None;
        };
        let data_offset = align_up(after_lock, max(elem.1 as u64, CACHE_LINE));
        let Some(data_size) = (elem.0 as u64).checked_mul(len) else {
            return None;
        };
        let Some(total_size) = data_offset.checked_add(data_size) else {
            return None;
        };
        if total_size > isize::MAX as u64 {
            return None;
        }
        Some(Self {
            members_offset,
            lock_offset,
            data_offset,
            total_size,
        })
    }
}

const fn max(a: u64, b: u64) -> u64 {
    if a > b {
        a
    } else {
        b
    }
}

const fn align_up(offset: u64, align: u64) -> u64 {
    let align = if align == 0 { 1 } else { align };
    offset.div_ceil(align) * align
}

/// Everything a header says about the segment's contents, as plain values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Descriptor {
    /// Where the members, the lock state and the value are.
    pub(crate) layout: SegmentLayout,
    /// One value, or a slice.
    pub(crate) shape: Shape,
    /// `size_of` the element (the value's type, or the slice's element).
    pub(crate) elem_size: u64,
    /// `align_of` the element.
    pub(crate) elem_align: u64,
    /// The element's `TYPE_TAG`.
    pub(crate) elem_tag: u64,
    /// Number of elements: 1 for a value.
    pub(crate) len: u64,
    /// Fingerprint of the lock kind and its state type.
    pub(crate) lock_tag: u64,
    /// Name of the value's type, for messages (truncated).
    pub(crate) type_name: Name,
    /// Name of the lock kind, for messages (truncated).
    pub(crate) lock_name: Name,
}

/// A short name kept in the header for messages.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Name([u8; NAME_WORDS * 8]);

impl Name {
    /// Keeps the first bytes of `name` that fit, on a character boundary.
    pub(crate) fn new(name: &str) -> Self {
        let mut bytes = [0u8; NAME_WORDS * 8];
        let mut end = name.len().min(bytes.len());
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        bytes[..end].copy_from_slice(&name.as_bytes()[..end]);
        Self(bytes)
    }

    /// The name as text; bytes that are not UTF-8 (a foreign header) are replaced.
    pub(crate) fn to_text(self) -> String {
        let end = self.0.iter().position(|&b| b == 0).unwrap_or(self.0.len());
        String::from_utf8_lossy(&self.0[..end]).into_owned()
    }
}

impl std::fmt::Debug for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.to_text())
    }
}

/// How a found descriptor differs from the expected one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Mismatch {
    /// Another value type, shape or length.
    Type,
    /// Another lock kind.
    Lock,
    /// The recorded layout cannot be right for the recorded type (damaged or forged).
    Corrupt(&'static str),
}

impl Descriptor {
    /// Checks that the descriptor is self-consistent and fits a segment of `segment_size`
    /// bytes, whatever type it is compared with later.
    ///
    /// # Errors
    ///
    /// What is wrong with it.
    pub(crate) fn check_consistent(&self, segment_size: u64) -> Result<(), &'static str> {
        let elem_size = usize::try_from(self.elem_size).map_err(|_| "element size overflows")?;
        if self.elem_align == 0 || !self.elem_align.is_power_of_two() || self.elem_align > 4096 {
            return Err("element alignment is not a power of two up to a page");
        }
        if self.shape == Shape::Value && self.len != 1 {
            return Err("a single value with a length other than 1");
        }
        let Some(data_size) = self.elem_size.checked_mul(self.len) else {
            return Err("value size overflows");
        };
        if self.layout.total_size > segment_size {
            return Err("header claims more bytes than the segment has");
        }
        let Some(least) = SegmentLayout::new((0, 1), (elem_size, 1), 0) else {
            return Err("element size overflows");
        };
        if self.layout.members_offset != least.members_offset
            || self.layout.lock_offset < least.lock_offset
            || self.layout.data_offset < self.layout.lock_offset
            || self.layout.data_offset % self.elem_align != 0
            || self.layout.data_offset.checked_add(data_size) != Some(self.layout.total_size)
        {
            return Err("offsets and sizes do not add up");
        }
        Ok(())
    }

    /// Compares what a segment says with what the caller's types need. The descriptor must
    /// already have passed [`check_consistent`](Self::check_consistent) (as
    /// [`Header::read`] does).
    ///
    /// For a slice, `expected.len` is ignored: the segment's own length is the one to use.
    ///
    /// # Errors
    ///
    /// The first difference found.
    pub(crate) fn compare(&self, expected: &Self) -> Result<(), Mismatch> {
        let found = self;
        if found.shape != expected.shape
            || found.elem_size != expected.elem_size
            || found.elem_align != expected.elem_align
            || found.elem_tag != expected.elem_tag
            || (expected.shape == Shape::Value && found.len != expected.len)
        {
            return Err(Mismatch::Type);
        }
        if found.lock_tag != expected.lock_tag {
            return Err(Mismatch::Lock);
        }
        // The total size follows from the length, which a slice's attacher takes from the
        // segment (and `check_consistent` checked it against the offsets).
        let (f, e) = (found.layout, expected.layout);
        if (f.members_offset, f.lock_offset, f.data_offset)
            != (e.members_offset, e.lock_offset, e.data_offset)
        {
            return Err(Mismatch::Corrupt(
                "offsets differ from this version's layout",
            ));
        }
        Ok(())
    }

    /// [`check_consistent`](Self::check_consistent), then [`compare`](Self::compare).
    #[cfg(test)]
    pub(crate) fn check(&self, expected: &Self, segment_size: u64) -> Result<(), Mismatch> {
        self.check_consistent(segment_size)
            .map_err(Mismatch::Corrupt)?;
        self.compare(expected)
    }

    /// "`f64` (8 bytes, align 8) with lock `semaphore`", or for a slice "`[u32]` (100
    /// elements of 4 bytes, align 4) with lock `semaphore`", for messages.
    pub(crate) fn describe(&self) -> String {
        let what = match self.shape {
            Shape::Value => format!("{} bytes, align {}", self.elem_size, self.elem_align),
            Shape::Slice => format!(
                "{} element(s) of {} bytes, align {}",
                self.len, self.elem_size, self.elem_align
            ),
        };
        format!(
            "`{}` ({what}) with lock `{}`",
            self.type_name.to_text(),
            self.lock_name.to_text()
        )
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
mod tests {
    use super::*;

    fn descriptor(elem_size: u64, tag: u64) -> Descriptor {
        let layout = SegmentLayout::new((4, 4), (elem_size as usize, 8), 1).unwrap();
        Descriptor {
            layout,
            shape: Shape::Value,
            elem_size,
            elem_align: 8,
            elem_tag: tag,
            len: 1,
            lock_tag: 9,
            type_name: Name::new("u64"),
            lock_name: Name::new("semaphore"),
        }
    }

    fn slice(len: u64) -> Descriptor {
        let layout = SegmentLayout::new((4, 4), (4, 4), len).unwrap();
        Descriptor {
            layout,
            shape: Shape::Slice,
            elem_size: 4,
            elem_align: 4,
            elem_tag: 3,
            len,
            lock_tag: 9,
            type_name: Name::new("[u32]"),
            lock_name: Name::new("semaphore"),
        }
    }

    fn zeroed_header() -> Box<Header> {
        Box::default()
    }

    #[test]
    fn layout_gives_each_part_its_own_lines() {
        let l = SegmentLayout::new((4, 4), (8, 8), 1).unwrap();
        let header = std::mem::size_of::<Header>() as u64;
        assert!(l.members_offset >= header);
        assert!(l.lock_offset >= l.members_offset + crate::members::MemberTable::SIZE);
        assert_eq!(l.members_offset % 64, 0);
        assert_eq!(l.lock_offset % 64, 0);
        assert_eq!(l.data_offset % 64, 0);
        assert!(
            l.data_offset / 64 > (l.lock_offset + 4 - 1) / 64,
            "the value has a line of its own"
        );
        assert_eq!(l.total_size, l.data_offset + 8);
        let big = SegmentLayout::new((0, 1), (64, 4096), 1).unwrap();
        assert_eq!(big.data_offset % 4096, 0);
        let many = SegmentLayout::new((4, 4), (4, 4), 1000).unwrap();
        assert_eq!(many.total_size, many.data_offset + 4000);
        let empty = SegmentLayout::new((4, 4), (4, 4), 0).unwrap();
        assert_eq!(empty.total_size, empty.data_offset);
        assert!(SegmentLayout::new((0, 1), (usize::MAX, 1), 1).is_none());
        assert!(SegmentLayout::new((0, 1), (8, 8), u64::MAX / 4).is_none());
        assert_eq!(std::mem::size_of::<Header>() % 64, 0);
        assert_eq!(std::mem::align_of::<Header>(), 64);
    }

    #[test]
    fn header_round_trip_and_state_machine() {
        let h = zeroed_header();
        assert_eq!(h.state(), Ok(InitState::Uninit));
        assert!(h.format().is_err());
        assert_eq!(h.members_id(), None);
        let d = descriptor(8, 1);
        let me = ProcessIdentity {
            pid: 42,
            start_ticks: 7,
        };
        h.begin(&d, me, 99);
        assert_eq!(h.state(), Ok(InitState::Initializing));
        assert_eq!(h.format(), Ok(()));
        assert_eq!(h.descriptor(), Some(d));
        let creator = h.creator();
        assert_eq!(
            (creator.identity, creator.pidns, creator.token),
            (me, 99, 0)
        );
        h.record_members(17);
        assert_eq!(h.members_id(), Some(17));
        h.set_creator_token(5);
        assert_eq!(h.creator().token, 5);
        h.publish();
        assert_eq!(h.state(), Ok(InitState::Ready));
        h.forget_members();
        assert_eq!(h.members_id(), None);
        assert_eq!((h.next_claim(), h.next_claim()), (0, 1));
        h.fixed.state.store(0xdead_beef, Ordering::Relaxed);
        assert_eq!(h.state(), Err(0xdead_beef));
        h.fixed.format.store(1, Ordering::Relaxed);
        assert!(h.format().unwrap_err().contains("format 1"));
        h.fixed.shape.store(7, Ordering::Relaxed);
        assert_eq!(h.descriptor(), None);
    }

    #[test]
    fn read_checks_state_format_shape_and_consistency_in_that_order() {
        let h = zeroed_header();
        let d = descriptor(8, 1);
        let size = d.layout.total_size;
        assert_eq!(h.read(size), Ok(Published::Blank));
        assert_eq!(Published::Blank.descriptor(), None);
        h.begin(
            &d,
            ProcessIdentity {
                pid: 1,
                start_ticks: 2,
            },
            3,
        );
        assert_eq!(h.read(size), Ok(Published::Initializing(d)));
        // A segment smaller than the descriptor claims is damaged, whatever the state.
        let short = h.read(size - 1).unwrap_err();
        assert!(matches!(short, Unreadable::Damaged(_)), "{short:?}");
        assert!(short
            .to_string()
            .starts_with("its header is damaged or forged: "));
        h.publish();
        assert_eq!(h.read(size), Ok(Published::Ready(d)));
        assert_eq!(Published::Ready(d).descriptor(), Some(d));
        h.fixed.shape.store(9, Ordering::Relaxed);
        assert_eq!(h.read(size), Err(Unreadable::NoShape));
        assert_eq!(
            Unreadable::NoShape.to_string(),
            "its header names neither a value nor a slice"
        );
        h.fixed.format.store(1, Ordering::Relaxed);
        let old = h.read(size).unwrap_err();
        assert!(
            matches!(&old, Unreadable::NotOurs(why) if why.contains("format 1")),
            "{old:?}"
        );
        assert!(old
            .to_string()
            .starts_with("it is not a neocortex segment (header format 1"));
        h.fixed.state.store(0xdead_beef, Ordering::Relaxed);
        assert!(matches!(h.read(size), Err(Unreadable::NotOurs(_))));
        h.fixed.format.store(FORMAT_VERSION, Ordering::Relaxed);
        assert_eq!(
            h.read(size),
            Err(Unreadable::NotOurs("unknown state word".into()))
        );
        h.fixed.state.store(0, Ordering::Relaxed);
        h.fixed.magic.store(7, Ordering::Relaxed);
        assert_eq!(
            h.read(size),
            Ok(Published::Blank),
            "a blank state is read first"
        );
        assert_eq!(h.recorded_holder(), 0);
        h.take_holder(77);
        assert_eq!(h.recorded_holder(), 77);
    }

    #[test]
    fn holder_word_reports_dead_holders_until_repaired() {
        let h = zeroed_header();
        assert_eq!(h.take_holder(10), 0);
        h.clear_holder();
        assert_eq!(h.dead_holder(), None);
        assert_eq!(h.take_holder(11), 0);
        // 11 dies holding the lock: the kernel releases it, the word still says 11.
        assert_eq!(h.take_holder(12), 11);
        assert_eq!(h.dead_holder(), Some(11));
        h.clear_holder();
        assert_eq!(h.take_holder(13), 0);
        assert_eq!(
            h.dead_holder(),
            Some(11),
            "still reported until marked consistent"
        );
        h.mark_consistent();
        assert_eq!(h.dead_holder(), None);
        h.mark_inconsistent(13);
        assert_eq!(h.dead_holder(), Some(13));
        h.mark_consistent();
        h.mark_inconsistent(0);
        assert_eq!(h.dead_holder(), Some(-1), "an unknown pid is still a death");
        h.mark_consistent();
        // A shared holder sees a holder word left by a dead writer.
        h.clear_holder();
        h.take_holder(14);
        assert_eq!(h.dead_holder_seen_shared(), Some(14));
        assert!(!h.is_removed());
        h.mark_removed();
        assert!(h.is_removed());
    }

    #[test]
    fn descriptor_check_finds_each_difference() {
        let expected = descriptor(8, 1);
        let size = expected.layout.total_size;
        assert_eq!(expected.check(&expected, size), Ok(()));
        assert_eq!(descriptor(8, 2).check(&expected, size), Err(Mismatch::Type));
        let other_lock = Descriptor {
            lock_tag: 10,
            ..expected
        };
        assert_eq!(other_lock.check(&expected, size), Err(Mismatch::Lock));
        assert!(matches!(
            expected.check(&expected, size - 1),
            Err(Mismatch::Corrupt(_))
        ));
        let bigger = descriptor(16, 1);
        assert_eq!(
            bigger.check(&expected, bigger.layout.total_size),
            Err(Mismatch::Type)
        );
        let forged = Descriptor {
            elem_size: u64::MAX,
            ..expected
        };
        assert!(matches!(
            forged.check(&expected, u64::MAX),
            Err(Mismatch::Corrupt(_))
        ));
        let misaligned = Descriptor {
            elem_align: 3,
            ..expected
        };
        assert!(matches!(
            misaligned.check(&expected, size),
            Err(Mismatch::Corrupt(_))
        ));
        let value_of_two = Descriptor { len: 2, ..expected };
        assert!(matches!(
            value_of_two.check(&expected, u64::MAX),
            Err(Mismatch::Corrupt(_))
        ));
    }

    #[test]
    fn slices_are_checked_by_element_and_shape_not_length() {
        let made = slice(100);
        // The attacher does not know the length: any expected length matches.
        let asked = slice(7);
        assert_eq!(made.check(&asked, made.layout.total_size), Ok(()));
        // A slice is not a value, nor a value a slice.
        let value = descriptor(4, 3);
        assert_eq!(
            made.check(&value, made.layout.total_size),
            Err(Mismatch::Type)
        );
        assert_eq!(
            value.check(&made, value.layout.total_size),
            Err(Mismatch::Type)
        );
        let wider = Descriptor {
            elem_size: 8,
            elem_align: 8,
            ..asked
        };
        assert_eq!(
            made.check(&wider, made.layout.total_size),
            Err(Mismatch::Type)
        );
        // A length that does not match the segment's size is a forgery.
        let longer = Descriptor { len: 101, ..made };
        assert!(matches!(
            longer.check(&asked, made.layout.total_size),
            Err(Mismatch::Corrupt(_))
        ));
        assert!(made
            .describe()
            .contains("`[u32]` (100 element(s) of 4 bytes, align 4) with lock `semaphore`"));
    }

    #[test]
    fn names_truncate_on_char_boundaries() {
        let long = "é".repeat(40);
        let name = Name::new(&long);
        assert_eq!(name.to_text(), "é".repeat(28));
        assert_eq!(Name::new("f64").to_text(), "f64");
        assert!(descriptor(8, 1)
            .describe()
            .contains("`u64` (8 bytes, align 8) with lock `semaphore`"));
    }
}

//! The segment header: what a segment holds, whether it is ready, who made it.
//!
//! Every neocortex segment starts with a [`Header`], followed by the lock's state and then the
//! value:
//!
//! ```text
//! [ Header | lock state L::State | T ]
//! ```
//!
//! All header fields are atomics, because any attached process may write the segment at any
//! time; a torn or hostile header must be a clean error, never undefined behaviour.
//!
//! Creation is a state machine in [`Header::state`]: a new segment is all zeros
//! ([`InitState::Uninit`]); the creator writes the descriptor and its identity, moves to
//! [`InitState::Initializing`], sets up the lock and the value, and publishes
//! [`InitState::Ready`] with release ordering. Zero never means ready.

use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};

use crate::process::ProcessIdentity;

/// "NEOCRTX" and a format byte, little-endian, so `ipcs`/`hexdump` users can spot it.
pub const MAGIC: u64 = u64::from_le_bytes(*b"NEOCRTX\x01");

/// Version of this header format; bumped on any incompatible change.
pub const FORMAT_VERSION: u32 = 1;

/// Bytes of a type or lock name kept in the header, for error messages.
const NAME_WORDS: usize = 7;

/// Where a segment has got to in its creation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitState {
    /// All zeros: the creator has not written the header yet.
    Uninit,
    /// The header is written; the lock and the value are being set up.
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
    pub fn from_word(word: u32) -> Option<Self> {
        [Self::Uninit, Self::Initializing, Self::Ready]
            .into_iter()
            .find(|s| s.word() == word)
    }
}

/// Offsets of the parts of a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentLayout {
    /// Offset of the lock state.
    pub lock_offset: u64,
    /// Offset of the value.
    pub data_offset: u64,
    /// Size to ask `shmget` for.
    pub total_size: u64,
}

impl SegmentLayout {
    /// The layout for a lock state and a value of the given sizes and alignments, or `None`
    /// when the sizes overflow.
    pub const fn new(state: (usize, usize), data: (usize, usize)) -> Option<Self> {
        let header = std::mem::size_of::<Header>() as u64;
        // The lock state and the value each start a cache line of their own (or their own
        // alignment, if larger). Measured with `compare` (two processes contending on 8 B):
        // a lock word that shares its line with the header's holder word is ~12% slower,
        // because a waiter polling the word steals the line from the holder's writes.
        let lock_offset = align_up(header, max(state.1 as u64, CACHE_LINE));
        let Some(after_lock) = lock_offset.checked_add(state.0 as u64) else {
            return None;
        };
        let data_offset = align_up(after_lock, max(data.1 as u64, CACHE_LINE));
        let Some(total_size) = data_offset.checked_add(data.0 as u64) else {
            return None;
        };
        Some(Self {
            lock_offset,
            data_offset,
            total_size,
        })
    }
}

/// The cache line size of the machines neocortex targets.
const CACHE_LINE: u64 = 64;

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

/// Everything a header says about the segment, as plain values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Descriptor {
    /// Where the lock state and the value are.
    pub layout: SegmentLayout,
    /// `size_of::<T>()`.
    pub type_size: u64,
    /// `align_of::<T>()`.
    pub type_align: u64,
    /// `T::TYPE_TAG`.
    pub type_tag: u64,
    /// Fingerprint of the lock kind and its state type.
    pub lock_tag: u64,
    /// Name of `T`, for messages (truncated).
    pub type_name: Name,
    /// Name of the lock kind, for messages (truncated).
    pub lock_name: Name,
}

/// A short name kept in the header for error messages.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Name([u8; NAME_WORDS * 8]);

impl Name {
    /// Keeps the first bytes of `name` that fit, on a character boundary.
    pub fn new(name: &str) -> Self {
        let mut bytes = [0u8; NAME_WORDS * 8];
        let mut end = name.len().min(bytes.len());
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        bytes[..end].copy_from_slice(&name.as_bytes()[..end]);
        Self(bytes)
    }

    /// The name as text; bytes that are not UTF-8 (a foreign header) are replaced.
    pub fn to_text(&self) -> String {
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
pub enum Mismatch {
    /// Another value type.
    Type,
    /// Another lock kind.
    Lock,
    /// The recorded layout cannot be right for the recorded type (damaged or forged).
    Corrupt(&'static str),
}

impl Descriptor {
    /// Compares what a segment says with what the caller's types need.
    ///
    /// # Errors
    ///
    /// The first difference found, the layout's consistency first.
    pub fn check(&self, expected: &Self, segment_size: u64) -> Result<(), Mismatch> {
        let found = self;
        let Some(layout) = SegmentLayout::new(
            (0, 1),
            (usize::try_from(found.type_size).unwrap_or(usize::MAX), 1),
        ) else {
            return Err(Mismatch::Corrupt("type size overflows"));
        };
        if found.layout.total_size > segment_size {
            return Err(Mismatch::Corrupt(
                "header claims more bytes than the segment has",
            ));
        }
        if found.layout.data_offset < layout.data_offset
            || found.layout.data_offset.checked_add(found.type_size)
                != Some(found.layout.total_size)
        {
            return Err(Mismatch::Corrupt("value offset and size do not add up"));
        }
        if found.type_size != expected.type_size
            || found.type_align != expected.type_align
            || found.type_tag != expected.type_tag
        {
            return Err(Mismatch::Type);
        }
        if found.lock_tag != expected.lock_tag {
            return Err(Mismatch::Lock);
        }
        if found.layout != expected.layout {
            return Err(Mismatch::Corrupt(
                "offsets differ from this version's layout",
            ));
        }
        Ok(())
    }

    /// "`f64` (8 bytes, align 8) with lock `semaphore`", for messages.
    pub fn describe(&self) -> String {
        format!(
            "`{}` ({} bytes, align {}) with lock `{}`",
            self.type_name.to_text(),
            self.type_size,
            self.type_align,
            self.lock_name.to_text()
        )
    }
}

/// The first bytes of every neocortex segment.
///
/// `Header::default()` is the all-zero header of a fresh segment.
///
/// The two words every exclusive hold touches (`holder`, `inconsistent`) come last, together
/// on one cache line, away from the fields that are only read at attach time.
#[repr(C)]
#[derive(Debug, Default)]
pub struct Header {
    magic: AtomicU64,
    version: AtomicU32,
    state: AtomicU32,
    lock_offset: AtomicU64,
    data_offset: AtomicU64,
    total_size: AtomicU64,
    type_size: AtomicU64,
    type_align: AtomicU64,
    type_tag: AtomicU64,
    lock_tag: AtomicU64,
    creator_start: AtomicU64,
    type_name: [AtomicU64; NAME_WORDS],
    lock_name: [AtomicU64; NAME_WORDS],
    creator_pid: AtomicI32,
    _reserved: AtomicU32,
    /// Pid of the process holding the exclusive lock, 0 when free. Written only under the lock.
    holder: AtomicI32,
    /// Pid of a holder that died or panicked holding the lock, 0 when consistent.
    inconsistent: AtomicI32,
}

static_assertions::const_assert!(std::mem::size_of::<Header>() <= 256);

impl Header {
    /// Writes the descriptor and the creator while the state is [`InitState::Uninit`], then
    /// moves to [`InitState::Initializing`] (release).
    pub fn begin(&self, d: &Descriptor, creator: ProcessIdentity) {
        let r = Ordering::Relaxed;
        self.magic.store(MAGIC, r);
        self.version.store(FORMAT_VERSION, r);
        self.lock_offset.store(d.layout.lock_offset, r);
        self.data_offset.store(d.layout.data_offset, r);
        self.total_size.store(d.layout.total_size, r);
        self.type_size.store(d.type_size, r);
        self.type_align.store(d.type_align, r);
        self.type_tag.store(d.type_tag, r);
        self.lock_tag.store(d.lock_tag, r);
        store_name(&self.type_name, &d.type_name);
        store_name(&self.lock_name, &d.lock_name);
        self.creator_pid.store(creator.pid, r);
        self.creator_start.store(creator.start_ticks, r);
        self.state
            .store(InitState::Initializing.word(), Ordering::Release);
    }

    /// Publishes the segment as ready (release): everything written before is visible to a
    /// process that reads [`InitState::Ready`] with [`state`](Self::state).
    pub fn publish(&self) {
        self.state.store(InitState::Ready.word(), Ordering::Release);
    }

    /// The creation state (acquire).
    ///
    /// # Errors
    ///
    /// The raw word, when it is not one neocortex writes.
    pub fn state(&self) -> Result<InitState, u32> {
        let word = self.state.load(Ordering::Acquire);
        InitState::from_word(word).ok_or(word)
    }

    /// Checks that magic and version are this format's.
    ///
    /// # Errors
    ///
    /// What differs, for a message.
    pub fn format(&self) -> Result<(), String> {
        let magic = self.magic.load(Ordering::Relaxed);
        if magic != MAGIC {
            return Err(format!("magic {magic:#018x}, expected {MAGIC:#018x}"));
        }
        let version = self.version.load(Ordering::Relaxed);
        if version != FORMAT_VERSION {
            return Err(format!(
                "header format {version}, this build reads {FORMAT_VERSION}"
            ));
        }
        Ok(())
    }

    /// Whether the magic word is still zero (nothing written yet).
    pub fn is_blank(&self) -> bool {
        self.magic.load(Ordering::Relaxed) == 0
    }

    /// The descriptor as written by the creator.
    pub fn descriptor(&self) -> Descriptor {
        let r = Ordering::Relaxed;
        Descriptor {
            layout: SegmentLayout {
                lock_offset: self.lock_offset.load(r),
                data_offset: self.data_offset.load(r),
                total_size: self.total_size.load(r),
            },
            type_size: self.type_size.load(r),
            type_align: self.type_align.load(r),
            type_tag: self.type_tag.load(r),
            lock_tag: self.lock_tag.load(r),
            type_name: load_name(&self.type_name),
            lock_name: load_name(&self.lock_name),
        }
    }

    /// The creator recorded in the header.
    pub fn creator(&self) -> ProcessIdentity {
        ProcessIdentity {
            pid: self.creator_pid.load(Ordering::Relaxed),
            start_ticks: self.creator_start.load(Ordering::Relaxed),
        }
    }

    /// Records `pid` as the exclusive holder; returns the previous holder, which is non-zero
    /// only when that holder died or panicked without releasing. Call only under the lock.
    #[inline]
    pub fn take_holder(&self, pid: i32) -> i32 {
        // Only the holder writes this word, so a load and a store do (no locked instruction).
        let previous = self.holder.load(Ordering::Relaxed);
        self.holder.store(pid, Ordering::Relaxed);
        if previous != 0 {
            // Keep the first culprit until the data is marked consistent.
            let _ = self.inconsistent.compare_exchange(
                0,
                previous,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
        previous
    }

    /// Under a shared hold: the holder that died while holding the lock exclusively, if
    /// any (a live exclusive holder cannot exist while a shared hold does). Recorded as
    /// inconsistent too, so that it stays reported until repaired.
    #[inline]
    pub fn dead_holder_seen_shared(&self) -> Option<i32> {
        let holder = self.holder.load(Ordering::Relaxed);
        if holder != 0 {
            let _ =
                self.inconsistent
                    .compare_exchange(0, holder, Ordering::Relaxed, Ordering::Relaxed);
        }
        self.dead_holder()
    }

    /// Clears the holder on a clean release. Call only under the lock.
    #[inline]
    pub fn clear_holder(&self) {
        self.holder.store(0, Ordering::Relaxed);
    }

    /// Marks the data inconsistent because `pid` panicked holding the lock.
    #[inline]
    pub fn mark_inconsistent(&self, pid: i32) {
        let _ = self
            .inconsistent
            .compare_exchange(0, pid, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// The pid of the holder that died holding the lock, while the data is not repaired.
    #[inline]
    pub fn dead_holder(&self) -> Option<i32> {
        match self.inconsistent.load(Ordering::Relaxed) {
            0 => None,
            pid => Some(pid),
        }
    }

    /// Marks the data consistent again, after a repair.
    #[inline]
    pub fn mark_consistent(&self) {
        self.inconsistent.store(0, Ordering::Relaxed);
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

    fn descriptor(type_size: u64, tag: u64) -> Descriptor {
        let layout = SegmentLayout::new((4, 4), (type_size as usize, 8)).unwrap();
        Descriptor {
            layout,
            type_size,
            type_align: 8,
            type_tag: tag,
            lock_tag: 9,
            type_name: Name::new("u64"),
            lock_name: Name::new("semaphore"),
        }
    }

    fn zeroed_header() -> Box<Header> {
        Box::default()
    }

    #[test]
    fn layout_aligns_lock_and_value() {
        let l = SegmentLayout::new((4, 4), (8, 8)).unwrap();
        assert!(l.lock_offset >= std::mem::size_of::<Header>() as u64);
        assert_eq!(l.lock_offset % 64, 0);
        assert_eq!(l.data_offset % 64, 0);
        assert!(
            l.data_offset / 64 > (l.lock_offset + 4 - 1) / 64,
            "the value has a line of its own"
        );
        assert_eq!(l.total_size, l.data_offset + 8);
        let big = SegmentLayout::new((0, 1), (64, 4096)).unwrap();
        assert_eq!(big.data_offset, 4096);
        assert!(SegmentLayout::new((0, 1), (usize::MAX, 1)).is_none());
    }

    #[test]
    fn header_round_trip_and_state_machine() {
        let h = zeroed_header();
        assert_eq!(h.state(), Ok(InitState::Uninit));
        assert!(h.is_blank());
        assert!(h.format().is_err());
        let d = descriptor(8, 1);
        let me = ProcessIdentity {
            pid: 42,
            start_ticks: 7,
        };
        h.begin(&d, me);
        assert_eq!(h.state(), Ok(InitState::Initializing));
        assert_eq!(h.format(), Ok(()));
        assert_eq!(h.descriptor(), d);
        assert_eq!(h.creator(), me);
        h.publish();
        assert_eq!(h.state(), Ok(InitState::Ready));
        h.state.store(0xdead_beef, Ordering::Relaxed);
        assert_eq!(h.state(), Err(0xdead_beef));
        h.version.store(2, Ordering::Relaxed);
        assert!(h.format().unwrap_err().contains("format 2"));
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
            type_size: u64::MAX,
            ..expected
        };
        assert!(matches!(
            forged.check(&expected, u64::MAX),
            Err(Mismatch::Corrupt(_))
        ));
    }

    #[test]
    fn names_truncate_on_char_boundaries() {
        let long = "é".repeat(40);
        let name = Name::new(&long);
        assert_eq!(name.to_text(), "é".repeat(28));
        assert_eq!(Name::new("f64").to_text(), "f64");
        assert!(expected_describe().contains("`u64` (8 bytes, align 8) with lock `semaphore`"));
    }

    fn expected_describe() -> String {
        descriptor(8, 1).describe()
    }
}

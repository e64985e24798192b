//! What a header says about a segment's contents: where its parts lie ([`SegmentLayout`]),
//! what value and lock it holds ([`Descriptor`]), and how that is checked against what a
//! caller expects.

use super::Header;

/// Bytes of a type or lock name kept in the header, for messages.
pub(super) const NAME_WORDS: usize = 7;

/// The cache line size of the machines neocortex targets.
const CACHE_LINE: u64 = 64;

/// Whether a segment holds one value or a slice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    /// One value of the element type.
    Value,
    /// A slice of elements, its length chosen at creation.
    Slice,
}

impl Shape {
    pub(super) const fn word(self) -> u32 {
        match self {
            Self::Value => 1,
            Self::Slice => 2,
        }
    }

    pub(super) fn from_word(word: u32) -> Option<Self> {
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
pub(crate) struct Name(pub(super) [u8; NAME_WORDS * 8]);

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

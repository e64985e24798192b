//! [`FixedString`] and [`FixedVec`]: text and lists of run-time length, up to a capacity
//! fixed at compile time, that can live in a segment (and in `shm_safe!` structs).
//!
//! Both keep their length in the value itself. Another process may have stored anything
//! there, so the accessors never trust it: a length beyond the capacity is clamped (or, for
//! text, reported as not text), and bytes that are not UTF-8 are not text.

use std::fmt;

use crate::marker::{combine_tags, copy_bits, tag_of_name, zeroed, ShmSafe};

/// What did not fit: a value longer than the capacity of a [`FixedString`] or [`FixedVec`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapacityError {
    /// How long the value was (bytes for text, elements for a list).
    pub len: usize,
    /// How much fits.
    pub capacity: usize,
}

impl fmt::Display for CapacityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} does not fit in a capacity of {}: use a larger capacity or a shorter value",
            self.len, self.capacity
        )
    }
}

impl std::error::Error for CapacityError {}

/// UTF-8 text of up to `N` bytes, stored inline: usable as a value in a segment and as a
/// field of a [`shm_safe!`](crate::shm_safe) struct.
///
/// ```
/// use neocortex::FixedString;
///
/// let mut name = FixedString::<16>::try_from("sensor")?;
/// name.push_str("-7")?;
/// assert_eq!(name, "sensor-7");
/// assert_eq!(name.as_str(), Some("sensor-7"));
/// assert!(FixedString::<4>::try_from("too long").is_err());
/// let parsed: FixedString<8> = "sensor".parse()?;
/// assert_eq!(parsed, "sensor");
/// assert!("too long".parse::<FixedString<4>>().is_err());
/// # Ok::<(), neocortex::CapacityError>(())
/// ```
///
/// Reading never trusts the stored bytes: [`as_str`](Self::as_str) is `None` when another
/// process stored a length beyond the capacity or bytes that are not UTF-8, and `Display`
/// shows such content lossily.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FixedString<const N: usize> {
    /// The length in bytes, little-endian (bytes, so the type has no padding for any `N`).
    len: [u8; 4],
    bytes: [u8; N],
}

impl<const N: usize> FixedString<N> {
    /// The empty string.
    pub const fn new() -> Self {
        Self {
            len: [0; 4],
            bytes: [0; N],
        }
    }

    /// The capacity in bytes.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// The stored length, as written (possibly out of range when another process wrote it).
    fn raw_len(&self) -> usize {
        u32::from_le_bytes(self.len) as usize
    }

    /// The length in bytes, clamped to the capacity.
    pub fn len(&self) -> usize {
        self.raw_len().min(N)
    }

    /// Whether the string is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The text, or `None` when the stored length is beyond the capacity or the bytes are
    /// not UTF-8 (a peer wrote something else).
    pub fn as_str(&self) -> Option<&str> {
        if self.raw_len() > N {
            return None;
        }
        std::str::from_utf8(&self.bytes[..self.raw_len()]).ok()
    }

    /// The stored bytes, the length clamped to the capacity.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len()]
    }

    /// Appends `s`.
    ///
    /// # Errors
    ///
    /// [`CapacityError`] (nothing appended) when it does not fit.
    pub fn push_str(&mut self, s: &str) -> Result<(), CapacityError> {
        let start = self.len();
        let end = start + s.len();
        if end > N {
            return Err(CapacityError {
                len: end,
                capacity: N,
            });
        }
        self.bytes[start..end].copy_from_slice(s.as_bytes());
        self.set_len(end);
        Ok(())
    }

    /// Appends `c`.
    ///
    /// # Errors
    ///
    /// [`CapacityError`] (nothing appended) when it does not fit.
    pub fn push(&mut self, c: char) -> Result<(), CapacityError> {
        self.push_str(c.encode_utf8(&mut [0; 4]))
    }

    /// Empties the string.
    pub fn clear(&mut self) {
        self.set_len(0);
    }

    fn set_len(&mut self, len: usize) {
        debug_assert!(len <= N);
        self.len = u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes();
    }
}

impl<const N: usize> Default for FixedString<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> std::str::FromStr for FixedString<N> {
    type Err = CapacityError;

    /// `"name".parse::<FixedString<16>>()`: the string, or [`CapacityError`] when it does
    /// not fit.
    fn from_str(s: &str) -> Result<Self, CapacityError> {
        let mut out = Self::new();
        out.push_str(s)?;
        Ok(out)
    }
}

impl<const N: usize> TryFrom<&str> for FixedString<N> {
    type Error = CapacityError;

    fn try_from(s: &str) -> Result<Self, CapacityError> {
        s.parse()
    }
}

impl<const N: usize> fmt::Display for FixedString<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&String::from_utf8_lossy(self.as_bytes()), f)
    }
}

impl<const N: usize> fmt::Debug for FixedString<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&String::from_utf8_lossy(self.as_bytes()), f)
    }
}

impl<const N: usize> PartialEq for FixedString<N> {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl<const N: usize> Eq for FixedString<N> {}

impl<const N: usize> PartialEq<str> for FixedString<N> {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == Some(other)
    }
}

impl<const N: usize> PartialEq<&str> for FixedString<N> {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == Some(*other)
    }
}

// SAFETY: two byte arrays: every bit pattern is valid (the length is checked by every
// accessor), no pointers, no Drop, `repr(C)` with align 1 and so no padding for any N; the
// tag names the type and the capacity.
unsafe impl<const N: usize> ShmSafe for FixedString<N> {
    const TYPE_TAG: u64 = combine_tags(tag_of_name("FixedString"), N as u64);
}

/// Up to `N` elements of `T`, stored inline: usable as a value in a segment and as a field of
/// a [`shm_safe!`](crate::shm_safe) struct.
///
/// ```
/// use neocortex::FixedVec;
///
/// let mut samples = FixedVec::<u32, 8>::try_from(&[1, 2, 3][..])?;
/// samples.push(4)?;
/// assert_eq!(samples.as_slice(), &[1, 2, 3, 4]);
/// assert_eq!(samples.iter().sum::<u32>(), 10);
/// assert!(FixedVec::<u32, 2>::try_from(&[1, 2, 3][..]).is_err());
/// # Ok::<(), neocortex::CapacityError>(())
/// ```
///
/// The stored length is never trusted: [`as_slice`](Self::as_slice) clamps it to the
/// capacity, so a length written beyond it by another process reads as a full list, never
/// out of bounds. Elements aligned to 16 bytes (`u128`) are refused at compile time: the
/// list would have padding.
#[repr(C)]
pub struct FixedVec<T: ShmSafe, const N: usize> {
    /// The number of elements, little-endian (8 bytes, so the elements start aligned for any
    /// alignment up to 8 and the type has no padding).
    len: [u8; 8],
    items: [T; N],
}

impl<T: ShmSafe, const N: usize> FixedVec<T, N> {
    /// Refuses element types that would leave padding.
    const NO_PADDING: () = assert!(
        std::mem::size_of::<Self>() == 8 + std::mem::size_of::<[T; N]>(),
        "FixedVec: elements aligned to more than 8 bytes would leave padding"
    );

    /// The empty list (its unused elements are zero bytes).
    pub fn new() -> Self {
        let () = Self::NO_PADDING;
        Self {
            len: [0; 8],
            items: std::array::from_fn(|_| zeroed()),
        }
    }

    /// The capacity in elements.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// The number of elements, clamped to the capacity.
    pub fn len(&self) -> usize {
        usize::try_from(u64::from_le_bytes(self.len))
            .unwrap_or(usize::MAX)
            .min(N)
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements (the stored length clamped to the capacity).
    pub fn as_slice(&self) -> &[T] {
        &self.items[..self.len()]
    }

    /// The elements, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        let len = self.len();
        &mut self.items[..len]
    }

    /// Appends `item`.
    ///
    /// # Errors
    ///
    /// [`CapacityError`] when the list is full.
    pub fn push(&mut self, item: T) -> Result<(), CapacityError> {
        let len = self.len();
        if len == N {
            return Err(CapacityError {
                len: len + 1,
                capacity: N,
            });
        }
        self.items[len] = item;
        self.set_len(len + 1);
        Ok(())
    }

    /// Removes and returns the last element.
    pub fn pop(&mut self) -> Option<T>
    where
        T: Copy,
    {
        let len = self.len();
        let last = *self.items.get(len.checked_sub(1)?)?;
        self.set_len(len - 1);
        Some(last)
    }

    /// Empties the list.
    pub fn clear(&mut self) {
        self.set_len(0);
    }

    fn set_len(&mut self, len: usize) {
        self.len = (len as u64).to_le_bytes();
    }
}

impl<T: ShmSafe, const N: usize> Default for FixedVec<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: ShmSafe, const N: usize> Clone for FixedVec<T, N> {
    fn clone(&self) -> Self {
        let mut out = Self::new();
        copy_bits(&self.items, &mut out.items);
        out.len = self.len;
        out
    }
}

impl<T: ShmSafe + Copy, const N: usize> Copy for FixedVec<T, N> {}

impl<T: ShmSafe + Copy, const N: usize> TryFrom<&[T]> for FixedVec<T, N> {
    type Error = CapacityError;

    fn try_from(items: &[T]) -> Result<Self, CapacityError> {
        if items.len() > N {
            return Err(CapacityError {
                len: items.len(),
                capacity: N,
            });
        }
        let mut out = Self::new();
        out.items[..items.len()].copy_from_slice(items);
        out.set_len(items.len());
        Ok(out)
    }
}

impl<T: ShmSafe, const N: usize> std::ops::Deref for FixedVec<T, N> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<T: ShmSafe, const N: usize> std::ops::DerefMut for FixedVec<T, N> {
    fn deref_mut(&mut self) -> &mut [T] {
        self.as_mut_slice()
    }
}

impl<T: ShmSafe + fmt::Debug, const N: usize> fmt::Debug for FixedVec<T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

impl<T: ShmSafe + PartialEq, const N: usize> PartialEq for FixedVec<T, N> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

// SAFETY: `repr(C)` of a byte array and an array of ShmSafe elements: every bit pattern is
// valid (the length is clamped by every accessor), no pointers, no Drop of its own (and T
// has none); no padding: the elements start at offset 8, aligned for T up to 8 bytes, and
// the size is 8 plus the elements' (a multiple of their alignment) — `NO_PADDING` refuses
// any T for which this fails, and the tag's evaluation forces it.
unsafe impl<T: ShmSafe, const N: usize> ShmSafe for FixedVec<T, N> {
    const TYPE_TAG: u64 = {
        let () = Self::NO_PADDING;
        combine_tags(combine_tags(tag_of_name("FixedVec"), T::TYPE_TAG), N as u64)
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_fill_up_to_capacity_and_refuse_more() {
        let mut s = FixedString::<8>::new();
        assert!(s.is_empty());
        assert_eq!(s.capacity(), 8);
        s.push_str("abc").unwrap();
        s.push('é').unwrap();
        assert_eq!((s.len(), s.as_str()), (5, Some("abcé")));
        let err = s.push_str("1234").unwrap_err();
        assert_eq!(
            err,
            CapacityError {
                len: 9,
                capacity: 8
            }
        );
        assert_eq!(s, "abcé", "nothing appended on error");
        assert!(s == *"abcé" && s != *"abc", "compared with str");
        assert!(s != "abc", "and with &str");
        assert_eq!(
            s,
            FixedString::<8>::try_from("abcé").unwrap(),
            "and with its kind"
        );
        assert_ne!(s, FixedString::<8>::try_from("abc").unwrap());
        assert_eq!(s.to_string(), "abcé");
        assert_eq!(format!("{s:?}"), "\"abcé\"");
        s.clear();
        assert_eq!(s.as_str(), Some(""));
        assert_eq!(FixedString::<3>::try_from("abcd").unwrap_err().capacity, 3);
        assert_ne!(FixedString::<3>::TYPE_TAG, FixedString::<4>::TYPE_TAG);
        assert_eq!(std::mem::size_of::<FixedString<5>>(), 9, "no padding");
    }

    #[test]
    fn a_string_never_trusts_its_stored_bytes() {
        let mut s = FixedString::<4>::try_from("ab").unwrap();
        // A peer stored a length beyond the capacity.
        s.len = 1000u32.to_le_bytes();
        assert_eq!(s.as_str(), None);
        assert_eq!(s.as_bytes().len(), 4, "clamped");
        assert_ne!(s, "ab");
        // And bytes that are not UTF-8.
        s.len = 2u32.to_le_bytes();
        s.bytes[0] = 0xff;
        assert_eq!(s.as_str(), None);
        assert_eq!(s.to_string(), "\u{fffd}b", "shown lossily");
    }

    #[test]
    fn vecs_push_pop_and_clamp_a_stored_length() {
        assert!(FixedVec::<u16, 3>::new().is_empty());
        let mut v = FixedVec::<u16, 3>::try_from(&[7u16, 8][..]).unwrap();
        assert!(!v.is_empty());
        v.push(9).unwrap();
        assert_eq!(
            v.push(10).unwrap_err(),
            CapacityError {
                len: 4,
                capacity: 3
            }
        );
        assert_eq!(v.as_slice(), &[7, 8, 9]);
        assert_eq!(v.pop(), Some(9));
        v[0] = 70;
        assert_eq!(&*v, &[70, 8]);
        let copy = v;
        assert_eq!(copy, v);
        assert_ne!(copy, FixedVec::<u16, 3>::try_from(&[70u16][..]).unwrap());
        v.len = u64::MAX.to_le_bytes();
        assert_eq!(v.len(), 3, "a length beyond the capacity is clamped");
        v.clear();
        assert_eq!(v.pop(), None);
        assert_eq!(format!("{:?}", copy), "[70, 8]");
        assert_eq!(std::mem::size_of::<FixedVec<u8, 5>>(), 13, "no padding");
        assert_eq!(std::mem::size_of::<FixedVec<u64, 2>>(), 24, "no padding");
        assert_ne!(FixedVec::<u32, 2>::TYPE_TAG, FixedVec::<i32, 2>::TYPE_TAG);
    }

    crate::shm_safe! {
        /// A record with a name in it, as a user declares one.
        #[derive(Clone, Copy, Debug, PartialEq)]
        struct Record {
            name: FixedString<32>,
            samples: FixedVec<u32, 8>,
        }
    }

    #[test]
    fn fixed_types_nest_in_shm_safe_structs() {
        let r = Record {
            name: FixedString::try_from("pump-3").unwrap(),
            samples: FixedVec::try_from(&[1u32, 2][..]).unwrap(),
        };
        assert_eq!(r.name, "pump-3");
        assert_eq!(r.samples.len(), 2);
        assert_ne!(Record::TYPE_TAG, 0);
    }
}

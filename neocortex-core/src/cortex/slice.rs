//! Values of run-time length: `Cortex<[T], L>`.
//!
//! The header records the element's layout and the length; `attach` checks the element and
//! takes the length from the segment. Guards deref to `[T]`; `update` gives `&mut [T]`.

use super::create::with_settings;
use super::Cortex;
use crate::error::{CortexError, CortexResult};
use crate::key::Key;
use crate::marker::{copy_bits, zeroed_vec, ShmSafe};
use crate::sync::{Access, CortexSync, Wait};

impl<T: ShmSafe, L: CortexSync> Cortex<[T], L> {
    /// Creates a segment on `key` holding `len` copies of `fill`.
    ///
    /// ```
    /// use neocortex::{Cortex, Semaphore};
    ///
    /// let key = neocortex::random_key()?;
    /// let samples: Cortex<[f32], Semaphore> = Cortex::new_slice(key, 1000, 0.5, None)?;
    /// assert_eq!(samples.len(), 1000);
    /// samples.update(|s| s[999] = 1.0)?;
    /// let other: Cortex<[f32], Semaphore> = Cortex::attach(key)?; // the length comes along
    /// assert_eq!((other.len(), other.to_vec()?[999]), (1000, 1.0));
    /// # Ok::<(), neocortex::CortexError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Cortex::new`]; `InvalidInput` when `len` elements do not fit in a segment.
    pub fn new_slice(
        key: i32,
        len: usize,
        fill: T,
        settings: Option<&L::Settings>,
    ) -> CortexResult<Self>
    where
        T: Copy,
    {
        Self::new_slice_with(key, len, settings, |s| s.fill(fill))
    }

    /// Creates a segment on `key` holding `len` zero-filled elements, without touching them:
    /// the kernel zero-fills segments page by page as they are first used, so even a huge
    /// slice costs no memory until written.
    ///
    /// ```
    /// use neocortex::{Cortex, Semaphore};
    ///
    /// let key = neocortex::random_key()?;
    /// let image: Cortex<[u8], Semaphore> = Cortex::new_slice_zeroed(key, 1920 * 1080 * 4, None)?;
    /// assert!(image.lock()?.iter().take(64).all(|&b| b == 0));
    /// # Ok::<(), neocortex::CortexError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`new_slice`](Self::new_slice).
    pub fn new_slice_zeroed(
        key: i32,
        len: usize,
        settings: Option<&L::Settings>,
    ) -> CortexResult<Self> {
        Self::new_slice_with(key, len, settings, |_| ())
    }

    /// Creates a segment on `key` holding `len` elements, initialised in place by `init`
    /// (which gets them zero-filled) before any other process can see the segment as ready.
    ///
    /// # Errors
    ///
    /// As [`new_slice`](Self::new_slice).
    pub fn new_slice_with(
        key: i32,
        len: usize,
        settings: Option<&L::Settings>,
        init: impl FnOnce(&mut [T]),
    ) -> CortexResult<Self> {
        with_settings::<L, _>(settings, |settings| {
            Self::create(
                Key(key),
                len,
                settings,
                super::CreateOptions::default(),
                init,
            )
        })
    }

    /// The number of elements, as the segment's creator chose it.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the slice has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies the elements into `out`, which must have [`len`](Self::len) elements: under
    /// the shared lock, or (with `SeqLock`) optimistically.
    ///
    /// # Errors
    ///
    /// `InvalidInput` when `out` has another length; otherwise as [`Cortex::read`].
    pub fn read_into(&self, out: &mut [T]) -> CortexResult<()> {
        self.check_len("read_into", out.len())?;
        if <L::Access as Access>::OPTIMISTIC {
            return self.read_optimistic_into(out);
        }
        let guard = crate::guard::CortexReadGuard::acquire(self, Wait::Forever)?;
        guard.refuse_if_inconsistent()?;
        copy_bits(&guard, out);
        Ok(())
    }

    /// A copy of the elements in a new `Vec`.
    ///
    /// # Errors
    ///
    /// As [`Cortex::read`].
    pub fn to_vec(&self) -> CortexResult<Vec<T>> {
        // ShmSafe: zero bytes are a valid element, so the buffer can be zero-filled first.
        let mut out: Vec<T> = zeroed_vec(self.len);
        self.read_into(&mut out)?;
        Ok(out)
    }

    /// Replaces every element with `src`, which must have [`len`](Self::len) elements; like
    /// [`Cortex::write`], this repairs a value left half-written by a dead holder.
    ///
    /// # Errors
    ///
    /// `InvalidInput` when `src` has another length; otherwise as [`Cortex::write`].
    pub fn write_from(&self, src: &[T]) -> CortexResult<()> {
        self.check_len("write_from", src.len())?;
        if <L::Access as Access>::OPTIMISTIC {
            return self.write_optimistic_from(src);
        }
        let mut guard = crate::guard::CortexGuard::acquire(self, Wait::Forever)?;
        copy_bits(src, &mut guard);
        guard.mark_consistent();
        Ok(())
    }

    fn check_len(&self, op: &str, got: usize) -> CortexResult<()> {
        if got == self.len {
            Ok(())
        } else {
            Err(CortexError::InvalidInput {
                key: self.key(),
                reason: format!(
                    "{op} got {got} element(s), but the segment's slice has {}",
                    self.len
                ),
            })
        }
    }
}

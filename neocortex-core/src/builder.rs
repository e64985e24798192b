//! [`CortexBuilder`]: the seed crate's builder, with random keys, adoption, slices and huge
//! pages.

use std::marker::PhantomData;

use crate::cortex::{Cortex, CreateOptions};
use crate::error::{CortexResult, ErrorKind};
use crate::key::Key;
use crate::marker::{copy_bits, heap_copy, ShmSafe, Value};
use crate::sync::CortexSync;

/// What the builder puts in the segment.
enum Init<E> {
    /// One value (a vector of one), on the heap: the builder moves by value through every
    /// step, and a large value must not be copied onto the stack at each one.
    Value(Vec<E>),
    /// `len` elements, each a copy of `fill` (a vector of one, on the heap too), or
    /// zero-filled.
    Slice { len: usize, fill: Option<Vec<E>> },
}

/// Builds a [`Cortex`] step by step: the key (or a random one), adoption of an existing
/// segment, huge pages, then the lock.
///
/// Without [`key`](Self::key) the segment gets a random key (as with
/// [`random_key`](Self::random_key)); read it back with [`Cortex::key`].
///
/// ```
/// use neocortex::{Cortex, CortexBuilder, Semaphore, SemaphoreSettings};
///
/// let cortex: Cortex<f64, Semaphore> = CortexBuilder::new(42.0).random_key().with_default_lock()?;
/// let key = cortex.key();
/// let samples: Cortex<[u16], Semaphore> = CortexBuilder::slice(4096, 0u16)
///     .random_key()
///     .with_lock(&SemaphoreSettings::default())?;
/// assert_eq!((cortex.read()?, samples.len()), (42.0, 4096));
/// # let _ = key;
/// # Ok::<(), neocortex::CortexError>(())
/// ```
#[must_use = "a builder does nothing until with_default_lock or with_lock"]
pub struct CortexBuilder<T: ?Sized + Value> {
    init: Init<T::Elem>,
    key: Option<Key>,
    force_ownership: bool,
    huge_pages: bool,
    max_handles: u16,
    _value: PhantomData<fn() -> Box<T>>,
}

impl<T: ?Sized + Value> std::fmt::Debug for CortexBuilder<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let len = match &self.init {
            Init::Value(_) => None,
            Init::Slice { len, .. } => Some(*len),
        };
        f.debug_struct("CortexBuilder")
            .field("type", &std::any::type_name::<T>())
            .field("len", &len)
            .field("key", &self.key)
            .field("force_ownership", &self.force_ownership)
            .field("huge_pages", &self.huge_pages)
            .field("max_handles", &self.max_handles)
            .finish()
    }
}

impl<T: ShmSafe> CortexBuilder<T> {
    /// A builder for a segment holding `data`.
    pub fn new(data: T) -> Self {
        Self::with_init(Init::Value(heap_copy(&data)))
    }
}

impl<T: ShmSafe> CortexBuilder<[T]> {
    /// A builder for a segment holding `len` copies of `fill`.
    pub fn slice(len: usize, fill: T) -> Self
    where
        T: Copy,
    {
        Self::with_init(Init::Slice {
            len,
            fill: Some(heap_copy(&fill)),
        })
    }

    /// A builder for a segment holding `len` zero-filled elements (the kernel's zero pages:
    /// nothing is touched until written).
    pub fn slice_zeroed(len: usize) -> Self {
        Self::with_init(Init::Slice { len, fill: None })
    }
}

impl<T: ?Sized + Value> CortexBuilder<T> {
    fn with_init(init: Init<T::Elem>) -> Self {
        Self {
            init,
            key: None,
            force_ownership: false,
            huge_pages: false,
            max_handles: 0,
            _value: PhantomData,
        }
    }

    /// Uses `key`.
    pub fn key(mut self, key: i32) -> Self {
        self.key = Some(Key(key));
        self
    }

    /// Draws a random key from the kernel's random source, drawing again while the key is
    /// taken.
    pub fn random_key(mut self) -> Self {
        self.key = None;
        self
    }

    /// If a segment of the same type and lock already exists on the key, take it over:
    /// replace its value with the builder's under its lock (as [`Cortex::write`] does; the
    /// old value is not kept) and remove it when this handle drops, as if this process had
    /// created it. A slice keeps its own length; the builder's length must match it.
    pub fn force_ownership(mut self) -> Self {
        self.force_ownership = true;
        self
    }

    /// Backs the segment with huge pages (`SHM_HUGETLB`): fewer TLB misses for large
    /// values. The system must have huge pages reserved (`vm.nr_hugepages`); creation fails
    /// with `LimitReached` (saying so) when it has none.
    pub fn huge_pages(mut self) -> Self {
        self.huge_pages = true;
        self
    }

    /// How many handles may lock or watch the segment at once (each takes a member slot,
    /// a semaphore of the segment's members set, on its first lock or wait): 64 unless set,
    /// at most 4094 (and the system's `semmsl` less 2). Handles that only attach take none.
    pub fn max_handles(mut self, handles: u16) -> Self {
        self.max_handles = handles;
        self
    }

    /// Builds with the lock's default settings.
    ///
    /// # Errors
    ///
    /// As [`Cortex::new`], and with `force_ownership` as [`Cortex::attach`].
    pub fn with_default_lock<L: CortexSync>(self) -> CortexResult<Cortex<T, L>> {
        self.with_lock(&L::Settings::default())
    }

    /// Builds with the given lock settings.
    ///
    /// # Errors
    ///
    /// As [`Cortex::new`], and with `force_ownership` as [`Cortex::attach`].
    pub fn with_lock<L: CortexSync>(self, settings: &L::Settings) -> CortexResult<Cortex<T, L>> {
        let len = match &self.init {
            Init::Value(_) => 1,
            Init::Slice { len, .. } => *len,
        };
        let options = CreateOptions {
            random: self.key.is_none(),
            huge_pages: self.huge_pages,
            slots: self.max_handles,
        };
        let key = self.key.unwrap_or(Key(0));
        let mut used = false;
        let created = Cortex::<T, L>::create(key, len, settings, options, |slot| {
            used = true;
            fill(&self.init, T::as_elems_mut(slot));
        });
        match created {
            Err(e) if self.force_ownership && !used && e.kind() == ErrorKind::AlreadyExists => {
                let cortex = Cortex::<T, L>::adopt(key)?;
                if T::IS_SLICE && cortex.len != len {
                    return Err(crate::CortexError::InvalidInput {
                        key: key.raw(),
                        reason: format!(
                            "force_ownership: the segment's slice has {} element(s), the \
                             builder's {len}; build with the segment's length",
                            cortex.len
                        ),
                    });
                }
                cortex.replace_with(|elems| fill(&self.init, elems))?;
                Ok(cortex)
            }
            result => result,
        }
    }
}

/// Writes the builder's contents into the zero-filled (or adopted) `elems`.
fn fill<E: ShmSafe>(init: &Init<E>, elems: &mut [E]) {
    match init {
        Init::Value(data) => copy_bits(data, elems),
        Init::Slice {
            fill: Some(value), ..
        } => {
            for slot in elems.chunks_mut(1) {
                copy_bits(value, slot);
            }
        }
        Init::Slice { fill: None, .. } => {}
    }
}

//! [`ShmSafe`]: the types that may live in a shared segment, and [`Value`]: a value or a
//! slice of them.

use std::ptr::NonNull;

/// A type that may live in shared memory and be read and written by several processes.
///
/// # Safety
///
/// Implementing this trait promises all of the following for `Self`:
///
/// 1. **Every bit pattern is a valid value.** Another process (or a crash half-way through a
///    write) can leave any bytes in the segment; reading them as `Self` must not be undefined
///    behaviour. This rules out `bool`, `char`, enums, references, `NonZero*` and `Option<&T>`.
/// 2. **No pointers or handles.** An address or file descriptor means nothing in another
///    process. This rules out `Box`, `String`, `Vec`, `&T`, raw pointers and fds.
/// 3. **No `Drop`.** Segments are shared memory, not owned values: neocortex never runs a
///    destructor for a value in a segment.
/// 4. **A fixed layout.** Primitives, arrays, atomics and `#[repr(C)]` structs whose fields
///    are all `ShmSafe`, so every compiler of every process agrees on it.
/// 5. **No padding.** Every byte of a value belongs to a field. A padding byte of a value
///    written into a segment would carry whatever was in the writer's memory (old stack
///    contents) to every process that may read the segment; and readers that copy a value
///    byte by byte (`SeqLock`) rely on every byte being initialised.
/// 6. **[`TYPE_TAG`](Self::TYPE_TAG) names the type's structure**, so that a segment written
///    as one type is not attached as another of the same size.
///
/// Use the [`shm_safe!`](crate::shm_safe) macro for your own structs: it checks 3, 4 and 5
/// against the struct it defines and requires every field to be `ShmSafe`, so 1 and 2 follow.
///
/// ```compile_fail,E0277
/// fn needs<T: neocortex_core::ShmSafe>() {}
/// needs::<String>(); // owns a heap pointer
/// ```
///
/// ```compile_fail,E0277
/// fn needs<T: neocortex_core::ShmSafe>() {}
/// needs::<&'static u8>(); // an address in one process
/// ```
///
/// ```compile_fail,E0277
/// fn needs<T: neocortex_core::ShmSafe>() {}
/// needs::<bool>(); // only 0 and 1 are valid
/// ```
///
/// The same function accepts what is `ShmSafe`, so the failures above are about the types:
///
/// ```
/// fn needs<T: neocortex_core::ShmSafe>() {}
/// needs::<u64>();
/// needs::<[f32; 4]>();
/// needs::<std::sync::atomic::AtomicU32>();
/// ```
pub unsafe trait ShmSafe: Sized + Send + Sync + 'static {
    /// A structural fingerprint of the type: equal for the same type in every process,
    /// different for types a user could mix up (`u64` and `f64`, two structs of equal size).
    const TYPE_TAG: u64;
}

/// FNV-1a over `bytes`, usable in constants.
pub const fn tag_of_name(name: &str) -> u64 {
    let bytes = name.as_bytes();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

/// Mixes `part` into the tag `acc`, order-sensitively.
pub const fn combine_tags(acc: u64, part: u64) -> u64 {
    let mut x = acc
        ^ part
            .wrapping_add(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(acc << 6)
            .wrapping_add(acc >> 2);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x
}

macro_rules! impl_shm_safe {
    ($($ty:ty),* $(,)?) => {
        $(
            // SAFETY: a primitive number or atomic: every bit pattern is valid, no pointers,
            // no Drop, no padding, fixed layout; the tag is the type's own name.
            unsafe impl ShmSafe for $ty {
                const TYPE_TAG: u64 = tag_of_name(stringify!($ty));
            }
        )*
    };
}

impl_shm_safe!(
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    ()
);

use std::sync::atomic::{
    AtomicI16, AtomicI32, AtomicI64, AtomicI8, AtomicIsize, AtomicU16, AtomicU32, AtomicU64,
    AtomicU8, AtomicUsize,
};
impl_shm_safe!(
    AtomicU8,
    AtomicU16,
    AtomicU32,
    AtomicU64,
    AtomicUsize,
    AtomicI8,
    AtomicI16,
    AtomicI32,
    AtomicI64,
    AtomicIsize
);

// SAFETY: an array of `ShmSafe` elements has no padding between elements (an element's size
// is a multiple of its alignment) and inherits each element's guarantees; the tag mixes the
// element's tag with the length.
unsafe impl<T: ShmSafe, const N: usize> ShmSafe for [T; N] {
    const TYPE_TAG: u64 = combine_tags(combine_tags(tag_of_name("[;]"), T::TYPE_TAG), N as u64);
}

/// Copies `src` over `dst` bit for bit, for any `ShmSafe` type (`Copy` or not): such types
/// have no `Drop` and no padding, so a bitwise copy duplicates a value fully and leaves
/// nothing to be dropped twice.
pub(crate) fn copy_bits<E: ShmSafe>(src: &[E], dst: &mut [E]) {
    let n = src.len().min(dst.len());
    // SAFETY: both slices hold at least `n` elements and cannot overlap (`dst` is borrowed
    // mutably); E: ShmSafe has no Drop glue (see above).
    unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst.as_mut_ptr(), n) };
}

/// A copy of `value` on the heap, made without a copy on the stack (a large value must fit
/// a thread's stack even in a debug build, where every move is a copy).
pub(crate) fn heap_copy<E: ShmSafe>(value: &E) -> Vec<E> {
    let mut copy: Vec<E> = Vec::with_capacity(1);
    // SAFETY: `copy` has room for one E and does not overlap `value`; E: ShmSafe has no Drop
    // glue, so the bitwise copy is a full duplicate and nothing is dropped twice.
    unsafe { std::ptr::copy_nonoverlapping(value, copy.as_mut_ptr(), 1) };
    // SAFETY: the one element was initialised just above.
    unsafe { copy.set_len(1) };
    copy
}

/// Room for one `E` on the heap, to be filled through [`as_mut_ptr`](Self::as_mut_ptr) and
/// then moved out whole: a large value read without a buffer on the stack.
pub(crate) struct HeapBuffer<E: ShmSafe> {
    ptr: std::ptr::NonNull<E>,
}

impl<E: ShmSafe> HeapBuffer<E> {
    const LAYOUT: std::alloc::Layout = std::alloc::Layout::new::<E>();

    /// Uninitialised room for one `E`.
    pub(crate) fn new() -> Self {
        if Self::LAYOUT.size() == 0 {
            return Self {
                ptr: std::ptr::NonNull::dangling(),
            };
        }
        // SAFETY: the layout's size is not zero (checked above).
        let raw = unsafe { std::alloc::alloc(Self::LAYOUT) };
        let ptr = std::ptr::NonNull::new(raw.cast::<E>())
            .unwrap_or_else(|| std::alloc::handle_alloc_error(Self::LAYOUT));
        Self { ptr }
    }

    /// Where to write the value's `size_of::<E>()` bytes.
    pub(crate) fn as_mut_ptr(&mut self) -> *mut E {
        self.ptr.as_ptr()
    }

    /// The value, moved out of the buffer, which is freed.
    ///
    /// # Safety
    ///
    /// Every byte of the value was written through [`as_mut_ptr`](Self::as_mut_ptr).
    pub(crate) unsafe fn into_value(self) -> E {
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: `ptr` came from the global allocator with `Layout::new::<E>()` (or is the
        // dangling pointer Box uses for a zero-sized E), holds an initialised E (the caller's
        // promise), and is owned by nobody else once `this` will not be dropped; so it is a
        // valid Box<E>, and moving out of it frees the allocation.
        let boxed = unsafe { Box::from_raw(this.ptr.as_ptr()) };
        *boxed
    }
}

impl<E: ShmSafe> Drop for HeapBuffer<E> {
    fn drop(&mut self) {
        if Self::LAYOUT.size() != 0 {
            // SAFETY: allocated in `new` with this layout and not freed (`into_value` does not
            // drop `self`); E: ShmSafe has no Drop glue, so nothing in it needs dropping.
            unsafe { std::alloc::dealloc(self.ptr.as_ptr().cast(), Self::LAYOUT) };
        }
    }
}

/// A vector of `len` all-zero elements, zero-filled in place (no element is built on the
/// stack first).
pub(crate) fn zeroed_vec<E: ShmSafe>(len: usize) -> Vec<E> {
    let mut elems: Vec<E> = Vec::with_capacity(len);
    // SAFETY: the vector has room for `len` elements; zero bytes are a valid E (ShmSafe).
    unsafe { std::ptr::write_bytes(elems.as_mut_ptr(), 0, len) };
    // SAFETY: the `len` elements were initialised just above.
    unsafe { elems.set_len(len) };
    elems
}

/// A value of all zero bytes: valid for every `ShmSafe` type.
pub(crate) fn zeroed<E: ShmSafe>() -> E {
    // SAFETY: ShmSafe types are valid for every bit pattern, all zeros included.
    unsafe { std::mem::zeroed() }
}

mod sealed {
    pub trait Sealed {}
    impl<T: super::ShmSafe> Sealed for T {}
    impl<T: super::ShmSafe> Sealed for [T] {}
}

/// What a segment holds: one [`ShmSafe`] value `T`, or a slice `[T]` whose length is chosen
/// when the segment is created.
///
/// `Cortex<T, L>` and `Cortex<[T], L>` are both built on it. It is implemented for every
/// `ShmSafe` type and every slice of one, and cannot be implemented elsewhere.
pub trait Value: sealed::Sealed + Send + Sync + 'static {
    /// The element: `T` itself, or the slice's element type.
    type Elem: ShmSafe;

    /// Whether this is a slice, whose length the header records.
    const IS_SLICE: bool;

    /// A pointer to the value made of `len` elements at `elems`.
    #[doc(hidden)]
    fn from_elems(elems: NonNull<Self::Elem>, len: usize) -> NonNull<Self>;

    /// The value as its elements.
    #[doc(hidden)]
    fn as_elems_mut(&mut self) -> &mut [Self::Elem];
}

impl<T: ShmSafe> Value for T {
    type Elem = T;
    const IS_SLICE: bool = false;

    #[inline(always)]
    fn from_elems(elems: NonNull<T>, _len: usize) -> NonNull<T> {
        elems
    }

    fn as_elems_mut(&mut self) -> &mut [T] {
        std::slice::from_mut(self)
    }
}

impl<T: ShmSafe> Value for [T] {
    type Elem = T;
    const IS_SLICE: bool = true;

    #[inline(always)]
    fn from_elems(elems: NonNull<T>, len: usize) -> NonNull<[T]> {
        NonNull::slice_from_raw_parts(elems, len)
    }

    fn as_elems_mut(&mut self) -> &mut [T] {
        self
    }
}

/// Declares a `#[repr(C)]` struct and implements [`ShmSafe`] for it, checking every field.
///
/// The checks are tied to the struct the macro defines, so nothing at the call site can
/// point them at another type:
///
/// - every field's type is `ShmSafe` (so valid for every bit pattern and free of pointers),
///   and an exhaustive pattern over exactly these fields, with these types, must match the
///   struct;
/// - the struct has no padding: each field starts where the one before it ends and the size
///   is the sum of the fields (add explicit fields such as `_pad: [u8; 3]` where alignment
///   would leave a gap);
/// - it has no `Drop`;
/// - it gets `#[repr(C)]`.
///
/// Doc comments, `#[derive(...)]`, `#[repr(C)]` and lint attributes (`allow`, `expect`,
/// `warn`, `deny`) pass through. Anything else (`cfg`, `cfg_attr`, attribute macros, other
/// `repr`s) is refused, because it could change or remove the struct the checks are about.
/// Generic and tuple structs are not supported. Every path the macro expands to is absolute,
/// so a call-site macro named `assert` or `concat` cannot switch a check off.
///
/// ```
/// neocortex_core::shm_safe! {
///     /// A sample written by one process and read by others.
///     #[derive(Clone, Copy, Debug, Default, PartialEq)]
///     pub struct Sample {
///         pub sequence: u64,
///         pub values: [f32; 4],
///     }
/// }
/// neocortex_core::shm_safe! {
///     #[derive(Clone, Copy)]
///     pub struct Pair {
///         /// Structs nest.
///         pub first: Sample,
///         pub second: Sample,
///     }
/// }
/// # fn needs<T: neocortex_core::ShmSafe>() {}
/// # needs::<Pair>();
/// ```
///
/// A field that is not `ShmSafe` does not compile:
///
/// ```compile_fail,E0277
/// neocortex_core::shm_safe! {
///     pub struct Bad { pub flag: bool }
/// }
/// ```
///
/// Nor does padding (a `u8` followed by a `u64` leaves 7 bytes unnamed):
///
/// ```compile_fail,E0080
/// neocortex_core::shm_safe! {
///     pub struct Gappy { pub small: u8, pub big: u64 }
/// }
/// ```
///
/// while the same fields with the gap named do:
///
/// ```
/// neocortex_core::shm_safe! {
///     pub struct Filled { pub small: u8, pub _pad: [u8; 7], pub big: u64 }
/// }
/// ```
///
/// Nor does a destructor:
///
/// ```compile_fail,E0080
/// neocortex_core::shm_safe! {
///     pub struct Counted { pub n: u32 }
/// }
/// impl Drop for Counted { fn drop(&mut self) {} }
/// ```
#[macro_export]
macro_rules! shm_safe {
    (
        $(#[$($attr:tt)*])*
        $vis:vis struct $name:ident {
            $( $(#[$($fattr:tt)*])* $fvis:vis $field:ident : $fty:ty ),* $(,)?
        }
    ) => {
        $( $crate::__shm_safe_struct_attribute! { [$($attr)*] } )*
        $( $( $crate::__shm_safe_field_attribute! { $field [$($fattr)*] } )* )*

        $(#[$($attr)*])*
        #[repr(C)]
        $vis struct $name {
            $( $(#[$($fattr)*])* $fvis $field : $fty ),*
        }

        const _: () = {
            const fn field_is_shm_safe<T: $crate::ShmSafe>() {}
            $( field_is_shm_safe::<$fty>(); )*

            // Exactly these fields, with exactly these types, make up the struct named
            // `$name` here: the checks below are about the struct defined above, even if an
            // attribute macro (a shadowed `derive`) rewrote it. The fields are taken by
            // value, where no deref coercion applies: a `&u64` field is not a `u64`.
            #[allow(dead_code, clippy::needless_pass_by_value)]
            fn fields_are_exactly(value: $name) {
                let $name { $( $field ),* } = value;
                $( let _: $fty = $field; )*
            }

            // No padding: each field starts where the previous one ended, in order.
            let mut end: usize = 0;
            $(
                ::core::assert!(
                    ::core::mem::offset_of!($name, $field) == end,
                    ::core::concat!(
                        "shm_safe!: `", ::core::stringify!($name), "` has padding before field `",
                        ::core::stringify!($field), "`: add an explicit field (such as `_pad: [u8; N]`) ",
                        "that fills the gap, or reorder the fields from the largest alignment down"
                    ),
                );
                end = ::core::mem::offset_of!($name, $field) + ::core::mem::size_of::<$fty>();
            )*
            ::core::assert!(
                ::core::mem::size_of::<$name>() == end,
                ::core::concat!(
                    "shm_safe!: `", ::core::stringify!($name), "` has padding after its last field: ",
                    "add an explicit field (such as `_pad: [u8; N]`) at the end"
                ),
            );
            ::core::assert!(
                !::core::mem::needs_drop::<$name>(),
                ::core::concat!("shm_safe!: a ShmSafe type must not implement Drop: ", ::core::stringify!($name)),
            );
        };

        // SAFETY: `#[repr(C)]` is applied above, every field is checked to be `ShmSafe` (so
        // valid for every bit pattern, free of pointers and of padding), the offsets prove
        // there is no padding between or after the fields, and `needs_drop` is false; the
        // exhaustive pattern ties these checks to this very struct.
        unsafe impl $crate::ShmSafe for $name {
            const TYPE_TAG: u64 = {
                let mut tag = $crate::marker::tag_of_name(::core::stringify!($name));
                $(
                    tag = $crate::marker::combine_tags(tag, $crate::marker::tag_of_name(::core::stringify!($field)));
                    tag = $crate::marker::combine_tags(tag, <$fty as $crate::ShmSafe>::TYPE_TAG);
                )*
                tag
            };
        }
    };
}

/// Accepts the attributes [`shm_safe!`] lets through on the struct; refuses every other one.
#[doc(hidden)]
#[macro_export]
macro_rules! __shm_safe_struct_attribute {
    ([doc $($rest:tt)*]) => {};
    ([derive $($rest:tt)*]) => {};
    ([repr(C)]) => {};
    ([allow $($rest:tt)*]) => {};
    ([expect $($rest:tt)*]) => {};
    ([warn $($rest:tt)*]) => {};
    ([deny $($rest:tt)*]) => {};
    ([$($other:tt)*]) => {
        ::core::compile_error!(::core::concat!(
            "shm_safe!: the attribute `#[", ::core::stringify!($($other)*), "]` is not supported: ",
            "it could change or remove the struct whose fields are checked. Supported: doc ",
            "comments, derive, repr(C), and lint levels (allow, expect, warn, deny)."
        ));
    };
}

/// Accepts the attributes [`shm_safe!`] lets through on a field; refuses every other one.
#[doc(hidden)]
#[macro_export]
macro_rules! __shm_safe_field_attribute {
    ($field:ident [doc $($rest:tt)*]) => {};
    ($field:ident [allow $($rest:tt)*]) => {};
    ($field:ident [expect $($rest:tt)*]) => {};
    ($field:ident [warn $($rest:tt)*]) => {};
    ($field:ident [deny $($rest:tt)*]) => {};
    ($field:ident [$($other:tt)*]) => {
        ::core::compile_error!(::core::concat!(
            "shm_safe!: the attribute `#[", ::core::stringify!($($other)*), "]` on field `",
            ::core::stringify!($field), "` is not supported: it could remove or change the ",
            "field. Supported: doc comments and lint levels (allow, expect, warn, deny)."
        ));
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::shm_safe! {
        #[derive(Clone, Copy)]
        struct A { x: u32, y: u32 }
    }
    crate::shm_safe! {
        #[derive(Clone, Copy)]
        struct B { x: u32, y: f32 }
    }
    crate::shm_safe! {
        #[derive(Clone, Copy)]
        struct C { y: u32, x: u32 }
    }

    #[test]
    fn tags_tell_apart_types_of_equal_size() {
        assert_ne!(u64::TYPE_TAG, f64::TYPE_TAG);
        assert_ne!(i64::TYPE_TAG, u64::TYPE_TAG);
        assert_ne!(<[u8; 8]>::TYPE_TAG, u64::TYPE_TAG);
        assert_ne!(<[u8; 8]>::TYPE_TAG, <[u8; 9]>::TYPE_TAG);
        assert_ne!(<[u16; 4]>::TYPE_TAG, <[u8; 8]>::TYPE_TAG);
        assert_ne!(A::TYPE_TAG, B::TYPE_TAG);
        assert_ne!(A::TYPE_TAG, C::TYPE_TAG);
        assert_eq!(A::TYPE_TAG, A::TYPE_TAG);
        let _ = (A { x: 1, y: 2 }.x, B { x: 1, y: 2.0 }.y, C { y: 1, x: 2 }.x);
    }

    #[test]
    fn tag_of_name_is_fnv1a() {
        assert_eq!(tag_of_name(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(tag_of_name("a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn values_and_slices_point_at_their_elements() {
        let mut backing = [1u32, 2, 3];
        let elems = NonNull::from(&mut backing).cast::<u32>();
        let one = <u32 as Value>::from_elems(elems, 3);
        let all = <[u32] as Value>::from_elems(elems, 3);
        // SAFETY: points into `backing`, which is live and not otherwise borrowed.
        let one = unsafe { *one.as_ptr() };
        // SAFETY: as above.
        let all = unsafe { &*all.as_ptr() };
        assert_eq!((one, all), (1, &[1, 2, 3][..]));
        const { assert!(!<u32 as Value>::IS_SLICE && <[u32] as Value>::IS_SLICE) };
    }
}

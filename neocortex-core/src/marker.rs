//! [`ShmSafe`]: the types that may live in a shared segment.

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
/// 5. **[`TYPE_TAG`](Self::TYPE_TAG) names the type's structure**, so that a segment written
///    as one type is not attached as another of the same size.
///
/// Use the [`shm_safe!`](crate::shm_safe) macro for your own structs: it checks 3 and 4 and
/// requires every field to be `ShmSafe`, so 1 and 2 follow.
///
/// ```compile_fail
/// # use neocortex_core::{Cortex, CortexSync};
/// fn needs<T: neocortex_core::ShmSafe>() {}
/// needs::<String>(); // owns a heap pointer
/// ```
///
/// ```compile_fail
/// fn needs<T: neocortex_core::ShmSafe>() {}
/// needs::<&'static u8>(); // an address in one process
/// ```
///
/// ```compile_fail
/// fn needs<T: neocortex_core::ShmSafe>() {}
/// needs::<bool>(); // only 0 and 1 are valid
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
            // no Drop, fixed layout; the tag is the type's own name.
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

// SAFETY: an array of `ShmSafe` elements has no padding between elements and inherits each
// element's guarantees; the tag mixes the element's tag with the length.
unsafe impl<T: ShmSafe, const N: usize> ShmSafe for [T; N] {
    const TYPE_TAG: u64 = combine_tags(combine_tags(tag_of_name("[;]"), T::TYPE_TAG), N as u64);
}

/// Declares a `#[repr(C)]` struct and implements [`ShmSafe`] for it, checking every field.
///
/// Every field type must be `ShmSafe` (checked at compile time), the struct gets
/// `#[repr(C)]`, and a `Drop` implementation is refused at compile time. Attributes such as
/// `#[derive(Clone, Copy, Debug)]` pass through; generic structs are not supported.
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
/// # fn needs<T: neocortex_core::ShmSafe>() {}
/// # needs::<Sample>();
/// ```
///
/// A field that is not `ShmSafe` does not compile:
///
/// ```compile_fail
/// neocortex_core::shm_safe! {
///     pub struct Bad { pub flag: bool }
/// }
/// ```
///
/// Nor does a destructor:
///
/// ```compile_fail
/// neocortex_core::shm_safe! {
///     pub struct Counted { pub n: u32 }
/// }
/// impl Drop for Counted { fn drop(&mut self) {} }
/// ```
#[macro_export]
macro_rules! shm_safe {
    (
        $(#[$attr:meta])*
        $vis:vis struct $name:ident {
            $( $(#[$fattr:meta])* $fvis:vis $field:ident : $fty:ty ),* $(,)?
        }
    ) => {
        $(#[$attr])*
        #[repr(C)]
        $vis struct $name {
            $( $(#[$fattr])* $fvis $field : $fty ),*
        }

        const _: () = {
            const fn field_is_shm_safe<T: $crate::ShmSafe>() {}
            $( field_is_shm_safe::<$fty>(); )*
            assert!(
                !::core::mem::needs_drop::<$name>(),
                concat!("a ShmSafe type must not implement Drop: ", stringify!($name)),
            );
        };

        // SAFETY: `#[repr(C)]` is applied above, every field is checked to be `ShmSafe`
        // (so valid for every bit pattern and free of pointers), and `needs_drop` is false.
        unsafe impl $crate::ShmSafe for $name {
            const TYPE_TAG: u64 = {
                let mut tag = $crate::marker::tag_of_name(stringify!($name));
                $(
                    tag = $crate::marker::combine_tags(tag, $crate::marker::tag_of_name(stringify!($field)));
                    tag = $crate::marker::combine_tags(tag, <$fty as $crate::ShmSafe>::TYPE_TAG);
                )*
                tag
            };
        }
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
}

// What `shm_safe!` must keep accepting: doc comments, derives, an explicit `repr(C)`, lint
// levels on the struct and its fields, every visibility, nested `shm_safe!` types, arrays,
// atomics, and the fixed-capacity text and list types.
#![deny(warnings)]

use std::sync::atomic::AtomicU32;

use neocortex_core::{FixedString, FixedVec, ShmSafe};

neocortex_core::shm_safe! {
    /// A point.
    #[doc = "Documented twice, both ways."]
    #[derive(Clone, Copy, Debug, Default, PartialEq)]
    #[repr(C)]
    #[allow(dead_code)]
    #[warn(missing_debug_implementations)]
    #[deny(non_camel_case_types)]
    pub struct Point {
        /// Across.
        pub x: f64,
        #[allow(unused)]
        pub(crate) y: f64,
    }
}

neocortex_core::shm_safe! {
    #[derive(Clone, Copy, Debug, Default, PartialEq)]
    pub struct Record {
        pub id: u64,
        pub corners: [Point; 4],
        pub samples: FixedVec<u32, 8>,
        pub name: FixedString<36>,
    }
}

neocortex_core::shm_safe! {
    #[derive(Debug, Default)]
    pub struct Counters {
        pub hits: AtomicU32,
        pub misses: AtomicU32,
        pub bytes: [u8; 8],
    }
}

neocortex_core::shm_safe! {
    /// Named padding is fine: every byte belongs to a field.
    #[derive(Clone, Copy)]
    struct Filled {
        small: u8,
        _pad: [u8; 7],
        big: u64,
    }
}

fn needs<T: ShmSafe>() -> u64 {
    T::TYPE_TAG
}

fn main() {
    let tags = [
        needs::<Point>(),
        needs::<Record>(),
        needs::<Counters>(),
        needs::<Filled>(),
    ];
    for (i, a) in tags.iter().enumerate() {
        for b in &tags[i + 1..] {
            assert_ne!(a, b);
        }
    }
    let record = Record {
        name: FixedString::try_from("pump-3").unwrap(),
        samples: FixedVec::try_from(&[1u32, 2, 3][..]).unwrap(),
        corners: [Point { x: 1.0, y: 2.0 }; 4],
        id: 7,
    };
    assert_eq!(record.name, "pump-3");
    assert_eq!(record.corners[3].y, 2.0);
    let filled = Filled {
        small: 1,
        _pad: [0; 7],
        big: 2,
    };
    assert_eq!((filled.small, filled._pad[0], filled.big), (1, 0, 2));
    assert_eq!(std::mem::size_of::<Record>(), 8 + 4 * 16 + (8 + 4 * 8) + (4 + 36));
    let _ = Counters::default();
}

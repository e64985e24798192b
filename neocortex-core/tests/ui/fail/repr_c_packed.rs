// `repr(C, packed)` and `repr(align(..))` are other reprs than `repr(C)`: refused.
neocortex_core::shm_safe! {
    #[repr(C, packed)]
    pub struct Packed {
        pub small: u8,
        pub big: u64,
    }
}

neocortex_core::shm_safe! {
    #[repr(align(64))]
    pub struct Aligned {
        pub value: u64,
    }
}

fn main() {}

// `repr(packed)` would let fields sit unaligned; only `repr(C)` is accepted.
neocortex_core::shm_safe! {
    #[repr(packed)]
    pub struct Packed {
        pub small: u8,
        pub big: u64,
    }
}

fn main() {}

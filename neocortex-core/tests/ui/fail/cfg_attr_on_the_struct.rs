// `cfg_attr` could add any attribute (here `repr(packed)`) behind the macro's back.
neocortex_core::shm_safe! {
    #[cfg_attr(all(), repr(packed))]
    pub struct Packed {
        pub small: u8,
        pub big: u64,
    }
}

fn main() {}

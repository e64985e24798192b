// Seven bytes of padding after `small`, the last field, to round the size up to 16.
neocortex_core::shm_safe! {
    pub struct Tail {
        pub big: u64,
        pub small: u8,
    }
}

fn main() {}

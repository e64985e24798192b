// Seven bytes of padding between `small` and `big`: the message names the field after the
// gap.
neocortex_core::shm_safe! {
    pub struct Gappy {
        pub small: u8,
        pub big: u64,
    }
}

fn main() {}

// `bool` is valid only as 0 or 1: not every bit pattern.
neocortex_core::shm_safe! {
    pub struct Flag {
        pub flag: bool,
    }
}

fn main() {}

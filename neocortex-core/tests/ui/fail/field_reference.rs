// A reference is an address in one process.
neocortex_core::shm_safe! {
    pub struct Pointing {
        pub target: &'static u8,
    }
}

fn main() {}

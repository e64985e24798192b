// neocortex never runs a destructor for a value in a segment: a `Drop` type is refused.
neocortex_core::shm_safe! {
    pub struct Counted {
        pub n: u64,
    }
}

impl Drop for Counted {
    fn drop(&mut self) {}
}

fn main() {}

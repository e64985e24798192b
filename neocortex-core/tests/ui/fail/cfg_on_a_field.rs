// A `cfg` on a field could remove it from the struct while the checks still name it.
neocortex_core::shm_safe! {
    pub struct Thinned {
        pub first: u64,
        #[cfg(any())]
        pub second: u64,
    }
}

fn main() {}

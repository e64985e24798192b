// A `String` owns a heap pointer (and has a destructor).
neocortex_core::shm_safe! {
    pub struct Named {
        pub name: String,
    }
}

fn main() {}

// Issue 8: `#[cfg(any())]` removes the struct the macro defines, and a twin of the same name
// holding a reference takes its place; every check must still be about the struct written
// in the macro, so this must not compile (if it did, `Twin` would be `ShmSafe` with a
// pointer in it).
neocortex_core::shm_safe! {
    #[cfg(any())]
    pub struct Twin {
        pub value: u64,
    }
}

pub struct Twin {
    pub value: &'static u64,
}

fn main() {}

// A hole found while writing these tests: `derive` is a prelude macro, so a `use` can shadow
// it with any attribute macro, and `shm_safe!` lets `#[derive(...)]` through by name. Here
// `macro_rules_attribute::apply` hands the struct to a `macro_rules!` macro that swaps in a
// twin holding a reference. The checks do not see it: the field's type is tied with
// `let _: &u64 = field` where `field: &&'static u64`, which deref coercion accepts, and the
// size, offsets and `needs_drop` are the same. So this compiles, and `Twin` is `ShmSafe`
// with a pointer in it; it must not compile.
use macro_rules_attribute::apply as derive;

macro_rules! swap_in_a_reference {
    ($($item:tt)*) => {
        pub struct Twin {
            pub value: &'static u64,
        }
    };
}

neocortex_core::shm_safe! {
    #[derive(swap_in_a_reference!)]
    pub struct Twin {
        pub value: u64,
    }
}

fn needs<T: neocortex_core::ShmSafe>() {}

fn main() {
    needs::<Twin>();
}

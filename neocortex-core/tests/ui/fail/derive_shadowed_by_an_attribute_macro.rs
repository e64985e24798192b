// `derive` is a prelude macro, so a `use` can shadow it with any attribute macro, and
// `shm_safe!` lets `#[derive(...)]` through by name. Here `macro_rules_attribute::apply`
// hands the struct to a `macro_rules!` macro that swaps in a twin holding a reference, with
// the same size, offsets and `needs_drop`. The fields are checked by value, where no deref
// coercion turns a `&'static u64` into the declared `u64`: this must not compile.
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

// A built-in attribute that the macro does not list is refused too, even one that does
// nothing to the layout: the list of accepted attributes is closed.
neocortex_core::shm_safe! {
    #[must_use]
    pub struct Marked {
        pub value: u64,
    }
}

fn main() {}

// An attribute nobody defined (an attribute macro could rewrite the struct after the
// macro's checks were written against it): refused by the macro, whatever else rustc says.
neocortex_core::shm_safe! {
    #[frobnicate]
    pub struct Rewritten {
        pub value: u64,
    }
}

fn main() {}

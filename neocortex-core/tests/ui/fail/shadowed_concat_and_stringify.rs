// Call-site `concat!`, `stringify!`, `offset_of!` and `compile_error!` that would turn the
// checks and their messages into nothing: the macro calls them by absolute path, so both
// the destructor and the refused attribute are still caught.
macro_rules! concat {
    ($($anything:tt)*) => {
        ""
    };
}
macro_rules! stringify {
    ($($anything:tt)*) => {
        ""
    };
}
macro_rules! offset_of {
    ($($anything:tt)*) => {
        0
    };
}
macro_rules! compile_error {
    ($($anything:tt)*) => {};
}

neocortex_core::shm_safe! {
    pub struct Counted {
        pub n: u64,
    }
}

impl Drop for Counted {
    fn drop(&mut self) {}
}

neocortex_core::shm_safe! {
    #[cfg(any())]
    pub struct Gone {
        pub n: u64,
    }
}

fn main() {
    let _ = (concat!(), stringify!(), offset_of!(), 0);
    compile_error!();
}

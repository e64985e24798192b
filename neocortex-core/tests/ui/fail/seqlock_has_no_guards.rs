// A `SeqLock` value is only ever copied with atomics: there is no `&mut T` guard, so
// `lock()` and `lock_shared()` do not exist for `Cortex<T, SeqLock>`.
use neocortex::{Cortex, SeqLock};

fn main() {
    let cortex: Cortex<u64, SeqLock> = Cortex::attach(1).unwrap();
    let _exclusive = cortex.lock();
    let _shared = cortex.lock_shared();
}

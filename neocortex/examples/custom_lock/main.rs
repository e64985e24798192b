//! A lock of your own: `Cortex<T, SpinLock>` with a lock written outside neocortex.
//!
//! ```text
//! cargo run -p neocortex --example custom_lock
//! ```

mod spinlock;

use neocortex_core::{Cortex, CortexBuilder};
use spinlock::SpinLock;

fn main() -> Result<(), neocortex_core::CortexError> {
    let counter: Cortex<u64, SpinLock> =
        CortexBuilder::new(0u64).random_key().with_default_lock()?;
    let key = counter.key();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || -> Result<(), neocortex_core::CortexError> {
                let mine: Cortex<u64, SpinLock> = Cortex::attach(key)?;
                for _ in 0..10_000 {
                    *mine.lock()? += 1;
                }
                Ok(())
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("worker panicked")?;
    }
    println!(
        "4 attachments x 10000 increments under the spinlock = {}",
        counter.read()?
    );
    assert_eq!(counter.read()?, 40_000);
    Ok(())
}

//! In-process criterion figures: uncontended `read()` of a `u64` and `write()` of a 4 KiB
//! value, for each neocortex lock and for the seed crate (`neocortex` 3.0.3). (`Mutex` is
//! another name of `Semaphore`, so it is not measured twice.)
//!
//! ```text
//! cargo bench -p neocortex-benches --bench uncontended
//! ```
//!
//! The cross-process cases and the other peers are in the `compare` binary.

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion};
use neocortex::CortexSync;
use neocortex::{RwSemaphore, Semaphore, SeqLock, SysvSemaphore};
use neocortex_benches::cleanup::sweep;
use neocortex_benches::subjects::{new_cortex, new_seed, PAGE};

fn read_neocortex<L: CortexSync>(g: &mut BenchmarkGroup<'_, WallTime>, name: &str) {
    let c = new_cortex::<u64, L>(7).expect("create the segment");
    g.bench_function(name, |b| b.iter(|| c.read().expect("read")));
}

fn write_neocortex<L: CortexSync>(g: &mut BenchmarkGroup<'_, WallTime>, name: &str) {
    let c = new_cortex::<[u8; PAGE], L>([0; PAGE]).expect("create the segment");
    let v = [0x5a_u8; PAGE];
    g.bench_function(name, |b| b.iter(|| c.write(black_box(v)).expect("write")));
}

fn uncontended_read_u64(c: &mut Criterion) {
    let mut g = c.benchmark_group("uncontended_read_u64");
    read_neocortex::<Semaphore>(&mut g, "neocortex-semaphore");
    read_neocortex::<SysvSemaphore>(&mut g, "neocortex-sysvsemaphore");
    read_neocortex::<RwSemaphore>(&mut g, "neocortex-rwsemaphore");
    read_neocortex::<SeqLock>(&mut g, "neocortex-seqlock");
    let seed = new_seed(7u64).expect("create the seed segment");
    g.bench_function("seed-neocortex-3.0.3", |b| {
        b.iter(|| seed.read().expect("read"))
    });
    g.finish();
    drop(seed);
    sweep();
}

fn uncontended_write_4k(c: &mut Criterion) {
    let mut g = c.benchmark_group("uncontended_write_4k");
    write_neocortex::<Semaphore>(&mut g, "neocortex-semaphore");
    write_neocortex::<SysvSemaphore>(&mut g, "neocortex-sysvsemaphore");
    write_neocortex::<RwSemaphore>(&mut g, "neocortex-rwsemaphore");
    write_neocortex::<SeqLock>(&mut g, "neocortex-seqlock");
    let v = [0x5a_u8; PAGE];
    let seed = new_seed(v).expect("create the seed segment");
    g.bench_function("seed-neocortex-3.0.3", |b| {
        b.iter(|| seed.write(black_box(v)).expect("write"))
    });
    g.finish();
    drop(seed);
    sweep();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
}

// What `criterion_group!`/`criterion_main!` expand to, written out so that it stays
// documented under the workspace's `missing_docs` lint.
fn main() {
    let mut c = config().configure_from_args();
    uncontended_read_u64(&mut c);
    uncontended_write_4k(&mut c);
    Criterion::default().configure_from_args().final_summary();
}

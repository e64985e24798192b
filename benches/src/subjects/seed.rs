//! The seed crate, `neocortex` 3.0.3 from crates.io, with its POSIX semaphore lock.

use std::hint::black_box;
use std::rc::Rc;

use seed_neocortex::{Cortex as SeedCortex, Semaphore as SeedSemaphore};

use super::{read_4k_batch, show, side, timed, Case, Payload, Setup, PAGE};
use crate::cleanup::{key_for, Leftover};
use crate::contended::Pair;
use crate::measure::Batch;

fn seed_key() -> i32 {
    key_for(Leftover::Seed)
}

fn seed_new<T>(key: i32, value: T) -> Result<SeedCortex<T, SeedSemaphore>, String> {
    SeedCortex::<T, SeedSemaphore>::new(Some(key), value, false, None).map_err(show)
}

/// Creates a seed-crate segment holding `value` on a fresh key that the
/// [sweep](crate::cleanup::sweep) knows about.
///
/// # Errors
///
/// The creation error, as text.
pub fn new_seed<T>(value: T) -> Result<SeedCortex<T, SeedSemaphore>, String> {
    seed_new(seed_key(), value)
}

struct SeedPair<T> {
    key: i32,
    _owner: SeedCortex<T, SeedSemaphore>,
}

impl<T: Payload> SeedPair<T> {
    fn new() -> Result<Self, String> {
        let key = seed_key();
        Ok(Self {
            key,
            _owner: seed_new(key, T::initial())?,
        })
    }
}

impl<T: Payload> Pair for SeedPair<T> {
    fn worker(&self, role: usize) -> Result<Batch<'_>, String> {
        let c = Rc::new(SeedCortex::<T, SeedSemaphore>::attach(self.key).map_err(show)?);
        let r = c.clone();
        Ok(side::<T>(
            role,
            move |v| c.write(v).expect("seed write"),
            move || r.read().expect("seed read"),
        ))
    }
}

/// Builds what the seed crate runs for `case`.
///
/// # Errors
///
/// A message saying why creating the segment failed.
pub fn setup(case: Case) -> Result<Setup, String> {
    match case {
        Case::ReadU64 => {
            let c = new_seed(7u64)?;
            timed(move |n| {
                for _ in 0..n {
                    black_box(c.read().expect("seed read"));
                }
            })
        }
        Case::Read4k => {
            let c = new_seed(<[u8; PAGE]>::initial())?;
            read_4k_batch(move || c.read().expect("seed read"))
        }
        Case::Write4k => {
            let v = <[u8; PAGE]>::initial();
            let c = new_seed(v)?;
            timed(move |n| {
                for _ in 0..n {
                    c.write(black_box(v)).expect("seed write");
                }
            })
        }
        Case::Contended8b => Ok(Setup::Processes(Box::new(SeedPair::<u64>::new()?))),
        Case::Seqlock1w1r => Ok(Setup::SoloAndPair(Box::new(SeedPair::<u64>::new()?))),
        Case::Contended4k => Ok(Setup::Processes(Box::new(SeedPair::<[u8; PAGE]>::new()?))),
        Case::CreateDrop => {
            let key = seed_key();
            timed(move |n| {
                for _ in 0..n {
                    drop(black_box(seed_new(key, 7u64).expect("seed create")));
                }
            })
        }
        Case::AttachDetach => {
            let key = seed_key();
            let owner = seed_new(key, 7u64)?;
            timed(move |n| {
                let _owner = &owner;
                for _ in 0..n {
                    drop(black_box(
                        SeedCortex::<u64, SeedSemaphore>::attach(key).expect("seed attach"),
                    ));
                }
            })
        }
        Case::Inplace64m => Ok(Setup::Unsupported(
            "no guard or in-place access: `write()` takes the 64 MiB value by value, \
             through the stack",
        )),
        Case::SliceRead1m => Ok(Setup::Unsupported(
            "no slices: a 1 MiB array would go by value through the stack",
        )),
        Case::Takeover => Ok(Setup::Unsupported(
            "a POSIX semaphore stays taken when its holder dies: the waiter would wait forever",
        )),
        Case::NotifyRoundtrip => Ok(Setup::Unsupported(
            "no change notification: a reader can only poll",
        )),
    }
}

//! The lock floors: `std::sync::Mutex` in-process, and bare-`libc` locks (a SysV
//! semaphore with `SEM_UNDO`, a futex mutex, a robust pthread mutex) around a value in a
//! SysV segment.

use std::hint::black_box;
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;

use super::copy_floors::shm_cycle;
use super::{
    big_source, read_4k_batch, show, timed, Case, Payload, Setup, BIG, PAGE, SEE_CONTENDED,
};
use crate::affinity::CorePair;
use crate::cleanup::{key_for, Leftover};
use crate::contended::{Pair, WRITER};
use crate::floors::{futex_lock, futex_unlock, RobustMutex, SemUndo, SysvSegment};
use crate::measure::Batch;
use crate::takeover::{sleep_forever, Holdable};

/// Where floors put their value in the segment: after a cache line for the lock.
pub(super) const VALUE_OFFSET: usize = 64;

// std::sync::Mutex (in-process)

struct StdPair<T> {
    m: std::sync::Mutex<T>,
}

impl<T: Payload> Pair for StdPair<T> {
    fn worker(&self, role: usize) -> Result<Batch<'_>, String> {
        let m = &self.m;
        if role == WRITER {
            let mut v = T::initial();
            let mut i = 0u64;
            Ok(Box::new(move |n| {
                for _ in 0..n {
                    i += 1;
                    v.stamp(i);
                    *m.lock().expect("std mutex") = black_box(v);
                }
            }))
        } else {
            Ok(Box::new(move |n| {
                for _ in 0..n {
                    black_box(*m.lock().expect("std mutex"));
                }
            }))
        }
    }
}

/// `std::sync::Mutex`, in-process.
///
/// # Errors
///
/// None in practice (the signature is every subject's).
pub fn std_setup(case: Case) -> Result<Setup, String> {
    match case {
        Case::ReadU64 => {
            let m = std::sync::Mutex::new(7u64);
            timed(move |n| {
                for _ in 0..n {
                    black_box(*m.lock().expect("std mutex"));
                }
            })
        }
        Case::Read4k => {
            let m = Box::new(std::sync::Mutex::new(<[u8; PAGE]>::initial()));
            read_4k_batch(move || *m.lock().expect("std mutex"))
        }
        Case::Write4k => {
            let m = Box::new(std::sync::Mutex::new([0u8; PAGE]));
            let v = <[u8; PAGE]>::initial();
            timed(move |n| {
                for _ in 0..n {
                    *m.lock().expect("std mutex") = black_box(v);
                }
            })
        }
        Case::Contended8b => Ok(Setup::Threads(Box::new(StdPair {
            m: std::sync::Mutex::new(u64::initial()),
        }))),
        Case::Contended4k => Ok(Setup::Threads(Box::new(StdPair {
            m: std::sync::Mutex::new(<[u8; PAGE]>::initial()),
        }))),
        Case::CreateDrop | Case::AttachDetach => Ok(Setup::Unsupported(
            "in-process: there is no segment to create or attach",
        )),
        Case::Seqlock1w1r => Ok(Setup::Unsupported(
            "not run: in-process, and contended_8b has its two-thread figures",
        )),
        Case::SliceRead1m => Ok(Setup::Unsupported(
            "not run: in-process; libc-memcpy is this case's floor",
        )),
        Case::Takeover => Ok(Setup::Unsupported(
            "in-process: a killed process takes every thread with it",
        )),
        Case::NotifyRoundtrip => Ok(Setup::Unsupported(
            "in-process; libc-futex, libc-eventfd and libc-pipe are this case's floors",
        )),
        Case::Inplace64m => {
            let m = std::sync::Mutex::new(vec![0u8; BIG]);
            let src = big_source();
            timed(move |n| {
                for _ in 0..n {
                    m.lock()
                        .expect("std mutex")
                        .copy_from_slice(black_box(&src));
                }
            })
        }
    }
}

/// A floor's lock.
trait FloorLock {
    fn lock(&self);
    fn unlock(&self);
}

impl FloorLock for SemUndo {
    fn lock(&self) {
        SemUndo::lock(self).expect("semop lock");
    }
    fn unlock(&self) {
        SemUndo::unlock(self).expect("semop unlock");
    }
}

/// The futex word at the start of a segment.
struct FutexWord(NonNull<AtomicU32>);

impl FutexWord {
    fn word(&self) -> &AtomicU32 {
        // SAFETY: the word is at the page-aligned start of a live segment (the FloorCell
        // that owns this lock owns the segment) and is only accessed atomically.
        unsafe { self.0.as_ref() }
    }
}

impl FloorLock for FutexWord {
    fn lock(&self) {
        futex_lock(self.word());
    }
    fn unlock(&self) {
        futex_unlock(self.word());
    }
}

/// A robust pthread mutex at the start of a segment, destroyed on drop.
struct Robust(RobustMutex);

impl FloorLock for Robust {
    fn lock(&self) {
        self.0.lock().expect("pthread_mutex_lock");
    }
    fn unlock(&self) {
        self.0.unlock().expect("pthread_mutex_unlock");
    }
}

impl Drop for Robust {
    fn drop(&mut self) {
        // SAFETY: the owning FloorCell is being dropped in the process that made it, after
        // every worker exited: nobody holds or uses the mutex.
        unsafe { self.0.destroy() };
    }
}

/// A `T` at [`VALUE_OFFSET`] in a SysV segment, guarded by `K`. Forked workers use the
/// mapping they inherit.
struct FloorCell<T, K> {
    // Declared first: the lock may live in the segment, so it goes before the segment.
    lock: K,
    value: NonNull<T>,
    _seg: SysvSegment,
}

impl<T: Copy, K: FloorLock> FloorCell<T, K> {
    fn new(
        value: T,
        make_lock: impl FnOnce(&SysvSegment, i32) -> io::Result<K>,
    ) -> Result<Self, String> {
        let key = key_for(Leftover::RawKey);
        let seg = SysvSegment::create(key, VALUE_OFFSET + size_of::<T>()).map_err(show)?;
        let value_ptr = NonNull::new(seg.as_ptr().wrapping_add(VALUE_OFFSET).cast::<T>())
            .ok_or("null segment")?;
        // SAFETY: the offset is inside the fresh segment and 64-byte aligned (>= align of T).
        unsafe { value_ptr.write(value) };
        let lock = make_lock(&seg, key).map_err(show)?;
        Ok(Self {
            lock,
            value: value_ptr,
            _seg: seg,
        })
    }

    fn read(&self) -> T {
        self.lock.lock();
        // SAFETY: the value is inside the live segment and the lock is held.
        let v = unsafe { self.value.read() };
        self.lock.unlock();
        v
    }

    fn write(&self, v: T) {
        self.lock.lock();
        // SAFETY: as in `read`.
        unsafe { self.value.write(v) };
        self.lock.unlock();
    }
}

impl<T: Payload, K: FloorLock> Pair for FloorCell<T, K> {
    fn worker(&self, role: usize) -> Result<Batch<'_>, String> {
        if role == WRITER {
            let mut v = T::initial();
            let mut i = 0u64;
            Ok(Box::new(move |n| {
                for _ in 0..n {
                    i += 1;
                    v.stamp(i);
                    self.write(black_box(v));
                }
            }))
        } else {
            Ok(Box::new(move |n| {
                for _ in 0..n {
                    black_box(self.read());
                }
            }))
        }
    }
}

/// A floor lock a holder can die with: the waiter gets it (the kernel undoes a SysV hold;
/// a robust mutex reports `EOWNERDEAD`, which `RobustMutex::lock` answers).
impl<K: FloorLock> Holdable for FloorCell<u64, K> {
    fn hold(&self, held: &dyn Fn()) -> Result<(), String> {
        self.lock.lock();
        held();
        sleep_forever()
    }

    fn wait(&self, waiting: &dyn Fn(), got: &dyn Fn()) -> Result<(), String> {
        waiting();
        self.lock.lock();
        got();
        self.lock.unlock();
        Ok(())
    }
}

fn semop_lock(_: &SysvSegment, key: i32) -> io::Result<SemUndo> {
    SemUndo::create(key)
}

fn futex_word(seg: &SysvSegment, _: i32) -> io::Result<FutexWord> {
    let word = NonNull::new(seg.as_ptr().cast::<AtomicU32>())
        .ok_or_else(|| io::Error::other("null segment"))?;
    // The kernel zero-fills the segment: the word starts unlocked.
    Ok(FutexWord(word))
}

fn robust_mutex(seg: &SysvSegment, _: i32) -> io::Result<Robust> {
    // SAFETY: the segment start is page-aligned, has VALUE_OFFSET (64) >= 40 bytes free for
    // the mutex, and lives as long as the FloorCell holding this lock.
    unsafe { RobustMutex::init(seg.as_ptr()) }.map(Robust)
}

/// What a floor lock can do besides reads, writes and contention.
#[derive(Clone, Copy)]
struct Extras {
    /// Survives its holder's death (`takeover_after_kill`).
    robust: bool,
    /// Runs `seqlock_1w1r`.
    one_w_one_r: bool,
}

/// The read, write, contended and takeover cases of a floor lock.
fn floor_setup<K: FloorLock + 'static>(
    case: Case,
    make_lock: fn(&SysvSegment, i32) -> io::Result<K>,
    extras: Extras,
    cores: CorePair,
) -> Result<Setup, String> {
    match case {
        Case::ReadU64 => {
            let c = FloorCell::new(7u64, make_lock)?;
            timed(move |n| {
                for _ in 0..n {
                    black_box(c.read());
                }
            })
        }
        Case::Read4k => {
            let c = FloorCell::new(<[u8; PAGE]>::initial(), make_lock)?;
            read_4k_batch(move || c.read())
        }
        Case::Write4k => {
            let v = <[u8; PAGE]>::initial();
            let c = FloorCell::new(v, make_lock)?;
            timed(move |n| {
                for _ in 0..n {
                    c.write(black_box(v));
                }
            })
        }
        Case::Contended8b => Ok(Setup::Processes(Box::new(FloorCell::new(
            u64::initial(),
            make_lock,
        )?))),
        Case::Seqlock1w1r if extras.one_w_one_r => Ok(Setup::SoloAndPair(Box::new(
            FloorCell::new(u64::initial(), make_lock)?,
        ))),
        Case::Seqlock1w1r => Ok(Setup::Unsupported(SEE_CONTENDED)),
        Case::Contended4k => Ok(Setup::Processes(Box::new(FloorCell::new(
            <[u8; PAGE]>::initial(),
            make_lock,
        )?))),
        Case::Takeover if extras.robust => Ok(Setup::Sampled(crate::takeover::sampled(
            FloorCell::new(7u64, make_lock)?,
            cores,
        ))),
        Case::Takeover => Ok(Setup::Unsupported(
            "a bare futex word cannot tell that its holder died: the waiter would sleep forever",
        )),
        Case::CreateDrop | Case::AttachDetach | Case::Inplace64m | Case::SliceRead1m => Ok(
            Setup::Unsupported("a lock floor; see libc-shm-sem-cycle and libc-memcpy"),
        ),
        Case::NotifyRoundtrip => Ok(Setup::Unsupported(
            "a lock, not a notification; libc-futex, libc-eventfd and libc-pipe are this \
             case's floors",
        )),
    }
}

/// A SysV semaphore with `SEM_UNDO` around the value.
///
/// # Errors
///
/// Creating the segment or the semaphore failed.
pub fn semop_setup(case: Case, cores: CorePair) -> Result<Setup, String> {
    let extras = Extras {
        robust: true,
        one_w_one_r: false,
    };
    floor_setup(case, semop_lock, extras, cores)
}

/// A robust process-shared pthread mutex around the value.
///
/// # Errors
///
/// Creating the segment or the mutex failed.
pub fn robust_setup(case: Case, cores: CorePair) -> Result<Setup, String> {
    let extras = Extras {
        robust: true,
        one_w_one_r: false,
    };
    floor_setup(case, robust_mutex, extras, cores)
}

/// A futex mutex around the value (its notify case is in `notify_floors`).
///
/// # Errors
///
/// Creating the segment failed.
pub fn futex_setup(case: Case, cores: CorePair) -> Result<Setup, String> {
    match case {
        Case::CreateDrop => {
            // The futex mutex's own creation floor: a segment and a word, no kernel lock.
            let key = key_for(Leftover::RawKey);
            timed(move |n| {
                for _ in 0..n {
                    shm_cycle(key, |base| {
                        // SAFETY: the word is at the start of the fresh, attached segment.
                        unsafe { base.cast::<u32>().write(0) };
                    })
                    .expect("futex create cycle");
                }
            })
        }
        _ => floor_setup(
            case,
            futex_word,
            Extras {
                robust: false,
                one_w_one_r: true,
            },
            cores,
        ),
    }
}

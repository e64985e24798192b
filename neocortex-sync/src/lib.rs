//! Cross-process locks for neocortex, and the [`CortexSync`] trait they implement.
//!
//! ```
//! use neocortex_core::{Cortex, CortexBuilder};
//! use neocortex_sync::{RwSemaphore, Semaphore, SeqLock};
//!
//! let fast: Cortex<u64, Semaphore> = CortexBuilder::new(0).random_key().with_default_lock()?;
//! *fast.lock()? += 1;
//! let readers: Cortex<u64, RwSemaphore> = CortexBuilder::new(0).random_key().with_default_lock()?;
//! readers.write(fast.read()?)?;
//! let ticker: Cortex<u64, SeqLock> = CortexBuilder::new(0).random_key().with_default_lock()?;
//! ticker.write(readers.read()?)?;
//! assert_eq!(ticker.read()?, 1);
//! # Ok::<(), neocortex_core::CortexError>(())
//! ```
//!
//! | lock | what | when a holder dies | cost |
//! |---|---|---|---|
//! | [`Semaphore`] (= [`Mutex`]) | a futex word in the segment naming the holder's member token | a waiter sees the token is dead (the kernel says so) within ~2 ms and takes over; the next guard reports `owner_died()` | no system call when uncontended |
//! | [`SysvSemaphore`] | a SysV semaphore with `SEM_UNDO` | the kernel releases it at once; the next guard reports `owner_died()` | two system calls per lock and unlock |
//! | [`RwSemaphore`] | a SysV semaphore set with `SEM_UNDO`: many readers or one writer | as `SysvSemaphore` | as `SysvSemaphore`; readers run together |
//! | [`SeqLock`] | writers lock (as `Semaphore`); readers copy optimistically and retry | a reader that meets a dead writer mid-write gets `OwnerDied`; `write()` repairs | a read is a copy, no write to shared memory |
//!
//! Every lock keeps its state inside the segment (a kernel id or a word), so attaching
//! processes find it from the segment alone.
//!
//! # Platforms
//!
//! `Semaphore` and `SeqLock` use `futex(2)` on Linux. Elsewhere `Semaphore` (and so `Mutex`)
//! *is* [`SysvSemaphore`], which works on every Unix, and `SeqLock`'s writers lock with it.
#![cfg(unix)]
#![deny(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[expect(unsafe_code, reason = "implements the unsafe CortexSync contract")]
mod rw_semaphore;
#[cfg(target_os = "linux")]
#[expect(unsafe_code, reason = "implements the unsafe CortexSync contract")]
mod semaphore;
#[expect(unsafe_code, reason = "implements the unsafe CortexSync contract")]
mod seqlock;
mod settings;
#[expect(unsafe_code, reason = "operates SysV semaphores")]
mod sysv;
#[expect(unsafe_code, reason = "implements the unsafe CortexSync contract")]
mod sysv_semaphore;

pub use neocortex_core::{CortexSync, Permission, Wait};
pub use rw_semaphore::RwSemaphore;
#[cfg(target_os = "linux")]
pub use semaphore::{Semaphore, SemaphoreState};
pub use seqlock::SeqLock;
pub use settings::{MutexSettings, SemaphorePermission, SemaphoreSettings};
pub use sysv::SysvState;
pub use sysv_semaphore::SysvSemaphore;

/// Off Linux, the seed's `Semaphore` is the SysV lock, so code written for the seed builds
/// everywhere.
#[cfg(not(target_os = "linux"))]
pub type Semaphore = SysvSemaphore;

/// Another name for [`Semaphore`]: the same lock, one implementation.
pub type Mutex = Semaphore;

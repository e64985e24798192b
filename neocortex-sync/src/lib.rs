//! Cross-process locks for neocortex, and the [`CortexSync`] trait they implement.
//!
//! ```
//! # #[cfg(all(feature = "mutex", feature = "semaphore", target_os = "linux"))] {
//! use neocortex_core::{Cortex, CortexBuilder};
//! use neocortex_sync::{Mutex, Semaphore};
//!
//! let fast: Cortex<u64, Mutex> = CortexBuilder::new(0).random_key().with_default_lock()?;
//! *fast.lock()? += 1;
//! let kernel: Cortex<u64, Semaphore> = CortexBuilder::new(0).random_key().with_default_lock()?;
//! kernel.write(fast.read()?)?;
//! assert_eq!(kernel.read()?, 1);
//! # }
//! # Ok::<(), neocortex_core::CortexError>(())
//! ```
//!
//! | lock | what | when a holder dies | feature |
//! |---|---|---|---|
//! | [`Semaphore`] | a SysV semaphore with `SEM_UNDO`, exclusive | the kernel releases it; the next guard reports `owner_died()` | `semaphore` |
//! | [`RwSemaphore`] | a SysV semaphore set with `SEM_UNDO`: many readers or one writer | the kernel releases it; the next exclusive guard reports `owner_died()` | `semaphore` |
//! | `Mutex` (Linux) | a futex word in the segment, no system call when uncontended | a waiter takes it over (within 50 ms); the next guard reports `owner_died()` | `mutex` |
//!
//! Every lock keeps its state inside the segment (a kernel id or a word), so attaching
//! processes find it from the segment alone. `Mutex` exists on Linux only (it is built on
//! `futex(2)`); elsewhere the name is absent.
#![cfg(unix)]
#![deny(unsafe_code)]

#[cfg(all(feature = "mutex", target_os = "linux"))]
#[expect(unsafe_code, reason = "implements the unsafe CortexSync contract")]
mod mutex;
#[cfg(feature = "semaphore")]
#[expect(unsafe_code, reason = "implements the unsafe CortexSync contract")]
mod rw_semaphore;
#[cfg(feature = "semaphore")]
#[expect(unsafe_code, reason = "implements the unsafe CortexSync contract")]
mod semaphore;
#[cfg(feature = "semaphore")]
mod sysv;

#[cfg(all(feature = "mutex", target_os = "linux"))]
pub use mutex::{Mutex, MutexSettings, MutexState};
pub use neocortex_core::{CortexSync, Permission, Wait};
#[cfg(feature = "semaphore")]
pub use rw_semaphore::RwSemaphore;
#[cfg(feature = "semaphore")]
pub use semaphore::{Semaphore, SemaphorePermission, SemaphoreSettings};
#[cfg(feature = "semaphore")]
pub use sysv::SemaphoreState;

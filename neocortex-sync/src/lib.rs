//! Cross-process locks for neocortex, and the [`CortexSync`] trait they implement.
//!
//! | lock | what | when a holder dies |
//! |---|---|---|
//! | [`Semaphore`] | a SysV semaphore with `SEM_UNDO`, exclusive | the kernel releases it; the next guard reports `owner_died()` |
//!
//! Every lock keeps its state inside the segment (a kernel id or a word), so attaching
//! processes find it from the segment alone.
#![cfg(unix)]
#![deny(unsafe_code)]

#[cfg(feature = "semaphore")]
#[expect(unsafe_code, reason = "implements the unsafe CortexSync contract")]
mod semaphore;

pub use neocortex_core::{CortexSync, Permission, Wait};
#[cfg(feature = "semaphore")]
pub use semaphore::{Semaphore, SemaphorePermission, SemaphoreSettings, SemaphoreState};

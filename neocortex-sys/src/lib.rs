//! Raw System V IPC calls for neocortex.
//!
//! This crate is the only place in neocortex that talks to the kernel. Every function wraps one
//! system call, reads `errno` immediately after a failure and returns it as a [`SysError`]
//! naming the call. Functions that only look are safe; functions that map memory, remove an
//! object or change a semaphore (and so could set a held lock free behind its holders'
//! backs) are `unsafe fn` with a `# Safety` section.
//!
//! ```
//! use neocortex_sys::{shm, IPC_PRIVATE};
//!
//! let id = shm::shmget(IPC_PRIVATE, 4096, libc::IPC_CREAT | 0o600)?;
//! let stat = shm::stat(id)?;
//! assert_eq!(stat.size, 4096);
//! // SAFETY: a private segment nobody else knows or uses.
//! unsafe { shm::remove(id) }?;
//! # Ok::<(), neocortex_sys::SysError>(())
//! ```
//!
//! # Platforms
//!
//! Linux, macOS and FreeBSD. What differs is hidden here, so the crates above never branch
//! on the platform:
//!
//! - [`sem::semop_timed`] is `semtimedop` on Linux and a polled `semop(IPC_NOWAIT)` where it
//!   is missing (macOS, FreeBSD);
//! - [`shm::stat`] and [`sem::stat`] return fixed-type records ([`shm::ShmStat`],
//!   [`sem::SemStat`]) instead of each platform's `shmid_ds`/`semid_ds`;
//! - [`random::fill`] is `getrandom` on Linux and FreeBSD, `arc4random_buf` elsewhere;
//! - `process::proc_start_time` asks the kernel for a start time where `/proc` is missing
//!   (macOS, FreeBSD);
//! - `futex` (the futex calls) exists on Linux only.
#![cfg(unix)]

mod errno;
#[cfg(target_os = "linux")]
pub mod futex;
pub mod process;
pub mod random;
pub mod sem;
pub mod shm;
mod types;

pub use errno::{Errno, SysError, SysResult};
pub use types::{semun, IPC_PRIVATE, SEM_UNDO};

/// Re-export of the `libc` crate this layer is built on, so callers name the same types.
pub use libc;

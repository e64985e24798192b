//! Typed, validated System V shared memory segments, and the contract of their locks.
//!
//! This is the lock-agnostic core of neocortex: [`Cortex<T, L>`] keeps a value of a
//! [`ShmSafe`] type `T` in a SysV segment, guarded by any lock `L` that implements
//! [`CortexSync`]. Most users depend on the `neocortex` crate, which adds the locks; a
//! minimal build, or a crate that brings its own lock, depends on this one alone.
//!
//! ```
//! use neocortex_core::{shm_safe, ShmSafe};
//!
//! shm_safe! {
//!     /// A value several processes share.
//!     #[derive(Clone, Copy, Debug, Default)]
//!     pub struct Position {
//!         pub x: f64,
//!         pub y: f64,
//!         pub sequence: u64,
//!     }
//! }
//!
//! // The structural fingerprint that attach compares: the same fields in another order, or
//! // another type of the same size, is a different tag.
//! assert_ne!(Position::TYPE_TAG, <[u64; 3]>::TYPE_TAG);
//! // `Cortex<Position, L>` now works with any lock `L: CortexSync`; see the `neocortex` crate
//! // for the locks, and `neocortex/examples/custom_lock` for one written against this crate.
//! ```
//!
//! What this crate guarantees:
//!
//! - only [`ShmSafe`] types go into a segment (valid for every bit pattern, no pointers, no
//!   `Drop`, fixed layout);
//! - attaching checks the segment's real size, its header (magic, format, state)
//!   and the layout fingerprints of `T` and `L` before a byte of `T` is read;
//! - segments are created with `IPC_EXCL` and owner-only permissions unless asked otherwise;
//! - every error is [`CortexError::CleanSystem`] (nothing left behind) or
//!   [`CortexError::DirtySystem`] (naming what is left), or a non-system error that changed
//!   nothing;
//! - a holder that dies holding the lock is reported by the next guard's
//!   [`owner_died`](CortexGuard::owner_died) until the value is marked consistent.
#![cfg(unix)]
#![deny(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod builder;
#[expect(unsafe_code, reason = "turns segment addresses into references")]
mod cortex;
mod error;
#[doc(hidden)]
pub mod failpoints;
#[expect(
    unsafe_code,
    reason = "implements the unsafe ShmSafe trait for the fixed types"
)]
mod fixed;
#[expect(unsafe_code, reason = "turns segment addresses into references")]
mod guard;
mod header;
pub mod inspect;
mod key;
#[expect(
    unsafe_code,
    reason = "declares and implements the unsafe ShmSafe trait"
)]
pub mod marker;
#[expect(unsafe_code, reason = "operates the members' SysV semaphores")]
mod members;
mod mode;
mod process;
#[expect(unsafe_code, reason = "turns segment addresses into references")]
mod segment;
#[expect(unsafe_code, reason = "declares the unsafe CortexSync trait")]
mod sync;

pub use builder::CortexBuilder;
pub use cortex::{Cortex, Watcher, ATTACH_INIT_WAIT};
pub use error::{CortexError, CortexResult, ErrorKind, Hint, Leftover, Leftovers, OsError};
pub use fixed::{CapacityError, FixedString, FixedVec};
pub use guard::{CortexGuard, CortexReadGuard};
pub use key::random_key;
pub use marker::{ShmSafe, Value};
pub use members::Token;
pub use mode::Permission;
#[doc(hidden)]
pub use sync::TestBench;
pub use sync::{Access, Acquired, CortexSync, InPlace, LockContext, Optimistic, Remaining, Wait};

//! Typed System V shared memory between processes: validated, crash-safe, with
//! cross-process locks.
//!
//! One process creates a segment holding a value of type `T` under a key; other processes
//! attach by the same key; every access goes through a lock that works across processes and
//! survives a holder's death.
//!
//! ```
//! use neocortex::{Cortex, Semaphore};
//!
//! # let key = neocortex::random_key()?;
//! // Creating a segment of shared memory (removed when `cortex_1` drops).
//! let data: f64 = 42.0;
//! let cortex_1: Cortex<_, Semaphore> = Cortex::new(key, data, None)?;
//! assert_eq!(cortex_1.read()?, 42.0);
//!
//! // Attaching to it (from this or any other process) names the type; it is checked.
//! let cortex_2: Cortex<f64, Semaphore> = Cortex::attach(key)?;
//! assert_eq!(cortex_1.read()?, cortex_2.read()?);
//!
//! cortex_2.write(12.34)?;
//! assert_eq!(cortex_1.read()?, 12.34);
//! # Ok::<(), neocortex::CortexError>(())
//! ```
//!
//! Permissions: `None` means [`SemaphorePermission::OwnerOnly`] (mode `0600`), for the
//! segment and the lock alike.
//!
//! ```
//! use neocortex::{Cortex, Semaphore, SemaphorePermission, SemaphoreSettings};
//!
//! # let key = neocortex::random_key()?;
//! let settings = SemaphoreSettings { mode: SemaphorePermission::OwnerAndGroup };
//! let cortex: Cortex<_, Semaphore> = Cortex::new(key, 42.0_f64, Some(&settings))?;
//! # Ok::<(), neocortex::CortexError>(())
//! ```
//!
//! Guards give access in place, and tell when a previous holder died mid-update:
//!
//! ```
//! use neocortex::{Cortex, CortexBuilder, Semaphore};
//!
//! let cortex: Cortex<[u64; 4], Semaphore> =
//!     CortexBuilder::new([0; 4]).random_key().with_default_lock()?;
//! {
//!     let mut guard = cortex.lock()?;
//!     if guard.owner_died() {
//!         *guard = [0; 4]; // repair
//!         guard.mark_consistent();
//!     }
//!     guard[0] += 1;
//! }
//! let sum = cortex.update(|v| {
//!     v[1] = 2;
//!     v.iter().sum::<u64>()
//! })?;
//! assert_eq!(sum, 3);
//! # Ok::<(), neocortex::CortexError>(())
//! ```
//!
//! Only [`ShmSafe`] types go into a segment. These do not compile:
//!
//! ```compile_fail
//! let c: neocortex::Cortex<String, neocortex::Semaphore> = neocortex::Cortex::attach(1).unwrap();
//! ```
//!
//! ```compile_fail
//! let c: neocortex::Cortex<&'static u8, neocortex::Semaphore> = neocortex::Cortex::attach(1).unwrap();
//! ```
//!
//! ```compile_fail
//! let c: neocortex::Cortex<bool, neocortex::Semaphore> = neocortex::Cortex::attach(1).unwrap();
//! ```
//!
//! # Feature flags
//!
//! | feature | default | gives |
//! |---|---|---|
//! | `semaphore` | yes | the built-in locks: [`Semaphore`] (= [`Mutex`], a futex word on Linux), [`SysvSemaphore`], [`RwSemaphore`], [`SeqLock`] |
//! | `cli` | no | the `neocortex` binary, the operator's tool (adds `clap` and `serde_json`) |
//!
//! Without features, the crate still gives [`Cortex`] and the [`CortexSync`] trait, for a
//! lock of your own, and [`inspect`].
//!
//! # The operator's tool
//!
//! `cargo install neocortex --features cli` (in the repository: `cargo run -p neocortex
//! --features cli -- list`) installs `neocortex`, built on [`inspect`]:
//!
//! | command | does |
//! |---|---|
//! | `neocortex list [--json] [--all]` | the neocortex segments of this IPC namespace (`--all`: every segment, foreign ones marked): key, id, owner, mode, size, attachments, type, lock, state, creator and whether it lives, owner-died, version, verdict |
//! | `neocortex inspect KEY [--json]` | everything about one segment: header, layout, lock holder, live members, semaphore sets, attached pids |
//! | `neocortex gc [--dry-run] [--orphans]` | removes what `Cortex::new` would reclaim (creation never finished, creator dead, nobody attached); `--orphans` also ready segments whose creator is dead and that nobody is attached to |
//! | `neocortex rm KEY [--force]` | removes one neocortex segment and its lock; refused while processes are attached or its creator lives, unless `--force` (then their next access fails with `LockRemoved`) |
//! | `neocortex doctor` | IPC limits against use, systemd-logind's `RemoveIPC`, world-writable, stale and orphaned segments |
//!
//! It maps segments read-only to look at them, reads no value, and never removes a foreign
//! segment or another user's, even with `--force`. Exit codes: `0` done; `1` refused (the
//! message says why and who is attached) or not found, and for `doctor` something to fix;
//! `2` bad usage; `3` a system error, or a command this system does not support (`list`,
//! `gc` and `doctor` read Linux's `/proc`).
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

pub use neocortex_core::{
    marker, random_key, shm_safe, Access, Acquired, Cortex, CortexBuilder, CortexError,
    CortexGuard, CortexReadGuard, CortexResult, CortexSync, ErrorKind, InPlace, Leftover,
    LockContext, Optimistic, OsError, Permission, Remaining, ShmSafe, Token, Value, Wait, Watcher,
    ATTACH_INIT_WAIT,
};
#[cfg(all(feature = "semaphore", target_os = "linux"))]
pub use neocortex_sync::SemaphoreState;
#[cfg(feature = "semaphore")]
pub use neocortex_sync::{
    Mutex, MutexSettings, RwSemaphore, Semaphore, SemaphorePermission, SemaphoreSettings, SeqLock,
    SysvSemaphore, SysvState,
};

pub mod inspect;

/// The names most programs need.
pub mod prelude {
    pub use neocortex_core::{
        Cortex, CortexBuilder, CortexError, CortexResult, ErrorKind, ShmSafe,
    };
    #[cfg(feature = "semaphore")]
    pub use neocortex_sync::{
        Mutex, RwSemaphore, Semaphore, SemaphorePermission, SemaphoreSettings, SeqLock,
        SysvSemaphore,
    };
}

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

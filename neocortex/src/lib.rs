//! Typed System V shared memory between processes: validated, crash-safe, with
//! cross-process locks that survive a holder's death.
//!
//! One process creates a segment holding a value of type `T` (or a slice `[T]`) under a key;
//! other processes attach by the same key, and attaching checks the type, the lock kind and
//! the segment before a byte of the value is read. Every access goes through a lock that
//! excludes across processes, and a holder that dies (killed, aborted, panicked) never
//! deadlocks the others: the next holder is told, and repairs.
//!
//! ```
//! # #[cfg(feature = "semaphore")] fn main() -> Result<(), neocortex::CortexError> {
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
//! # Ok(()) }
//! # #[cfg(not(feature = "semaphore"))] fn main() {}
//! ```
//!
//! Permissions: `None` means `SemaphorePermission::OwnerOnly` (mode `0600`), for the
//! segment and the lock alike.
//!
//! Guards give access in place, and tell when a previous holder died mid-update:
//!
//! ```
//! # #[cfg(feature = "semaphore")] fn main() -> Result<(), neocortex::CortexError> {
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
//! # Ok(()) }
//! # #[cfg(not(feature = "semaphore"))] fn main() {}
//! ```
//!
//! # Which lock
//!
//! | lock | readers | when a holder dies | cost |
//! |---|---|---|---|
//! | `Semaphore` (= `Mutex`), the default choice | lock, exclusive | a waiter sees (the kernel tells it) and takes over within ~2 ms | no system call when uncontended |
//! | `SeqLock` | never lock, never write shared memory | readers report `OwnerDied` for a torn write; `write()` repairs | a read is a copy |
//! | `RwSemaphore` | lock, together | the kernel releases it at once | two system calls per access |
//! | `SysvSemaphore` | lock, exclusive | the kernel releases it at once | two system calls per access |
//!
//! # Safety, and the trust model
//!
//! Only [`ShmSafe`] types go into a segment: valid for every bit pattern, no pointers, no
//! `Drop`, no padding (see [`shm_safe!`] for your own structs). These do not compile:
//!
//! ```compile_fail,E0277
//! fn with<L: neocortex::CortexSync>() -> neocortex::CortexResult<neocortex::Cortex<String, L>> {
//!     neocortex::Cortex::attach(1) // owns a heap pointer
//! }
//! ```
//!
//! ```compile_fail,E0277
//! fn with<L: neocortex::CortexSync>() -> neocortex::CortexResult<neocortex::Cortex<&'static u8, L>> {
//!     neocortex::Cortex::attach(1) // an address in one process
//! }
//! ```
//!
//! ```compile_fail,E0277
//! fn with<L: neocortex::CortexSync>() -> neocortex::CortexResult<neocortex::Cortex<bool, L>> {
//!     neocortex::Cortex::attach(1) // only 0 and 1 are valid
//! }
//! ```
//!
//! while the same function compiles for a `ShmSafe` type:
//!
//! ```
//! fn with<L: neocortex::CortexSync>() -> neocortex::CortexResult<neocortex::Cortex<u64, L>> {
//!     neocortex::Cortex::attach(1)
//! }
//! ```
//!
#![cfg_attr(
    feature = "semaphore",
    doc = r#"A `SeqLock` value is never handed out by reference (its readers copy it while a
writer may be storing), so it has no guards:

```compile_fail,E0599
let c: neocortex::Cortex<u64, neocortex::SeqLock> = neocortex::Cortex::attach(1).unwrap();
let guard = c.lock(); // no method `lock`
```

```
let c = neocortex::CortexBuilder::new(1u64).random_key().with_default_lock::<neocortex::SeqLock>()?;
assert_eq!(c.read()?, 1); // reads copy
# Ok::<(), neocortex::CortexError>(())
```
"#
)]
//!
//! Memory safety holds among processes that touch a segment only through neocortex (this
//! version's segment format) and that the segment's mode admits. A process that writes the
//! segment by other means (a raw `shmat`, a debugger) can break every reader — a data race
//! on a `&T`, a forged lock word — and no library can prevent that. So the defaults keep that
//! circle small: segments are owner-only unless asked; `attach` refuses segments made by
//! another user (use `Cortex::attach_from_user` to trust one) and segments every user may
//! write (use `Cortex::attach_world_writable` to trust everyone).
//!
//! A holder that `exec`s keeps its lock until the new program exits (the kernel keeps its
//! member token across `exec`); a thread that ends without unwinding keeps it until its
//! process exits.
//!
//! # Feature flags
//!
//! | feature | default | gives |
//! |---|---|---|
//! | `semaphore` | yes | the built-in locks: `Semaphore` (= `Mutex`, a futex word on Linux), `SeqLock`, `RwSemaphore`, `SysvSemaphore`, and `SemaphoreSettings` |
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
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use neocortex_core::{
    marker, random_key, shm_safe, Access, Acquired, CapacityError, Cortex, CortexBuilder,
    CortexError, CortexGuard, CortexReadGuard, CortexResult, CortexSync, ErrorKind, FixedString,
    FixedVec, InPlace, Leftover, LockContext, Optimistic, OsError, Permission, Remaining, ShmSafe,
    Token, Value, Wait, Watcher, ATTACH_INIT_WAIT,
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
        Cortex, CortexBuilder, CortexError, CortexResult, ErrorKind, FixedString, FixedVec, ShmSafe,
    };
    #[cfg(feature = "semaphore")]
    pub use neocortex_sync::{
        Mutex, RwSemaphore, Semaphore, SemaphorePermission, SemaphoreSettings, SeqLock,
        SysvSemaphore,
    };
}

/// The README's examples, compiled and run as doctests (they use the built-in locks).
#[doc = include_str!("../README.md")]
#[cfg(all(doctest, feature = "semaphore"))]
pub struct ReadmeDoctests;

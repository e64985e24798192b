//! Benchmarks of neocortex against its peers.
//!
//! The `compare` binary (`src/bin/compare.rs`) runs every case for every subject in one
//! process run, interleaved, and prints a markdown table (or JSON lines); the criterion
//! benches in `benches/` give the in-process figures. This library holds what both share:
//!
//! - [`subjects`]: the cases, the subjects (neocortex with each lock, the pinned peers from
//!   crates.io, the bare-`libc` floors) and what each one runs for each case;
//! - [`floors`]: the bare-`libc` mechanisms (SysV segment, `semop` with `SEM_UNDO`, a futex
//!   mutex, a robust process-shared pthread mutex);
//! - [`measure`]: batch timing, calibration and statistics;
//! - [`contended`]: two processes (or threads) pinned to their own cores, flat out;
//! - [`pingpong`]: a forked child that answers notifications, for round-trip times;
//! - [`takeover`]: killing a lock holder while another process waits for the lock;
//! - [`child`]: forking, watching and reaping those helper processes;
//! - [`cleanup`]: unique keys and the sweep that removes whatever a failed case left;
//! - [`affinity`], [`machine`], [`report`], [`targets`]: pinning, the machine description,
//!   the output and the project's performance targets.
#![cfg(target_os = "linux")]

pub mod affinity;
pub mod child;
pub mod cleanup;
pub mod contended;
pub mod floors;
pub mod machine;
pub mod measure;
pub mod pingpong;
pub mod report;
pub mod subjects;
pub mod takeover;
pub mod targets;

//! Benchmarks of neocortex against its peers.
//!
//! The `compare` binary (`src/bin/compare.rs`) runs every case for every subject in one
//! process run, interleaved, and prints a markdown table (or JSON lines); the criterion
//! benches in `benches/` give the in-process figures. This library holds what both share:
//!
//! - [`subjects`]: the subjects (neocortex with each lock, the pinned peers from crates.io,
//!   the bare-`libc` floors) and the cases each one supports;
//! - [`floors`]: the bare-`libc` mechanisms (SysV segment, `semop` with `SEM_UNDO`, a futex
//!   mutex, a robust process-shared pthread mutex);
//! - [`measure`]: batch timing, calibration and statistics;
//! - [`contended`]: two processes (or threads) pinned to their own cores, flat out;
//! - [`cleanup`]: unique keys and the sweep that removes whatever a failed case left;
//! - [`affinity`], [`machine`], [`report`]: pinning, the machine description, the output.
#![cfg(target_os = "linux")]

pub mod affinity;
pub mod cleanup;
pub mod contended;
pub mod floors;
pub mod machine;
pub mod measure;
pub mod report;
pub mod subjects;

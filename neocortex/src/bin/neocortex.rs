//! `neocortex`: the operator's tool for neocortex segments.
//!
//! ```text
//! neocortex list [--json] [--all]      segments in this IPC namespace (--all: foreign ones too)
//! neocortex inspect KEY [--json]       everything known about one segment
//! neocortex gc [--dry-run] [--orphans] remove stale segments (and orphans)
//! neocortex rm KEY [--force]           remove one neocortex segment and its lock
//! neocortex doctor                     IPC limits, systemd RemoveIPC, risky segments
//! ```
//!
//! Exit codes: 0 done; 1 refused or not found (and `doctor` found something to fix); 2 bad
//! usage; 3 system error (or not supported on this system).
//!
//! Built with the `cli` feature: `cargo install neocortex --features cli`, or in the
//! repository `cargo run -p neocortex --features cli -- list`.
#![forbid(unsafe_code)]

#[path = "../cli/mod.rs"]
mod cli;

fn main() {
    std::process::exit(cli::run());
}

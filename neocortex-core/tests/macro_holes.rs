//! `shm_safe!` refuses every hole a reviewer found (issue 8), and `Cortex<T, SeqLock>` has
//! no guards: compile-fail cases under `tests/ui/fail/`, each with the compiler's expected
//! output beside it (`.stderr`), and positive controls under `tests/ui/pass/` that must
//! compile and run, so that the failures are about the holes and not about the macro being
//! unusable.
//!
//! The expected output depends on the compiler's wording. It was generated with
//! `rustc 1.95.0 (59807616e 2026-04-14)` and trybuild 1.0.122 (`tests/ui/TOOLCHAIN`); on
//! another toolchain, regenerate and review every changed `.stderr` (each must still show
//! the refusal it is about):
//!
//! ```sh
//! TRYBUILD=overwrite cargo test -p neocortex-core --test macro_holes
//! git diff neocortex-core/tests/ui
//! ```
//!
//! trybuild runs cargo, so this test skips (loudly) where it runs outside `cargo test` (CI
//! runs every test binary again as another user, without cargo), and inside cargo-mutants,
//! whose mutants are function bodies that no compile-time check can catch.

use std::io::Write;
use std::sync::mpsc;
use std::time::Duration;

/// The toolchain the `.stderr` files were generated with.
const GENERATED_WITH: &str = include_str!("ui/TOOLCHAIN");

/// How long the whole trybuild run may take (it builds the crate and its dev-dependencies
/// once, then checks each case) before the test aborts instead of hanging CI.
const LIMIT: Duration = Duration::from_secs(20 * 60);

/// Aborts the test process if the run takes longer than [`LIMIT`]; stopped when dropped.
struct Watchdog(Option<mpsc::Sender<()>>);

impl Watchdog {
    fn start() -> Self {
        let (stop, stopped) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(LIMIT) {
                eprintln!("watchdog: macro_holes still running after {LIMIT:?}; aborting");
                std::process::abort();
            }
        });
        Self(Some(stop))
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.0.take());
    }
}

/// Says on stderr, past the test harness's capture, that the test is skipped and why.
fn skipped(why: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED: macro_holes: {why}");
}

/// Whether this test was built by cargo-mutants, which builds and tests a copy of the tree
/// in a temporary directory named `cargo-mutants-<tree>-<random>.tmp` (it sets no variable
/// to say so). There the cases would rebuild the mutated crates once more per mutant, under
/// the mutation run's per-mutant time limit, to catch nothing.
fn inside_cargo_mutants() -> bool {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .filter_map(|dir| dir.file_name()?.to_str())
        .any(|name| name.starts_with("cargo-mutants-") && name.ends_with(".tmp"))
}

/// Why this run cannot use trybuild, if it cannot.
fn cannot_run() -> Option<&'static str> {
    if inside_cargo_mutants() {
        return Some("inside cargo-mutants: compile-time checks cannot catch a function mutant");
    }
    if std::env::var_os("CARGO").is_none() {
        return Some("not run by cargo (trybuild needs cargo and the source tree)");
    }
    None
}

#[test]
fn shm_safe_refuses_every_known_hole_and_seqlock_has_no_guards() {
    let _watchdog = Watchdog::start();
    if let Some(why) = cannot_run() {
        skipped(why);
        return;
    }
    let rustc = std::process::Command::new(std::env::var_os("RUSTC").unwrap_or("rustc".into()))
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let generated_with = GENERATED_WITH.lines().next().unwrap_or_default().trim();
    if rustc != generated_with {
        // Not a failure by itself: trybuild compares the output, and says what differs.
        eprintln!(
            "note: the expected compiler output in tests/ui was generated with `{generated_with}`, \
             this is `{rustc}`; if a case fails only by its wording, regenerate with \
             TRYBUILD=overwrite, review the diff and update tests/ui/TOOLCHAIN"
        );
    }
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/fail/*.rs");
    cases.pass("tests/ui/pass/*.rs");
    // The cases run when `cases` is dropped, here.
}

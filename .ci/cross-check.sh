#!/usr/bin/env bash
# Cross checks: every crate but `benches` (Linux-only by design) must build for macOS and
# FreeBSD. `-Zbuild-std` (nightly + rust-src) compiles std for the target from source, so no
# SDK, linker or sysroot of the target is needed; nothing is linked or run, so this proves
# that the code compiles there (types, cfgs, libc names), not that it works there.
#
# Per target: `cargo check -p neocortex` with all, no and default features (the facade pulls
# in sys, core and sync), then clippy with `-D warnings` on the four library crates and their
# examples, because code behind a non-Linux cfg is never linted by the Linux clippy run. The
# cross-process test suite is Linux-only (it uses /proc, pid and IPC namespaces, futexes).
#
# Usage: .ci/cross-check.sh            (NEOCORTEX_NIGHTLY=nightly-YYYY-MM-DD to pin nightly)
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR=never
if ! command -v rustup >/dev/null 2>&1; then
  # rustup installs into ~/.cargo/bin; a login shell may not have it on PATH yet.
  export PATH="$HOME/.cargo/bin:$PATH"
fi

NIGHTLY="${NEOCORTEX_NIGHTLY:-nightly}"
TARGETS=(x86_64-apple-darwin x86_64-unknown-freebsd)
CRATES=(-p neocortex-sys -p neocortex-core -p neocortex-sync -p neocortex)

step() { printf '\n== %s ==\n' "$*"; }
run() {
  local start=$SECONDS
  echo "+ $*"
  "$@"
  echo "   ($((SECONDS - start)) s)"
}

step "toolchain: $NIGHTLY with rust-src and clippy"
# Install only what is missing: `rustup toolchain install` on an installed nightly would
# update it, which is a download and a different compiler.
if ! rustup run "$NIGHTLY" rustc --version >/dev/null 2>&1; then
  rustup toolchain install "$NIGHTLY" --profile minimal --component rust-src,clippy
fi
rustup component add --toolchain "$NIGHTLY" rust-src clippy
rustup run "$NIGHTLY" rustc --version

total=$SECONDS
for target in "${TARGETS[@]}"; do
  step "$target"
  run cargo +"$NIGHTLY" check -Zbuild-std --target "$target" -p neocortex --all-features
  run cargo +"$NIGHTLY" check -Zbuild-std --target "$target" -p neocortex --no-default-features
  run cargo +"$NIGHTLY" check -Zbuild-std --target "$target" -p neocortex
  run cargo +"$NIGHTLY" clippy -Zbuild-std --target "$target" "${CRATES[@]}" --lib --examples \
    -- -D warnings
done

step "done: macOS and FreeBSD build ($((SECONDS - total)) s)"

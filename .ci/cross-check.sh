#!/usr/bin/env bash
# Cross checks: every crate but `benches` (Linux-only by design) must build for macOS and
# FreeBSD. Both are tier-2 targets whose standard library rustup ships, so the pinned
# toolchain (rust-toolchain.toml) checks them with `rustup target add`: no SDK, linker or
# sysroot of the target is needed, since `cargo check` links and runs nothing. This proves
# that the code compiles there (types, cfgs, libc names), not that it works there.
#
# Per target: `cargo check -p neocortex` with all, no and default features (the facade pulls
# in sys, core and sync), then clippy with `-D warnings` on the four library crates and their
# examples, because code behind a non-Linux cfg is never linted by the Linux clippy run. The
# same pinned clippy as the Linux run: a lint appears here when we move the pin, not when a
# nightly adds one. The cross-process test suite is Linux-only (it uses /proc, pid and IPC
# namespaces, futexes).
#
# Usage: .ci/cross-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR=never
if ! command -v rustup >/dev/null 2>&1; then
  # rustup installs into ~/.cargo/bin; a login shell may not have it on PATH yet.
  export PATH="$HOME/.cargo/bin:$PATH"
fi

PINNED=$(sed -n 's/^channel = "\(.*\)"/\1/p' rust-toolchain.toml)
TARGETS=(x86_64-apple-darwin x86_64-unknown-freebsd)
CRATES=(-p neocortex-sys -p neocortex-core -p neocortex-sync -p neocortex)

step() { printf '\n== %s ==\n' "$*"; }
run() {
  local start=$SECONDS
  echo "+ $*"
  "$@"
  echo "   ($((SECONDS - start)) s)"
}

step "toolchain: $PINNED with the standard library of ${TARGETS[*]}"
rustup target add --toolchain "$PINNED" "${TARGETS[@]}"
rustup run "$PINNED" rustc --version

total=$SECONDS
for target in "${TARGETS[@]}"; do
  step "$target"
  run cargo +"$PINNED" check --target "$target" -p neocortex --all-features
  run cargo +"$PINNED" check --target "$target" -p neocortex --no-default-features
  run cargo +"$PINNED" check --target "$target" -p neocortex
  run cargo +"$PINNED" clippy --target "$target" "${CRATES[@]}" --lib --examples -- -D warnings
done

step "done: macOS and FreeBSD build ($((SECONDS - total)) s)"

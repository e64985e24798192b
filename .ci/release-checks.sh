#!/usr/bin/env bash
# Release checks: the declared MSRV builds, every feature combination of the facade checks,
# documents (-D warnings) and passes its doctests, and `cargo package --workspace` packages
# and verifies the publishable crates (README, licenses and the README's doctests ship with
# the facade).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR=never
if ! command -v rustup >/dev/null 2>&1; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi

step() { printf '\n== %s ==\n' "$*"; }
run() {
  local start=$SECONDS
  echo "+ $*"
  "$@"
  echo "   ($((SECONDS - start)) s)"
}

MSRV=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)
step "MSRV $MSRV: the libraries build with the declared toolchain"
if ! rustup run "$MSRV" rustc --version >/dev/null 2>&1; then
  rustup toolchain install "$MSRV" --profile minimal
fi
run cargo +"$MSRV" check --lib -p neocortex-sys -p neocortex-core -p neocortex-sync -p neocortex \
  --all-features

step "feature matrix of the facade: check, docs, doctests"
for features in "--no-default-features" "" "--all-features"; do
  echo "-- features: ${features:-default}"
  # The cross-process tests and the examples use the built-in locks: without them, the
  # library alone.
  targets=--all-targets
  [ "$features" = "--no-default-features" ] && targets=--lib
  # shellcheck disable=SC2086
  run cargo check -p neocortex $targets $features
  # shellcheck disable=SC2086
  run env RUSTDOCFLAGS="-D warnings" cargo doc -p neocortex --no-deps $features
  # shellcheck disable=SC2086
  run cargo test -p neocortex --doc $features
done
run cargo test -p neocortex-core --doc --all-features

step "cargo package --workspace (with verification)"
# Verification builds each crate against the others' packaged sources, which cargo treats
# as registry crates: immutable for a given name and version. It unpacks them into its
# registry cache and keeps their builds in the target directory, and reuses both, so a second
# run on the same machine would verify against the first run's sources. Drop both: the
# unpacked copies, and a target directory of its own for the verification builds.
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
rm -rf "${CARGO_HOME:-$HOME/.cargo}"/registry/src/-*/neocortex{,-sys,-core,-sync}-"$VERSION"
rm -rf target/package-verify
run env CARGO_TARGET_DIR=target/package-verify cargo package --workspace --exclude neocortex-benches

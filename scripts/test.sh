#!/usr/bin/env bash
# Runs every test of flotilla: formatting and lints, Rust unit and integration tests
# (those that need containerd included), and the Python end-to-end tests against the
# real binary with the real AWS CLI and boto3. Installs what is missing first.
# Exits non-zero when anything fails.
#
# Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

step() { printf '\n==> %s\n' "$*"; }

step "setup (apt and pip packages)"
scripts/setup.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo build"
cargo build --workspace --locked
export FLOTILLA_BIN="$PWD/target/debug/flotilla"

step "cargo test (unit, integration, and the tests that need containerd)"
cargo test --workspace --locked -- --include-ignored

step "pytest (end-to-end, black-box)"
python3 -m pytest tests -q -p no:cacheprovider

step "all tests passed"

#!/usr/bin/env bash
# The tests, as README.md gives them and CI runs them (.ci/run calls this and nothing
# else): installs the programs the tests drive (as root with apt-get, only what is
# missing; otherwise names them and stops), checks formatting, lints and docs, builds
# everything, runs every test.
# Extra arguments go to `cargo test` (e.g. a test name, or `-- --test-threads=1`).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source-path=SCRIPTDIR/..
. scripts/lib/packages.sh

# gcc and libc6-dev: the linker for Rust, and small C programs the tests compile.
pkgs=(netcat-openbsd ncat busybox iproute2 iputils-ping procps curl wget socat tcpdump nftables gcc libc6-dev)
# Any python3 on PATH will do (pyenv, for instance); Debian's only when there is none.
command -v python3 >/dev/null 2>&1 || pkgs+=(python3)
need_packages "${pkgs[@]}"
need_cargo

# The project's own rules first (formatting, lints as errors, documentation without
# warnings): a change that breaks them fails here as a failing test would.
cargo fmt --all --check
cargo clippy --workspace --all-targets --release -- -D warnings
RUSTDOCFLAGS=-Dwarnings cargo doc --no-deps --workspace --release
# Files up to 500 lines, functions up to 80 (tests aside).
scripts/check-sizes.sh
# The build comes first because the end-to-end tests run the `rina` command and the
# interposer library, which `cargo test` alone does not build.
cargo build --release --workspace && cargo test --release --workspace "$@"

# shellcheck shell=bash
# What the README's two commands (examples/netcat/demo.sh, scripts/test.sh) and the
# Ethernet demo need on the machine, checked and installed in one place. Sourced, not run.

# need_packages PKG...: makes sure the Debian packages PKG... are installed. Prints
# nothing and changes nothing when they all are (checked with `dpkg -s`). Otherwise, as
# root, installs the missing ones with apt-get (one `apt-get update` first); not as root,
# names them and exits 1. Without dpkg (not Debian or Ubuntu) it only names them.
need_packages() {
  local pkg missing=()
  if ! command -v dpkg >/dev/null 2>&1; then
    echo "$0: no dpkg here to check packages; needed (Debian names): $*" >&2
    return 0
  fi
  for pkg in "$@"; do
    # Installed means "install ok installed", not merely known to dpkg (removed
    # packages keep a status entry).
    [ "$(dpkg -s "$pkg" 2>/dev/null | sed -n 's/^Status: //p')" = "install ok installed" ] ||
      missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "$0: missing packages: ${missing[*]}" >&2
    echo "$0: run this as root (it installs them), or first: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "$0: installing ${missing[*]}" >&2
  if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; }; then
    echo "$0: could not install ${missing[*]} with apt-get" >&2
    exit 1
  fi
}

# need_cargo: stops with a hint when cargo is not on PATH. Rust is not installed here:
# rustup does it, and then fetches the toolchain pinned in rust-toolchain.toml by itself.
need_cargo() {
  command -v cargo >/dev/null 2>&1 && return 0
  cat >&2 <<'HINT'
cargo is not on PATH. Install Rust with rustup (https://rustup.rs):
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  . "$HOME/.cargo/env"
then run this again (rustup fetches the toolchain pinned in rust-toolchain.toml).
HINT
  echo "$0: stopped: cargo is needed" >&2
  exit 1
}

#!/usr/bin/env bash
# Installs what building and testing strata needs, idempotently: Debian packages for the
# llama.cpp build, a Python virtualenv with the official clients used by the tests, and the
# default model. Sourced by run.sh and test.sh; quick when everything is already there.
set -euo pipefail

STRATA_CACHE="${STRATA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/strata}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$STRATA_CACHE/target}"
export STRATA_VENV="${STRATA_VENV:-$STRATA_CACHE/venv}"
mkdir -p "$STRATA_CACHE"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# cargo for the release builds run.sh and bench.sh make: they run on this machine, so on x86_64
# llama.cpp is built for its CPU (GGML_NATIVE: AVX-512, VNNI and AMX kernels where it has
# them) while strata's own code keeps the portable x86-64-v3 baseline of .cargo/config.toml.
# Measured on a 2-core Xeon with AMX (docs/benchmarks.md): llama.cpp for this CPU decoded 8
# streams at about 2.4x the portable build's rate and reached the first token 3x sooner, while
# strata's own code built for it spent half as much CPU again per proxied request. Two
# target-cpu flags do this: rustc obeys the last, llama-cpp-sys-2's build script (pinned in
# Cargo.lock) looks for the first and turns on GGML_NATIVE when it says `native`.
# STRATA_PORTABLE=1 builds everything for the baseline; a RUSTFLAGS of your own wins. Plain
# cargo, the Dockerfile and the deployment builds stay portable, and so do the tests' builds.
strata_cargo() {
  if [ "$(uname -m)" = x86_64 ] && [ "${STRATA_PORTABLE:-0}" = 0 ] && [ -z "${RUSTFLAGS:-}" ]; then
    RUSTFLAGS="-C target-cpu=native -C target-cpu=x86-64-v3" cargo "$@"
  else
    cargo "$@"
  fi
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

install_debian_packages() {
  local need=()
  for pkg in cmake clang libclang-dev pkg-config python3-venv; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
  done
  # pip and venv may come from a non-Debian Python (pyenv); then the Debian ones are not needed.
  if python3 -m venv --help >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1; then
    need=("${need[@]/python3-venv}")
  else
    need+=(python3-pip)
  fi
  local missing=()
  for p in "${need[@]}"; do [ -n "$p" ] && missing+=("$p"); done
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

setup_venv() {
  local stamp="$STRATA_VENV/.requirements"
  local req
  req="$(cat "$(dirname "${BASH_SOURCE[0]}")/../tests/python/requirements.txt")"
  if [ ! -x "$STRATA_VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$req" ]; then
    log "creating Python environment in $STRATA_VENV"
    python3 -m venv "$STRATA_VENV"
    "$STRATA_VENV/bin/pip" install -q --disable-pip-version-check -r "$(dirname "${BASH_SOURCE[0]}")/../tests/python/requirements.txt"
    printf '%s' "$req" > "$stamp"
  fi
}

# A virtualenv at VENV holding exactly REQ (one pinned requirement), made again only when its
# program BIN is missing or REQ changed: a second run costs nothing.
setup_pinned_venv() {
  local venv="$1" req="$2" bin="$3" what="$4"
  local stamp="$venv/.requirements"
  if [ ! -x "$venv/bin/$bin" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$req" ]; then
    log "creating $what in $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "$req"
    printf '%s' "$req" > "$stamp"
  fi
}

# The LiteLLM proxy, the reference `strata bench overhead` measures strata against, in its own
# virtualenv (its dependencies must not mix with the test clients'). Pinned, so every run
# measures the same proxy.
LITELLM_VERSION=1.108.7
export STRATA_LITELLM_VENV="${STRATA_LITELLM_VENV:-$STRATA_CACHE/litellm-venv}"
setup_litellm() {
  setup_pinned_venv "$STRATA_LITELLM_VENV" "litellm[proxy]==$LITELLM_VERSION" litellm "the LiteLLM proxy environment"
}

# Open WebUI, whose RAG flow tests/python/test_open_webui.py drives against strata, in its own
# virtualenv (it pins hundreds of packages of its own). Pinned, so every run tests the same
# release. It pulls torch with its CUDA libraries (about 7 GB in all) though the test embeds
# and chats through strata; pip's cache makes a reinstall quick.
OPENWEBUI_VERSION=0.12.4
export STRATA_OPENWEBUI_VENV="${STRATA_OPENWEBUI_VENV:-$STRATA_CACHE/openwebui-venv}"
setup_openwebui() {
  setup_pinned_venv "$STRATA_OPENWEBUI_VENV" "open-webui==$OPENWEBUI_VERSION" open-webui "the Open WebUI environment"
}

# cargo-deny checks licenses and banned crates in CI (scripts/test.sh). Built from source once;
# this version builds with the toolchain's rustc (it needs 1.88 or newer).
CARGO_DENY_VERSION=0.20.2
install_cargo_deny() {
  if ! cargo deny --version 2>/dev/null | grep -q " $CARGO_DENY_VERSION\$"; then
    log "installing cargo-deny $CARGO_DENY_VERSION"
    cargo install --locked --quiet "cargo-deny@$CARGO_DENY_VERSION"
  fi
}

# cargo-machete keeps unused dependencies out of every Cargo.toml (scripts/test.sh).
CARGO_MACHETE_VERSION=0.9.2
install_cargo_machete() {
  if ! cargo machete --version 2>/dev/null | grep -q "$CARGO_MACHETE_VERSION"; then
    log "installing cargo-machete $CARGO_MACHETE_VERSION"
    cargo install --locked --quiet "cargo-machete@$CARGO_MACHETE_VERSION"
  fi
}

install_debian_packages

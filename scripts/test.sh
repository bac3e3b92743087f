#!/usr/bin/env bash
# Every test: Rust unit and integration tests, then the Python tests that drive the real
# servers with the official ollama, openai and boto3 clients.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
setup_venv
setup_openwebui

install_cargo_deny
install_cargo_machete

log "formatting (cargo fmt --check) and unused dependencies (cargo machete)"
cargo fmt --all --check
cargo machete

log "licenses and banned crates (cargo deny, offline)"
# cargo deny reads every platform's dependencies; fetch them all first (the build fetches only
# this platform's), then check without the network.
cargo fetch --quiet
cargo deny --offline --log-level error check licenses bans

log "pruning stale build outputs"
# Executables of earlier builds pile up in the shared target dir (about 0.5 GB each with debug
# info) and can fill the disk; cargo relinks any it still needs.
find "$CARGO_TARGET_DIR/debug/deps" -maxdepth 1 -type f -perm -u+x ! -name '*.*' -mtime +1 -delete 2>/dev/null || true

log "building"
cargo build --workspace --bins --tests

log "lints (cargo clippy, warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings
STRATA="$CARGO_TARGET_DIR/debug/strata"
log "fetching the default model"
"$STRATA" model pull

log "cargo test"
cargo test --workspace --no-fail-fast

log "python tests"
export STRATA_BIN="$STRATA"
"$STRATA_VENV/bin/python" -m pytest -q tests/python

log "deployment checks (cfn-lint, sam validate, sam build, hadolint, compose schema, the compose chain as processes)"
bash deploy/check.sh --build
bash deploy/compose-smoke.sh "$CARGO_TARGET_DIR/debug"

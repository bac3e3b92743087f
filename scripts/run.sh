#!/usr/bin/env bash
# The main job: build strata, fetch the default model, and serve it to Ollama and OpenAI
# clients on 127.0.0.1:11434 (override with STRATA_LISTEN).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

log "building strata (release)"
cargo build --release -p cli
STRATA="$CARGO_TARGET_DIR/release/strata"
log "fetching the default model"
"$STRATA" model pull
log "starting strata"
exec "$STRATA" serve --listen "${STRATA_LISTEN:-127.0.0.1:11434}" "$@"

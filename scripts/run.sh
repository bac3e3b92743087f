#!/usr/bin/env bash
# The main job: build strata and the Lambda bootstrap, fetch the default model, and run the
# whole chain locally (strata up): Ollama and OpenAI clients reach the LLM Server on
# 127.0.0.1:11434 (override with STRATA_LISTEN), which goes through the API Gateway,
# MainService, the Lambda service and the Bedrock emulator, each its own process.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

log "building strata and bootstrap (release)"
strata_cargo build --release -p cli -p lambda
STRATA="$CARGO_TARGET_DIR/release/strata"
log "fetching the default model"
"$STRATA" model pull
log "starting the chain"
exec "$STRATA" up --listen "${STRATA_LISTEN:-127.0.0.1:11434}" "$@"

#!/usr/bin/env bash
# Benchmarks with the references they are compared with: installs what the suites need (the
# LiteLLM proxy for `overhead` in its own virtualenv), builds strata and the Lambda bootstrap in
# release mode and runs `strata bench` with the given arguments, e.g.
#   scripts/bench.sh                    every suite but soak, written to docs/benchmarks.md
#   scripts/bench.sh overhead --quick   the overhead suite alone, briefly
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
setup_litellm

log "building strata and bootstrap (release)"
strata_cargo build --release -p cli -p lambda
STRATA="$CARGO_TARGET_DIR/release/strata"
"$STRATA" model pull
export STRATA_BENCH_LITELLM="${STRATA_BENCH_LITELLM:-$STRATA_LITELLM_VENV/bin/litellm}"
exec "$STRATA" bench "$@"

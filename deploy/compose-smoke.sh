#!/usr/bin/env bash
# Runs deploy/compose.yaml's services as local processes, with the same commands, environment
# and shared config (deploy/compose.strata.toml, service names mapped to 127.0.0.1), then sends
# one chat through the chain and runs the image's HEALTHCHECK probe against every hop. For
# machines without a container engine. Needs the ports 8080, 8081, 8090, 9001 and 11434 free.
#
#   bash deploy/compose-smoke.sh [DIR with strata and bootstrap, default $CARGO_TARGET_DIR/debug]
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
B="${1:-${CARGO_TARGET_DIR:-$HOME/.cache/strata/target}/debug}"
for port in 8080 8081 8090 9001 11434; do
  if ss -ltn | awk '{print $4}' | grep -q ":$port\$"; then echo "port $port is in use" >&2; exit 1; fi
done
D=$(mktemp -d /tmp/compose-proc.XXXX)
sed -e 's#http://\(gateway\|main-service\|lambda-service\|bedrock-emulator\):#http://127.0.0.1:#' \
    -e "s#/var/cache/strata/models#$HOME/.cache/strata/models#" \
    -e "s#/usr/local/bin/bootstrap#$B/bootstrap#" deploy/compose.strata.toml > "$D"/strata.toml
grep -n "127.0.0.1\|path =\|cache_dir" "$D"/strata.toml
export STRATA_API_KEY=test-key-123 STRATA_INTERNAL_SECRET=test-internal-secret-456
C="$D"/strata.toml
pids=()
"$B"/strata model pull smollm2:135m --config "$C" > "$D"/pull.log 2>&1; echo "model-pull exit $?"
wait_up() { for _ in $(seq 1 120); do curl -s -o /dev/null "$1" && return 0; sleep 0.5; done; echo "not up: $1"; return 1; }
"$B"/strata bedrock-emulator --listen 0.0.0.0:8090 --config "$C" > "$D"/be.log 2>&1 & pids+=($!)
wait_up http://127.0.0.1:8090/
STRATA_LAMBDA_SERVICE__CALLER_ACCESS_KEY_ID=strata-main-service STRATA_LAMBDA_SERVICE__CALLER_SECRET_ACCESS_KEY=$STRATA_INTERNAL_SECRET "$B"/strata lambda-service --listen 0.0.0.0:9001 --config "$C" > "$D"/ls.log 2>&1 & pids+=($!)
wait_up http://127.0.0.1:9001/2015-03-31/functions/
AWS_ACCESS_KEY_ID=strata-main-service AWS_SECRET_ACCESS_KEY=$STRATA_INTERNAL_SECRET AWS_REGION=us-east-1 STRATA_MAIN_SERVICE__GATEWAY_SECRET=$STRATA_INTERNAL_SECRET "$B"/strata main-service --listen 0.0.0.0:8081 --config "$C" > "$D"/ms.log 2>&1 & pids+=($!)
wait_up http://127.0.0.1:8081/healthz
STRATA_GATEWAY__API_KEYS=$STRATA_API_KEY STRATA_GATEWAY__INTEGRATION_SECRET=$STRATA_INTERNAL_SECRET "$B"/strata gateway --listen 0.0.0.0:8080 --config "$C" > "$D"/gw.log 2>&1 & pids+=($!)
wait_up http://127.0.0.1:8080/
STRATA_SERVER__API_KEYS=$STRATA_API_KEY STRATA_SERVER__CHAIN__API_KEY=$STRATA_API_KEY "$B"/strata serve --backend chain --listen 0.0.0.0:11434 --config "$C" > "$D"/llm.log 2>&1 & pids+=($!)
wait_up http://127.0.0.1:11434/
echo "--- chat through the chain"
curl -fsS -m 60 http://127.0.0.1:11434/api/chat -H "Authorization: Bearer $STRATA_API_KEY" -d '{"model":"smollm2:135m","messages":[{"role":"user","content":"Say hi"}],"stream":false,"options":{"num_predict":16}}'; echo
echo "--- wrong key at the gateway"
curl -sS -m 10 -o /dev/null -w '%{http_code}\n' http://127.0.0.1:8080/v1/generate -H 'x-api-key: nope' -d '{}'
echo "--- MainService and the Lambda service without their caller's secret (403 each)"
inner=$(curl -sS -m 10 -o /dev/null -w '%{http_code}' http://127.0.0.1:8081/v1/generate -d '{}')
lambda=$(curl -sS -m 10 -o /dev/null -w '%{http_code}' -X POST http://127.0.0.1:9001/2015-03-31/functions/strata/invocations -d '{}')
echo "main-service $inner, lambda-service $lambda"
health=0
echo "--- healthcheck probes (Dockerfile HEALTHCHECK command)"
for u in http://127.0.0.1:8090/ http://127.0.0.1:9001/2015-03-31/functions/ http://127.0.0.1:8081/healthz http://127.0.0.1:8080/ http://127.0.0.1:11434/; do
  STRATA_HEALTH_URL=$u python3 -c "import os,sys,urllib.request,urllib.error
try:
 urllib.request.urlopen(os.environ['STRATA_HEALTH_URL'], timeout=2)
except urllib.error.HTTPError as e:
 sys.exit(0 if e.code < 500 else 1)
except Exception:
 sys.exit(1)"; rc=$?; echo "$u -> $rc"; [ "$rc" -eq 0 ] || health=1
done
status=$health
[ "$inner" = 403 ] && [ "$lambda" = 403 ] || status=1
answer=$(curl -fsS -m 60 http://127.0.0.1:11434/api/chat -H "Authorization: Bearer $STRATA_API_KEY" -d '{"model":"smollm2:135m","messages":[{"role":"user","content":"Hi"}],"stream":false,"options":{"num_predict":4}}') || status=1
echo "$answer" | grep -q '"done":true' || status=1
for p in "${pids[@]}"; do kill "$p"; done; wait
echo "logs in $D"
[ "$status" -eq 0 ] && echo "compose chain (as processes): ok" || echo "compose chain (as processes): FAILED" >&2
exit "$status"

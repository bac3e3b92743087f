#!/usr/bin/env bash
# Offline checks of the deployment files, no AWS account or container engine needed:
#   cfn-lint and `sam validate --lint` on the SAM template, hadolint on the Dockerfile, the
#   compose file against the compose-spec JSON schema, shellcheck on the scripts and on the
#   instances' user data (parameters filled with samples), the user data's strata config keys
#   and the API's routes against MainService's code, and (with --build) `sam build`, which
#   cross-compiles the Lambda for arm64 with cargo-lambda and zig.
# Installs the pinned tools (deploy/requirements.txt) idempotently into
# ~/.cache/strata/deploy-venv. Any error or warning fails the script.
#
#   bash deploy/check.sh            # lint and validate (a few seconds once installed)
#   bash deploy/check.sh --build    # also `sam build` (minutes on a cold cargo cache)
set -euo pipefail
cd "$(dirname "$0")/.."

STRATA_CACHE="${STRATA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/strata}"
VENV="${STRATA_DEPLOY_VENV:-$STRATA_CACHE/deploy-venv}"
export SAM_CLI_TELEMETRY=0
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$STRATA_CACHE/target}"
TEMPLATE=deploy/aws/template.yaml

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

build=false
for arg in "$@"; do
  case "$arg" in
    --build) build=true ;;
    *) echo "usage: $0 [--build]" >&2; exit 2 ;;
  esac
done

stamp="$VENV/.requirements"
if [ ! -x "$VENV/bin/python" ] || ! cmp -s deploy/requirements.txt "$stamp"; then
  log "installing deployment tools into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r deploy/requirements.txt
  cp deploy/requirements.txt "$stamp"
fi
export PATH="$VENV/bin:$PATH"

log "cfn-lint $TEMPLATE"
cfn-lint "$TEMPLATE"

log "sam validate --lint"
out="$(sam validate --lint -t "$TEMPLATE" 2>&1)" || { echo "$out"; exit 1; }
echo "$out"
# sam prints lint findings but may still exit 0 on warnings: accept only the clean message.
[ "$(echo "$out" | grep -cv 'is a valid SAM Template')" -eq 0 ] || { echo "sam validate reported findings" >&2; exit 1; }

log "hadolint Dockerfile"
hadolint Dockerfile

log "compose-spec schema: deploy/compose.yaml"
check-jsonschema --builtin-schema vendor.compose-spec deploy/compose.yaml

log "shellcheck: deploy scripts and the launch template's user data"
userdata="$(mktemp)"
trap 'rm -f "$userdata"' EXIT
python - "$TEMPLATE" "$userdata" <<'PY'
import re, sys
from cfnlint.decode import decode
template, _ = decode(sys.argv[1])
data = template["Resources"]["MainServiceLaunchTemplate"]["Properties"]["LaunchTemplateData"]
body = data["UserData"]["Fn::Base64"]["Fn::Sub"][0]
sample = {"BinaryS3Uri": "s3://bucket/strata", "BinaryUrl": "", "MainServicePort": "8081",
          "StrataFunction": "strata-StrataFunction-0123", "AWS::Region": "us-east-1",
          "StreamingTimeoutMs": "300000", "LogGroup": "/strata/strata/main-service",
          "GatewaySecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:strata-gw-AbCdEf"}
open(sys.argv[2], "w").write(re.sub(r"\$\{([^}!]+)\}", lambda m: sample[m.group(1)], body))
PY
shellcheck deploy/check.sh deploy/compose-smoke.sh "$userdata"

log "the template against the code: MainService's config keys, routes and health check"
python - "$TEMPLATE" "$userdata" <<'PY'
import re, sys, tomllib
from cfnlint.decode import decode
template, _ = decode(sys.argv[1])
res = template["Resources"]
errors = []

def fields(path, struct):
    body = re.search(r"pub struct %s \{(.*?)\n\}" % struct, open(path).read(), re.S).group(1)
    return set(re.findall(r"^\s*pub ([a-z_]+):", body, re.M))

# The strata.toml written by the user data: every key must be a field of its settings struct.
settings = {
    "": (None, {"log", "main_service"}),
    "log": ("crates/telemetry/src/logging.rs", "LogSettings"),
    "main_service": ("crates/main-service/src/config.rs", "MainServiceSettings"),
    "main_service.lambda": ("crates/main-service/src/config.rs", "LambdaSettings"),
}
toml_text = re.search(r"<<'TOML'\n(.*?)\nTOML\n", open(sys.argv[2]).read(), re.S).group(1)
def walk(table, prefix):
    known = settings[prefix][1] if prefix == "" else fields(*settings[prefix])
    for key, value in table.items():
        name = f"{prefix}.{key}".lstrip(".")
        if key not in known:
            errors.append(f"user data config: unknown key {name}")
        elif isinstance(value, dict):
            walk(value, name) if name in settings else errors.append(f"user data config: unchecked table {name}")
walk(tomllib.loads(toml_text), "")

# Routes the API proxies to and the load balancer's health check exist in MainService.
routes = set(re.findall(r'\.route\("([^"]+)"', open("crates/main-service/src/startup.rs").read()))
if res["MainServiceTargetGroup"]["Properties"]["HealthCheckPath"] not in routes:
    errors.append("the target group's health check path is not a MainService route")
for name in ("GenerateMethod", "SummarizeMethod"):
    integration = res[name]["Properties"]["Integration"]
    if integration.get("ResponseTransferMode") != "STREAM":
        errors.append(f"{name}: ResponseTransferMode is not STREAM")
    path = re.sub(r"^.*\}", "", integration["Uri"]["Fn::Sub"])
    if path not in routes:
        errors.append(f"{name}: {path} is not a MainService route")
if errors:
    sys.exit("\n".join(errors))
print(f"ok: user data config keys, routes {sorted(routes)}")
PY

if $build; then
  if ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then
    log "adding the aarch64-unknown-linux-gnu Rust target"
    rustup target add aarch64-unknown-linux-gnu
  fi
  log "sam build (cargo lambda build --release --arm64, zig linker)"
  build_dir="$STRATA_CACHE/sam-build"
  sam build -t "$TEMPLATE" --build-dir "$build_dir" --cache-dir "$STRATA_CACHE/sam-cache"
  file "$build_dir/StrataFunction/bootstrap" 2>/dev/null || ls -l "$build_dir/StrataFunction/bootstrap"
fi
log "deployment checks passed"

"""API conformance: docs/openapi.yaml against the real `strata serve`.

schemathesis generates requests from the document (valid and invalid ones, boundary values,
the documented examples) and checks every answer: no 5xx, only documented status codes and
content types, bodies and headers that match their schemas, NDJSON and SSE streams that are
well-formed line by line and end properly (tests/python/openapi_hooks.py). The CI run is
bounded; STRATA_OPENAPI_MAX_EXAMPLES and STRATA_OPENAPI_SEED widen it (docs/reliability.md,
"API conformance", has the dedicated run).
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "docs" / "openapi.yaml"
HOOKS = Path(__file__).resolve().parent / "openapi_hooks.py"
CONFIG = Path(__file__).resolve().parent / "schemathesis.toml"
STARTUP = ROOT / "crates" / "llm-server" / "src" / "startup.rs"

CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
    "unsupported_method",
    "allow_header_conformance",
    "ndjson_stream_conformance",
    "sse_stream_conformance",
]

# The documented examples use the default model's name; the instant backend answers to it too,
# so generated requests reach the success paths as well as the error paths.
INSTANT_MODELS = {"STRATA_SERVER__INSTANT__MODELS": '["instant", "smollm2:135m"]'}

# Routes whose success path must have been exercised (200 seen) by the run.
GENERATING_ROUTES = ["/api/generate", "/api/chat", "/api/show", "/api/pull", "/api/embed", "/api/embeddings", "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models/{*model}"]


def schemathesis_run(url, workdir, max_examples, seed):
    cli = Path(sys.executable).parent / "schemathesis"
    cmd = [
        str(cli), "--config-file", str(CONFIG), "run", str(SCHEMA),
        "--url", url,
        "--checks", ",".join(CHECKS),
        "--max-examples", str(max_examples),
        "--seed", str(seed),
        # One worker: hypothesis describes filter lambdas with ast.parse, which CPython 3.11
        # can fail from concurrent threads ("AST constructor recursion depth mismatch").
        "--workers", "1",
        "--request-timeout", "30",
        "--no-color",
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS)}
    # Run in a scratch directory: hypothesis keeps its example database in the working directory.
    return subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=600)


def requests_by_route_and_status(url):
    text = httpx.get(url + "/metrics").text
    seen = {}
    for route, status, count in re.findall(r'strata_requests_total\{route="([^"]+)",status="(\d+)"\} (\d+)', text):
        seen[(route, int(status))] = int(count)
    return seen


def test_schemathesis_finds_no_server_error_and_no_schema_violation(make_server, tmp_path):
    s = make_server(["--backend", "instant"], env=INSTANT_MODELS)
    max_examples = int(os.environ.get("STRATA_OPENAPI_MAX_EXAMPLES", "40"))
    seed = int(os.environ.get("STRATA_OPENAPI_SEED", "20261125"))
    r = schemathesis_run(s.url, tmp_path, max_examples, seed)
    report = r.stdout + r.stderr
    assert r.returncode == 0, report[-30000:]
    generated = re.search(r"(\d+) generated, (\d+) passed", report)
    assert generated and int(generated.group(1)) >= 10 * max_examples, report[-3000:]
    assert "Tested: 23" in report, report[-3000:]
    # The run reached the server's success and error paths, not only its edges.
    seen = requests_by_route_and_status(s.url)
    for route in GENERATING_ROUTES:
        assert seen.get((route, 200), 0) > 0, f"no 200 from {route}: {seen}"
    for route in ["/api/generate", "/api/chat", "/v1/chat/completions", "/v1/completions"]:
        assert seen.get((route, 400), 0) > 0, f"no 400 from {route}: {seen}"
    assert s.proc.poll() is None, "the server died during the run"


def test_the_document_is_valid_openapi():
    # The OpenAPI 3.1 meta-schema, the schema objects in it, and every $ref resolving.
    from openapi_spec_validator import validate

    validate(yaml.safe_load(SCHEMA.read_text()))


def documented_operations():
    doc = yaml.safe_load(SCHEMA.read_text())
    methods = {"get", "head", "post", "put", "delete", "patch", "options", "trace"}
    return {(path, m.upper()) for path, item in doc["paths"].items() for m in item if m in methods}


def test_the_document_lists_exactly_the_routes_the_server_has():
    source = STARTUP.read_text()
    routed = set()
    # `.route("/path", get(a).head(b))` and `("/path", post(a))` in the unsupported list.
    for path, methods in re.findall(r'\(\s*"(/[^"]*)",\s*((?:\w+\(\w+::\w+\)\.?)+)\)', source):
        path = re.sub(r"\{\*(\w+)\}", r"{\1}", path)
        for method in re.findall(r"(\w+)\(\w+::\w+\)", methods):
            routed.add((path, method.upper()))
    assert len(routed) > 15, routed
    assert routed == documented_operations()


def test_every_documented_example_is_answered_as_documented(make_server):
    # The examples are what a reader copies: each must work against a running server.
    s = make_server(["--backend", "instant"], env=INSTANT_MODELS)
    doc = yaml.safe_load(SCHEMA.read_text())
    tried = 0
    for path, item in doc["paths"].items():
        for method, op in item.items():
            body = op.get("requestBody", {}) if isinstance(op, dict) else {}
            example = body.get("content", {}).get("application/json", {}).get("example")
            if example is None:
                continue
            r = httpx.request(method.upper(), s.url + path, json=example, timeout=30)
            assert r.status_code == 200, (path, r.text)
            assert r.headers["content-type"].startswith("application/json"), (path, r.headers)
            tried += 1
    assert tried >= 6

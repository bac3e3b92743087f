"""Raw HTTP against `strata serve`: malformed input, limits, protocol-shaped errors, tracing,
metrics, backpressure and graceful shutdown."""

import json
import signal
import time

import boto3
import botocore.config
import botocore.exceptions
import httpx
import pytest

from conftest import MODEL
from test_chain import hops, start_up

# At temperature 0 the model keeps counting until num_predict: a generation that runs for as
# long as a test needs.
COUNTING = ", ".join(str(i) for i in range(1, 60)) + ","


def test_malformed_json_is_400_in_each_protocol(server):
    r = httpx.post(server.url + "/api/generate", content=b"{not json")
    assert r.status_code == 400 and "error" in r.json() and isinstance(r.json()["error"], str)
    r = httpx.post(server.url + "/v1/chat/completions", content=b"[1,2")
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = httpx.post(server.url + "/api/chat", content=b"")
    assert r.status_code == 400


def test_missing_and_wrongly_typed_fields_are_400(server):
    r = httpx.post(server.url + "/api/generate", json={"prompt": "hi"})
    assert (r.status_code, r.json()) == (400, {"error": "model is required"})
    r = httpx.post(server.url + "/api/generate", json={"model": MODEL, "prompt": "hi", "options": {"temperature": "hot"}})
    assert r.status_code == 400
    r = httpx.post(server.url + "/api/generate", json={"model": MODEL, "prompt": "hi", "options": {"top_p": 7}, "stream": False})
    assert r.status_code == 400 and "top_p" in r.json()["error"]
    r = httpx.post(server.url + "/api/chat", json={"model": "../../etc/passwd", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 400


def test_unknown_routes_answer_json(server):
    r = httpx.get(server.url + "/api/nope")
    assert r.status_code == 404 and r.json() == {"error": "404 page not found"}
    r = httpx.post(server.url + "/api/create", json={"model": "x"})
    assert r.status_code == 501 and "error" in r.json()
    r = httpx.get(server.url + "/v1/nope")
    assert r.status_code == 404 and "message" in r.json()["error"]


def test_head_and_version(server):
    assert httpx.head(server.url + "/").status_code == 200
    assert "version" in httpx.get(server.url + "/api/version").json()


def test_oversized_body_is_413(instant_server):
    big = {"model": "instant", "prompt": "x" * 10000}
    r = httpx.post(instant_server.url + "/api/generate", json=big)
    assert r.status_code == 413 and "error" in r.json()
    r = httpx.post(instant_server.url + "/v1/completions", json=big)
    assert r.status_code == 413 and "message" in r.json()["error"]


def test_traceparent_is_continued(server):
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    r = httpx.post(server.url + "/api/generate", headers={"traceparent": f"00-{trace}-00f067aa0ba902b7-01"},
                   json={"model": MODEL, "prompt": "hi", "stream": False, "options": {"num_predict": 2}}, timeout=60)
    assert r.status_code == 200
    assert r.headers["traceparent"].startswith(f"00-{trace}-")
    assert trace in server.logs()
    r = httpx.get(server.url + "/api/version")
    assert len(r.headers["traceparent"].split("-")[1]) == 32


def test_logs_are_json_and_never_contain_the_prompt(server):
    secret = "purple-elephant-4711"
    httpx.post(server.url + "/api/generate", json={"model": MODEL, "prompt": secret, "stream": False, "options": {"num_predict": 2}}, timeout=60)
    logs = server.logs()
    assert secret not in logs
    lines = [json.loads(l) for l in logs.splitlines() if l.startswith("{")]
    access = [l for l in lines if l.get("message") == "request" and l.get("route") == "/api/generate"]
    assert access and access[-1]["status"] == 200 and access[-1]["completion_tokens"] >= 1


def test_metrics_show_active_sequences_during_a_generation(make_server):
    s = make_server(["--model", MODEL])
    body = {"model": MODEL, "prompt": COUNTING, "raw": True, "options": {"num_predict": 1500, "temperature": 0}}
    with httpx.stream("POST", s.url + "/api/generate", json=body, timeout=60) as r:
        lines = r.iter_lines()
        next(lines)
        text = httpx.get(s.url + "/metrics").text
    assert "strata_active_sequences 1" in text, text
    assert "strata_inflight_requests 1" in text


def test_metrics_count_requests_and_tokens(server):
    httpx.post(server.url + "/api/generate", json={"model": MODEL, "prompt": "hi", "stream": False, "options": {"num_predict": 3}}, timeout=60)
    text = httpx.get(server.url + "/metrics").text
    assert 'strata_requests_total{route="/api/generate",status="200"}' in text
    assert 'strata_tokens_total{kind="completion"}' in text
    assert "strata_request_duration_seconds_bucket" in text
    assert "strata_queue_depth" in text and "strata_inflight_requests" in text


SLOW = {"STRATA_SERVER__INSTANT__WORD_DELAY_MS": "50", "STRATA_SERVER__INSTANT__REPLY": "word " * 400}


def test_beyond_the_queue_requests_get_503(make_server):
    s = make_server(["--backend", "instant"], env={**SLOW, "STRATA_SERVER__MAX_CONCURRENT_REQUESTS": "1", "STRATA_SERVER__MAX_QUEUED_REQUESTS": "0"})
    body = {"model": "instant", "prompt": "x"}
    with httpx.stream("POST", s.url + "/api/generate", json=body, timeout=60) as first:
        lines = first.iter_lines()  # keep the iterator: dropping it closes the stream
        next(lines)  # the first generation is running, for 20 s
        r = httpx.post(s.url + "/api/generate", json={**body, "stream": False})
        assert r.status_code == 503
        assert "server busy" in r.json()["error"]
        r = httpx.post(s.url + "/v1/chat/completions", json={"model": "instant", "messages": [{"role": "user", "content": "x"}]})
        assert r.status_code == 503 and r.json()["error"]["code"] == "overloaded"
    # Once the first client is gone its slot is free again.
    r = httpx.post(s.url + "/api/generate", json={**body, "stream": False, "options": {"num_predict": 2}}, timeout=30)
    assert r.status_code == 200


def test_sigterm_lets_a_running_stream_finish(make_server):
    # A grace period no loaded machine runs out of: what is tested is that the stream finishes.
    s = make_server(["--model", MODEL], env={"STRATA_SERVER__SHUTDOWN_GRACE_SECS": "120"})
    body = {"model": MODEL, "prompt": "Write a story.", "options": {"num_predict": 60, "temperature": 0}}
    lines = []
    with httpx.stream("POST", s.url + "/api/generate", json=body, timeout=60) as r:
        it = r.iter_lines()
        lines.append(next(it))
        s.proc.send_signal(signal.SIGTERM)
        lines.extend(it)
    last = json.loads(lines[-1])
    assert last["done"] is True, last
    assert s.proc.wait(timeout=30) == 0


def test_shutdown_grace_ends_long_streams_with_an_error_line(make_server):
    s = make_server(["--backend", "instant"], env={**SLOW, "STRATA_SERVER__SHUTDOWN_GRACE_SECS": "1"})
    with httpx.stream("POST", s.url + "/api/generate", json={"model": "instant", "prompt": "x"}, timeout=60) as r:
        it = r.iter_lines()
        next(it)
        s.proc.send_signal(signal.SIGTERM)
        rest = [json.loads(l) for l in it if l]
    assert rest[-1] == {"error": "server is shutting down"}, rest[-1]
    assert not any(l.get("done") for l in rest)
    assert s.proc.wait(timeout=30) == 0


# Every edge limit at once, small, on one instant server.
EDGE_LIMITS = {
    "STRATA_SERVER__MAX_HEADER_BYTES": "2048",
    "STRATA_SERVER__MAX_JSON_DEPTH": "8",
    "STRATA_SERVER__MAX_MESSAGES": "3",
    "STRATA_SERVER__MAX_MODEL_NAME_BYTES": "24",
}


@pytest.fixture(scope="module")
def edge_server(make_server_module):
    return make_server_module(["--backend", "instant"], env=EDGE_LIMITS)


def ollama_error(r, status):
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert list(body) == ["error"] and isinstance(body["error"], str), body
    return body["error"]


def openai_error(r, status):
    assert r.status_code == status, (r.status_code, r.text)
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["type"] == "invalid_request_error", err
    return err["message"]


def test_header_size_limit_is_431_in_each_protocol(edge_server):
    s = edge_server
    body = {"model": "instant", "prompt": "hi", "stream": False}
    big = {"x-filler": "a" * 2100}
    assert "headers too large" in ollama_error(httpx.post(s.url + "/api/generate", json=body, headers=big), 431)
    assert "headers too large" in openai_error(httpx.post(s.url + "/v1/completions", json=body, headers=big), 431)
    # Many small headers add up the same way.
    many = {f"x-h{i}": "v" * 40 for i in range(45)}
    ollama_error(httpx.post(s.url + "/api/generate", json=body, headers=many), 431)
    # Just under the limit is served.
    assert httpx.post(s.url + "/api/generate", json=body, headers={"x-filler": "a" * 1500}).status_code == 200


def test_json_depth_limit_is_400_in_each_protocol(edge_server):
    s = edge_server
    deep = '{"model":"instant","prompt":"hi","format":' + "[" * 9 + "]" * 9 + "}"
    assert "deeper than 8 levels" in ollama_error(httpx.post(s.url + "/api/generate", content=deep), 400)
    deep_chat = '{"model":"instant","messages":[{"role":"user","content":"x"}],"x":' + "{\"a\":" * 100000 + "1" + "}" * 100000 + "}"
    assert "deeper than 8 levels" in openai_error(httpx.post(s.url + "/v1/chat/completions", content=deep_chat), 400)
    # `truncate` is accepted and ignored (docs/contract.md), so only the depth can refuse it.
    ok = '{"model":"instant","prompt":"hi","stream":false,"truncate":' + "[" * 7 + "]" * 7 + "}"
    assert httpx.post(s.url + "/api/generate", content=ok).status_code == 200


def test_message_count_limit_is_400_in_each_protocol(edge_server):
    s = edge_server
    msgs = [{"role": "user", "content": "x"}] * 4
    assert "too many messages: 4; at most 3" in ollama_error(httpx.post(s.url + "/api/chat", json={"model": "instant", "messages": msgs}), 400)
    assert "too many messages" in openai_error(httpx.post(s.url + "/v1/chat/completions", json={"model": "instant", "messages": msgs}), 400)
    r = httpx.post(s.url + "/api/chat", json={"model": "instant", "messages": msgs[:3], "stream": False})
    assert r.status_code == 200 and r.json()["done"] is True


def test_model_names_never_reach_a_path(edge_server):
    s = edge_server
    bad = ["../../etc/passwd", "/etc/passwd", "a/../../b", "a\\b", "a\u0000b", "m\n", "x.gguf", "/tmp/model.gguf", "m" * 25]
    msgs = [{"role": "user", "content": "x"}]
    for name in bad:
        assert ollama_error(httpx.post(s.url + "/api/generate", json={"model": name, "prompt": "x"}), 400).startswith("invalid model name"), name
        assert ollama_error(httpx.post(s.url + "/api/chat", json={"model": name, "messages": msgs}), 400).startswith("invalid model name"), name
        assert ollama_error(httpx.post(s.url + "/api/show", json={"model": name}), 400).startswith("invalid model name"), name
        assert ollama_error(httpx.post(s.url + "/api/pull", json={"model": name}), 400).startswith("invalid model name"), name
        assert openai_error(httpx.post(s.url + "/v1/chat/completions", json={"model": name, "messages": msgs}), 400).startswith("invalid model name"), name
        assert openai_error(httpx.post(s.url + "/v1/completions", json={"model": name, "prompt": "x"}), 400).startswith("invalid model name"), name
    # A well-formed name the backend does not know is a 404, not a 400.
    assert httpx.post(s.url + "/api/generate", json={"model": "library/other:7b", "prompt": "x"}).status_code == 404


def test_the_embedded_backend_refuses_model_paths_unless_allowed(make_server, tmp_path):
    model_file = tmp_path / "copy.gguf"
    model_file.write_bytes(b"GGUF not really a model")
    s = make_server(["--backend", "embedded"])
    r = httpx.post(s.url + "/api/show", json={"model": str(model_file)})
    assert r.status_code == 400 and r.json()["error"].startswith("invalid model name")
    r = httpx.post(s.url + "/api/show", json={"model": "copy.gguf"})
    assert r.status_code == 400 and "file paths are not accepted" in r.json()["error"]
    # Allowed, a relative file name reaches the resolver (which finds no such file: 404).
    allowed = make_server(["--backend", "embedded"], env={"STRATA_SERVER__ALLOW_MODEL_PATHS": "true"})
    r = httpx.post(allowed.url + "/api/show", json={"model": "no-such-file.gguf"})
    assert r.status_code == 404, r.text


def test_a_prompt_beyond_the_context_is_a_clear_400(make_server):
    # Raw prompts are never truncated; chat history is trimmed Ollama-style unless
    # engine.truncate_chat is off, and then the request is refused too.
    s = make_server(["--model", MODEL], env={"STRATA_ENGINE__NUM_CTX": "64", "STRATA_ENGINE__TRUNCATE_CHAT": "false"})
    long = "word " * 200
    msg = ollama_error(httpx.post(s.url + "/api/generate", json={"model": MODEL, "prompt": long, "raw": True, "stream": False}, timeout=60), 400)
    assert "context" in msg.lower() or "too long" in msg.lower(), msg
    r = httpx.post(s.url + "/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": long}]}, timeout=60)
    openai_error(r, 400)
    assert r.json()["error"]["code"] == "context_length_exceeded"
    trimmed = make_server(["--model", MODEL], env={"STRATA_ENGINE__NUM_CTX": "256"})
    history = [{"role": "user", "content": long}, {"role": "assistant", "content": "ok"}, {"role": "user", "content": "Say hi."}]
    r = httpx.post(trimmed.url + "/api/chat", json={"model": MODEL, "messages": history, "stream": False, "options": {"num_predict": 4}}, timeout=60)
    assert r.status_code == 200 and r.json()["done"] is True, r.text


HOP_HEADER_LIMIT = 2048

HOP_LIMITS_CONFIG = f"""
[gateway]
max_header_bytes = {HOP_HEADER_LIMIT}

[main_service]
max_header_bytes = {HOP_HEADER_LIMIT}

[lambda_service]
max_header_bytes = {HOP_HEADER_LIMIT}

[bedrock_emulator]
generator = "instant"
max_header_bytes = {HOP_HEADER_LIMIT}

[bedrock_emulator.instant]
models = ["{MODEL}"]
"""


@pytest.fixture(scope="module")
def limited_chain(make_server_module, tmp_path_factory):
    d = tmp_path_factory.mktemp("hop-limits")
    (d / "strata.toml").write_text(HOP_LIMITS_CONFIG)
    return start_up(make_server_module, ["--config", str(d / "strata.toml"), "--run-dir", str(d / "run")])


def test_every_hop_of_the_chain_answers_431_in_its_own_shape(limited_chain):
    """`max_header_bytes` at the gateway, MainService, the Lambda service and the Bedrock
    emulator: headers over it get 431 in that hop's protocol (API Gateway's message, MainService's
    error object, Lambda's and Bedrock's x-amzn-ErrorType as boto3 reads it); headers under it
    pass, and the chain itself still answers."""
    h = hops(limited_chain)
    big = {"x-filler": "a" * (HOP_HEADER_LIMIT + 100)}
    small = {"x-filler": "a" * (HOP_HEADER_LIMIT // 2)}

    r = httpx.post(h["gateway"][0] + "/v1/generate", content=b"{}", headers=big)
    assert (r.status_code, r.json()) == (431, {"message": "Request Header Fields Too Large"})
    # Under the limit the request reaches the key check.
    assert httpx.post(h["gateway"][0] + "/v1/generate", content=b"{}", headers=small).status_code == 403

    r = httpx.post(h["main-service"][0] + "/v1/generate", json={"model": MODEL}, headers=big)
    assert r.status_code == 431 and r.json()["error"]["kind"] == "INVALID_REQUEST", r.text
    assert "headers too large" in r.json()["error"]["message"]
    assert httpx.get(h["main-service"][0] + "/healthz", headers=small).status_code == 200

    def add_filler(request, **_):
        request.headers["x-filler"] = big["x-filler"]

    creds = {"aws_access_key_id": "AKIDTEST", "aws_secret_access_key": "test-secret", "region_name": "us-east-1"}
    no_retry = botocore.config.Config(retries={"max_attempts": 1, "mode": "standard"})
    lam = boto3.client("lambda", endpoint_url=h["lambda-service"][0], config=no_retry, **creds)
    lam.meta.events.register("before-sign.lambda.Invoke", add_filler)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        lam.invoke(FunctionName="strata", Payload=b"{}")
    assert e.value.response["Error"]["Code"] == "RequestTooLargeException"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 431
    # A request within the limit gets past it to the caller check, which knows only MainService.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        boto3.client("lambda", endpoint_url=h["lambda-service"][0], config=no_retry, **creds).list_functions()
    assert e.value.response["Error"]["Code"] == "UnrecognizedClientException"

    bedrock = boto3.client("bedrock-runtime", endpoint_url=h["bedrock-emulator"][0], config=no_retry, **creds)
    bedrock.meta.events.register("before-sign.bedrock-runtime.Converse", add_filler)
    messages = [{"role": "user", "content": [{"text": "hi"}]}]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        bedrock.converse(modelId="strata.smollm2-135m-instruct-v1:0", messages=messages)
    assert e.value.response["Error"]["Code"] == "ValidationException"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 431
    assert "headers too large" in e.value.response["Error"]["Message"]

    # The chain's own requests stay well under every hop's limit.
    r = httpx.post(limited_chain.url + "/api/generate", json={"model": MODEL, "prompt": "hi", "stream": False}, timeout=60)
    assert r.status_code == 200 and r.json()["done"], r.text

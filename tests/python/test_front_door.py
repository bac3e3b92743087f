"""The LLM Server's front door over real sockets: API keys (Bearer and x-api-key, the official
clients, rotation), secure-by-default listeners, Host and Origin checks with their CORS
answers, and the connection limits that stop one client from holding the server (a body that
never arrives, a stream nobody reads, a flood of connections)."""

import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import time

import httpx
import ollama
import openai
import pytest

from conftest import MODEL, strata_bin
from test_chain import hops_in, start_up, wait_all_healthy

KEYS = ["front-key-alpha-1", "front-key-beta-2"]
CHAT = {"model": "instant", "messages": [{"role": "user", "content": "hi"}], "stream": False}


def key_id(key):
    return hashlib.sha256(key.encode()).hexdigest()[:8]


def wait_for(condition, what, timeout=20):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def raw(url, method, path, headers=None, body=None):
    """One request with exactly these headers (httpx would add its own Host)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    for k, v in (headers or {}).items():
        conn.putheader(k, v)
    data = body.encode() if isinstance(body, str) else body
    if data is not None:
        conn.putheader("Content-Length", str(len(data)))
    conn.endheaders(data)
    r = conn.getresponse()
    out = r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    conn.close()
    return out


@pytest.fixture(scope="module")
def keyed(make_server_module):
    return make_server_module(["--backend", "instant"], env={"STRATA_SERVER__API_KEYS": ",".join(KEYS)})


def test_requests_without_a_valid_key_get_401_in_each_protocols_shape(keyed):
    r = httpx.post(keyed.url + "/api/chat", json=CHAT)
    assert r.status_code == 401 and isinstance(r.json()["error"], str) and "API key" in r.json()["error"]
    assert r.headers["www-authenticate"].startswith("Bearer")
    r = httpx.post(keyed.url + "/v1/chat/completions", json=CHAT, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401
    assert r.json()["error"]["type"] == "authentication_error" and r.json()["error"]["code"] == "invalid_api_key"
    for path in ["/api/tags", "/api/version", "/v1/models", "/metrics"]:
        assert httpx.get(keyed.url + path).status_code == 401, path
    # Liveness answers anyone, and tells nothing.
    assert httpx.get(keyed.url + "/").text == "Ollama is running"
    assert httpx.head(keyed.url + "/").status_code == 200


def test_the_official_clients_authenticate_with_their_own_mechanisms(keyed):
    c = openai.OpenAI(base_url=keyed.url + "/v1", api_key=KEYS[0])
    answer = c.chat.completions.create(model="instant", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=keyed.url + "/v1", api_key="not-a-key").models.list()

    o = ollama.Client(host=keyed.url, headers={"Authorization": f"Bearer {KEYS[1]}"})
    assert o.chat(model="instant", messages=[{"role": "user", "content": "hi"}])["message"]["content"]
    with pytest.raises(ollama.ResponseError) as e:
        ollama.Client(host=keyed.url).chat(model="instant", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 401

    r = httpx.post(keyed.url + "/api/chat", json=CHAT, headers={"x-api-key": KEYS[1]})
    assert r.status_code == 200


def test_logs_name_keys_by_id_only(keyed):
    httpx.post(keyed.url + "/api/chat", json=CHAT, headers={"Authorization": f"Bearer {KEYS[0]}"})
    httpx.post(keyed.url + "/api/chat", json=CHAT, headers={"Authorization": "Bearer guessed-key-xyz"})
    logs = keyed.logs()
    for secret in [*KEYS, "guessed-key-xyz"]:
        assert secret not in logs
    lines = [json.loads(l) for l in logs.splitlines() if l.startswith("{")]
    access = [l for l in lines if l.get("message") == "request" and l.get("route") == "/api/chat"]
    assert {"status": 200, "api_key_id": key_id(KEYS[0])}.items() <= access[-2].items()
    assert access[-1]["status"] == 401 and access[-1]["api_key_id"] == "-"
    refused = [l for l in lines if l.get("message") == "request refused"]
    assert refused and refused[-1]["trace_id"] == access[-1]["trace_id"] and refused[-1]["level"] == "INFO"


def test_a_rotated_key_file_takes_effect_without_a_restart(make_server, tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("# clients\nfirst-file-key\n")
    s = make_server(["--backend", "instant"], env={"STRATA_SERVER__API_KEYS_FILE": str(keys), "STRATA_SERVER__API_KEYS_RELOAD_MS": "100"})
    ok = lambda key: httpx.get(s.url + "/api/tags", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert ok("first-file-key") and not ok("second-file-key")
    keys.write_text("second-file-key\n")
    wait_for(lambda: ok("second-file-key"), "the new key was never accepted")
    assert not ok("first-file-key")


def start_and_wait(args, env=None, timeout=30):
    """Runs `strata serve ARGS` until it exits or says it listens; the process and its output."""
    full = {**os.environ, **(env or {})}
    full.pop("STRATA_LISTEN_FD", None)
    p = subprocess.Popen([strata_bin(), "serve", *args], env=full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = []
    deadline = time.monotonic() + timeout
    for line in p.stdout:
        out.append(line)
        if "strata serve listening" in line or time.monotonic() > deadline:
            break
    return p, "".join(out)


def test_a_public_listener_without_keys_refuses_to_start():
    p, out = start_and_wait(["--backend", "instant", "--listen", "0.0.0.0:0"])
    assert p.wait(timeout=30) != 0
    assert "without authentication" in out and "STRATA_SERVER__API_KEYS" in out and "--allow-unauthenticated" in out
    for args, env in [(["--allow-unauthenticated"], {}), ([], {"STRATA_SERVER__API_KEYS": "k"})]:
        p, out = start_and_wait(["--backend", "instant", "--listen", "0.0.0.0:0", *args], env)
        try:
            assert p.poll() is None and "strata serve listening" in out, out
        finally:
            p.kill()
            p.wait()


@pytest.fixture(scope="module")
def open_server(make_server_module):
    return make_server_module(["--backend", "instant"], env={"STRATA_SERVER__ALLOWED_HOSTS": '["my.box"]'})


def test_a_loopback_listener_answers_loopback_host_names_only(open_server):
    port = open_server.port
    for host in ["evil.example", f"evil.example:{port}", f"localhost.evil.example:{port}", "10.0.0.1"]:
        status, _, body = raw(open_server.url, "GET", "/api/tags", {"Host": host})
        assert status == 403 and "not allowed" in json.loads(body)["error"], host
    status, _, body = raw(open_server.url, "GET", "/v1/models", {"Host": "evil.example"})
    assert status == 403 and json.loads(body)["error"]["type"] == "invalid_request_error"
    for host in [f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "app.localhost", "my.box"]:
        assert raw(open_server.url, "GET", "/api/tags", {"Host": host})[0] == 200, host


def test_cross_site_pages_are_refused_before_anything_runs(open_server):
    served = lambda: metric(open_server.url, 'strata_requests_total{route="/api/chat",status="200"}')
    before = served()
    # The "simple" request CORS lets through without a preflight.
    status, headers, body = raw(open_server.url, "POST", "/api/chat", {"Host": f"127.0.0.1:{open_server.port}", "Origin": "https://evil.example", "Content-Type": "text/plain"}, json.dumps(CHAT))
    assert status == 403 and "origin" in json.loads(body)["error"]
    assert "access-control-allow-origin" not in headers
    assert served() == before


def test_allowed_origins_get_their_cors_answers(open_server):
    origin = "http://localhost:3000"
    status, headers, _ = raw(open_server.url, "OPTIONS", "/v1/chat/completions", {"Host": f"127.0.0.1:{open_server.port}", "Origin": origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization, content-type"})
    assert status == 204
    assert headers["access-control-allow-origin"] == origin
    assert "POST" in headers["access-control-allow-methods"]
    assert headers["access-control-allow-headers"] == "authorization, content-type"
    status, headers, body = raw(open_server.url, "POST", "/api/chat", {"Host": f"127.0.0.1:{open_server.port}", "Origin": origin, "Content-Type": "application/json"}, json.dumps(CHAT))
    assert status == 200 and headers["access-control-allow-origin"] == origin
    assert "server-timing" in headers["access-control-expose-headers"]
    # A preflight from a page that is not allowed gets no CORS answer.
    status, headers, _ = raw(open_server.url, "OPTIONS", "/api/chat", {"Host": f"127.0.0.1:{open_server.port}", "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert status == 403 and "access-control-allow-origin" not in headers


def test_configured_origins_replace_the_defaults(make_server):
    s = make_server(["--backend", "instant"], env={"STRATA_SERVER__ALLOWED_ORIGINS": '["https://chat.example.com"]'})
    host = {"Host": f"127.0.0.1:{s.port}"}
    assert raw(s.url, "GET", "/api/tags", {**host, "Origin": "https://chat.example.com"})[0] == 200
    assert raw(s.url, "GET", "/api/tags", {**host, "Origin": "http://localhost:3000"})[0] == 403


def test_a_body_that_never_arrives_gets_408(make_server):
    s = make_server(["--backend", "instant"], env={"STRATA_SERVER__CONNECTIONS__BODY_READ_TIMEOUT_SECS": "1"})
    sock = socket.create_connection(("127.0.0.1", s.port))
    sock.sendall(b"POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"model\":")
    sock.settimeout(10)
    answer = b""
    while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        answer += chunk
    sock.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), answer
    assert "timed out" in json.loads(body)["error"]


def metric(url, name):
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_stream_nobody_reads_is_cut_and_its_generation_dropped(make_server):
    # 60,000 one-letter words, each its own ~100-byte chunk: about 6 MB of stream, more than the
    # kernel's largest loopback send buffer (tcp_wmem's 4 MB) and the client's tiny window hold,
    # so the server's writes block whatever the autotuning does. The stream is produced on
    # demand, so a stalled reader stops the generation too.
    env = {"STRATA_SERVER__INSTANT__REPLY": "w " * 60000, "STRATA_SERVER__CONNECTIONS__STREAM_WRITE_TIMEOUT_SECS": "1"}
    s = make_server(["--backend", "instant"], env=env)
    sock = socket.socket()
    # A small receive window, so that the server's writes block soon after the client stops reading.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", s.port))
    body = json.dumps({"model": "instant", "prompt": "x"}).encode()
    sock.sendall(b"POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    wait_for(lambda: metric(s.url, "strata_inflight_requests") == 1, "the generation never started", timeout=10)
    wait_for(lambda: "stream write timeout" in s.logs(), "the stalled stream was never cut", timeout=30)
    wait_for(lambda: metric(s.url, "strata_inflight_requests") == 0, "the generation outlived its connection", timeout=10)
    # Cut, not finished: no completion was ever counted.
    assert metric(s.url, 'strata_tokens_total{kind="completion"}') == 0
    sock.close()


def test_connections_beyond_max_connections_get_503_and_service_resumes(make_server):
    s = make_server(["--backend", "instant"], env={"STRATA_SERVER__CONNECTIONS__MAX_CONNECTIONS": "3"})
    held = [socket.create_connection(("127.0.0.1", s.port)) for _ in range(3)]
    # Every held connection has been accepted once one of them is answered.
    held[0].sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert held[0].recv(4096).startswith(b"HTTP/1.1 200")
    extra = socket.create_connection(("127.0.0.1", s.port))
    extra.settimeout(10)
    extra.sendall(b"GET /api/tags HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    answer = b""
    while chunk := extra.recv(4096):
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 503") and b"too many open connections" in answer
    held.pop().close()
    wait_for(lambda: httpx.get(s.url + "/api/tags").status_code == 200, "never served again")
    for h in held:
        h.close()


INSTANT_CHAIN = '[bedrock_emulator]\ngenerator = "instant"\n\n[bedrock_emulator.instant]\nmodels = ["smollm2:135m"]\n'


def test_the_chain_applies_the_gateways_usage_plan_per_client_key(make_server, tmp_path):
    """Each caller's key travels to the gateway: a key with a one-request quota runs out while
    another key of the same LLM Server keeps working."""
    config = tmp_path / "strata.toml"
    config.write_text(
        '[server]\napi_keys = ["client-one-key", "client-two-key"]\n\n'
        f'[gateway]\ndefault_usage_plan = "default"\n[gateway.usage_plans.tiny]\nquota_limit = 1\nquota_period = "day"\n[gateway.key_plans]\n"{key_id("client-one-key")}" = "tiny"\n\n'
        + INSTANT_CHAIN
    )
    s = start_up(make_server, ["--config", str(config), "--run-dir", str(tmp_path / "run")])
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": False}
    as_ = lambda key: httpx.post(s.url + "/api/chat", json=chat, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    assert httpx.post(s.url + "/api/chat", json=chat, timeout=60).status_code == 401
    assert as_("client-one-key").status_code == 200
    r = as_("client-one-key")
    assert r.status_code == 429, r.text
    assert as_("client-two-key").status_code == 200
    gateway_log = (tmp_path / "run" / "gateway.log").read_text()
    assert key_id("client-one-key") in gateway_log and key_id("client-two-key") in gateway_log
    assert "client-one-key" not in gateway_log


def test_up_on_a_public_address_is_keyed_by_default(tmp_path):
    config = tmp_path / "strata.toml"
    config.write_text(INSTANT_CHAIN)
    run = tmp_path / "run"
    log = open(tmp_path / "up.out", "w+")
    env = {k: v for k, v in os.environ.items() if k != "STRATA_LISTEN_FD"}
    proc = subprocess.Popen([strata_bin(), "up", "--listen", "0.0.0.0:0", "--config", str(config), "--run-dir", str(run)], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        output = (tmp_path / "up.out").read_text
        wait_all_healthy(output, proc)
        key_file = run / "api-key"
        assert f"clients need the API key in {key_file}" in output()
        assert (os.stat(run).st_mode & 0o777, os.stat(key_file).st_mode & 0o777) == (0o700, 0o600)
        assert all(os.stat(f).st_mode & 0o777 == 0o600 for f in run.iterdir()), [(f.name, oct(os.stat(f).st_mode)) for f in run.iterdir()]
        key = key_file.read_text().strip()
        port = hops_in(output())["llm-server"][0].rsplit(":", 1)[1]
        url = f"http://127.0.0.1:{port}"
        chat = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": False}
        assert httpx.post(url + "/api/chat", json=chat, timeout=60).status_code == 401
        r = httpx.post(url + "/api/chat", json=chat, headers={"Authorization": f"Bearer {key}"}, timeout=60)
        assert r.status_code == 200 and r.json()["message"]["content"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_a_huge_chat_being_prepared_leaves_the_server_answering(make_server):
    # Once, a 7 MB chat of 800 long turns held the server's one worker thread for minutes while
    # it was templated, tokenized and truncated. Preparation now runs on a blocking thread, and
    # a client that goes away stops it.
    s = make_server(["--model", MODEL], env={"STRATA_RUNTIME__WORKER_THREADS": "1"})
    turn = " ".join(f"word{i % 997} tale" for i in range(1000))
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": turn} for i in range(799)]
    body = json.dumps({"model": MODEL, "messages": messages, "stream": False}).encode()
    assert 9_000_000 < len(body) < 10_485_760, len(body)
    sock = socket.create_connection(("127.0.0.1", s.port))
    sock.sendall(b"POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    # The request holds its queue place from the start of its preparation.
    wait_for(lambda: metric(s.url, "strata_queue_depth") == 1, "the chat never reached the engine", timeout=30)
    # Answers keep coming while the preparation runs: on a frozen worker the first of them
    # would come only after it, when the queue place is gone.
    answered = 0
    while metric(s.url, "strata_queue_depth") == 1 and answered < 20:
        assert httpx.get(s.url + "/api/version", timeout=10).status_code == 200
        answered += 1
    assert answered == 20, f"only {answered} answers while the chat was prepared"
    assert metric(s.url, "strata_active_sequences") == 0
    # The client leaves; its preparation stops instead of running on to a generation nobody reads.
    sock.close()
    wait_for(lambda: metric(s.url, "strata_queue_depth") == 0, "the abandoned preparation kept its queue place", timeout=60)
    assert metric(s.url, 'strata_tokens_total{kind="prompt"}') == 0
    r = httpx.post(s.url + "/api/chat", json={"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "stream": False, "options": {"num_predict": 4}}, timeout=60)
    assert r.status_code == 200, r.text

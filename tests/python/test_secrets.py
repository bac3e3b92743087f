"""Secrets and slow clients, against real processes: API keys rotated without a restart (the
gateway's key file, the LLM Server's key file), no key, credential or prompt in any hop's logs
at info level, and connection timeouts on every listener (slowloris, idle keep-alive) that
never cut a long stream."""

import hashlib
import http.client
import json
import os
import re
import socket
import time

import httpx
import ollama
import openai
import pytest

from conftest import MODEL
from test_chain import children, hops, start_up

# The chain's connection timeouts in this module: short, so that the tests are quick.
HEADER_TIMEOUT = 0.8
IDLE_TIMEOUT = 2
SECTIONS = ["SERVER", "GATEWAY", "MAIN_SERVICE", "LAMBDA_SERVICE", "BEDROCK_EMULATOR"]
# A path each hop answers completely (any status).
HEALTH = {"llm-server": "/", "gateway": "/", "main-service": "/healthz", "lambda-service": "/2015-03-31/functions/", "bedrock-emulator": "/"}


def timeouts_env(header_ms, idle_secs):
    env = {}
    for s in SECTIONS:
        env[f"STRATA_{s}__CONNECTIONS__HEADER_READ_TIMEOUT_MS"] = str(header_ms)
        env[f"STRATA_{s}__CONNECTIONS__IDLE_TIMEOUT_SECS"] = str(idle_secs)
    return env


def wait_for(condition, what, timeout=20):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def environ(pid):
    with open(f"/proc/{pid}/environ", "rb") as f:
        return dict(item.split("=", 1) for item in f.read().decode(errors="replace").split("\0") if "=" in item)


def address(url):
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def runtime_apis(chain):
    """host:port of each function environment's Runtime API."""
    return [environ(pid)["AWS_LAMBDA_RUNTIME_API"] for pid in children(hops(chain)["lambda-service"][1])]


def listeners(chain):
    return {name: address(url) for name, (url, _) in hops(chain).items()}


def closed_within(sock, limit):
    """Seconds until the server closes `sock` (reads and discards anything it sends)."""
    started = time.monotonic()
    sock.settimeout(limit)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    except socket.timeout:
        pytest.fail(f"connection still open after {limit}s")
    return time.monotonic() - started


@pytest.fixture(scope="module")
def slow_chain(make_server_module, tmp_path_factory):
    """`strata up` with short connection timeouts and a Bedrock emulator that answers slowly
    (instant generator, one word every 1.1 s: longer than both timeouts), plus a key file the
    gateway watches."""
    tmp = tmp_path_factory.mktemp("slow")
    keys = tmp / "gateway-keys"
    keys.write_text("rotation-key-one\n")
    config = tmp / "strata.toml"
    config.write_text(
        f'[gateway]\napi_keys_file = "{keys}"\napi_keys_reload_ms = 100\n\n'
        '[bedrock_emulator]\ngenerator = "instant"\n\n'
        '[bedrock_emulator.instant]\nword_delay_ms = 1100\nmodels = ["smollm2:135m"]\n'
    )
    s = make_server_module(["--config", str(config), "--run-dir", str(tmp / "run")], env=timeouts_env(int(HEADER_TIMEOUT * 1000), IDLE_TIMEOUT), command="up")
    wait_for(lambda: "all hops healthy" in s.logs(), s.logs(), timeout=60)
    s.run_dir = tmp / "run"
    s.key_file = keys
    return s


def test_a_trickled_request_is_cut_at_the_header_timeout_on_every_listener(slow_chain):
    targets = dict(listeners(slow_chain))
    for i, api in enumerate(runtime_apis(slow_chain)):
        targets[f"runtime-api-{i}"] = address("http://" + api)
    assert len(targets) >= 6, targets
    for name, addr in targets.items():
        with socket.create_connection(addr) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
            started = time.monotonic()
            # One header byte every 0.2 s: the connection is never silent, yet never done.
            sock.settimeout(0.2)
            closed = False
            while time.monotonic() - started < 5 and not closed:
                try:
                    sock.sendall(b"X")
                    closed = sock.recv(4096) == b""
                except socket.timeout:
                    pass
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
            took = time.monotonic() - started
            assert closed, f"{name}: a trickling client still connected after {took:.1f}s"
            assert took < HEADER_TIMEOUT + 1.5, f"{name}: closed after {took:.1f}s"


def test_a_silent_connection_is_closed_at_the_header_timeout(slow_chain):
    for name, addr in listeners(slow_chain).items():
        with socket.create_connection(addr) as sock:
            took = closed_within(sock, 5)
            assert HEADER_TIMEOUT - 0.2 < took < HEADER_TIMEOUT + 1.5, f"{name}: {took:.2f}s"


def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(slow_chain):
    for name, (host, port) in listeners(slow_chain).items():
        conn = http.client.HTTPConnection(host, port, timeout=10)
        conn.request("GET", HEALTH[name])
        r = conn.getresponse()
        r.read()
        assert r.status < 500 and not r.will_close, name
        took = closed_within(conn.sock, 6)
        # The idle timeout, not the (shorter) header timeout, closed it.
        assert IDLE_TIMEOUT - 0.3 < took < IDLE_TIMEOUT + 2, f"{name}: {took:.2f}s"
        conn.close()


def test_a_stream_with_pauses_longer_than_both_timeouts_is_not_cut(slow_chain):
    c = ollama.Client(host=slow_chain.url)
    started = time.monotonic()
    parts = list(c.chat(model=MODEL, messages=[{"role": "user", "content": "Say hi."}], stream=True, options={"num_predict": 4}))
    took = time.monotonic() - started
    # Four words, 1.1 s apart: longer than the header and idle timeouts, on every hop.
    assert took > IDLE_TIMEOUT + HEADER_TIMEOUT, took
    assert parts[-1].done
    assert "".join(p.message.content for p in parts).split() == "Hello from strata. This".split()


def gateway_answers(gateway, key):
    """The status of a keyed request through the gateway (to MainService's health check)."""
    return httpx.get(gateway + "/healthz", headers={"x-api-key": key}, timeout=30).status_code


def key_id(key):
    return hashlib.sha256(key.encode()).hexdigest()[:8]


def replace(path, text):
    """Writes `path` the way operators and orchestrators do: a new file renamed over it."""
    tmp = path.with_suffix(".new")
    tmp.write_text(text)
    os.replace(tmp, path)


def test_gateway_keys_rotate_without_a_restart(slow_chain):
    gateway, gateway_pid = hops(slow_chain)["gateway"]
    log = slow_chain.run_dir / "gateway.log"
    assert gateway_answers(gateway, "rotation-key-one") == 200
    assert gateway_answers(gateway, "rotation-key-two") == 403

    replace(slow_chain.key_file, "# rotated\nrotation-key-two\n")
    wait_for(lambda: gateway_answers(gateway, "rotation-key-two") == 200, "the new key was never accepted")
    assert gateway_answers(gateway, "rotation-key-one") == 403
    assert hops(slow_chain)["gateway"][1] == gateway_pid, "the gateway was restarted"
    reloaded = [json.loads(line) for line in log.read_text().splitlines() if '"api keys reloaded"' in line]
    assert reloaded and key_id("rotation-key-one") in reloaded[-1]["removed"] and key_id("rotation-key-two") in reloaded[-1]["added"], reloaded

    # A botched rotation (an empty file, then none at all) keeps the keys in force.
    for botch in (lambda: replace(slow_chain.key_file, "\n# nothing here\n"), lambda: slow_chain.key_file.unlink()):
        warnings = log.read_text().count("keeping the previous keys")
        botch()
        wait_for(lambda: log.read_text().count("keeping the previous keys") > warnings, "no warning about the unusable key file")
        assert gateway_answers(gateway, "rotation-key-two") == 200
    replace(slow_chain.key_file, "rotation-key-one\n")
    wait_for(lambda: gateway_answers(gateway, "rotation-key-one") == 200, "the restored key was never accepted")


def test_bedrock_emulator_keys_rotate_without_a_restart(make_server, tmp_path):
    """The emulator's `api_keys_file` is watched the way the gateway's is (the same code):
    a new key is accepted and the old one refused by the same process, and a botched file
    keeps the keys in force."""
    key_file = tmp_path / "bedrock-keys"
    key_file.write_text("bedrock-key-one\n")
    emulator = make_server(["--generator", "instant"], command="bedrock-emulator", env={
        "STRATA_BEDROCK_EMULATOR__AUTH": "keys",
        "STRATA_BEDROCK_EMULATOR__API_KEYS_FILE": str(key_file),
        "STRATA_BEDROCK_EMULATOR__API_KEYS_RELOAD_MS": "100",
    })
    pid = emulator.proc.pid

    def answers(key):
        """The status of a Converse call with the key (Bedrock API keys are Bearer tokens)."""
        return httpx.post(emulator.url + "/model/strata.smollm2-135m-instruct-v1:0/converse", timeout=30,
                          headers={"authorization": f"Bearer {key}"}, json={"messages": [{"role": "user", "content": [{"text": "hi"}]}]}).status_code

    assert answers("bedrock-key-one") == 200
    assert answers("bedrock-key-two") == 403
    replace(key_file, "# rotated\nbedrock-key-two\n")
    wait_for(lambda: answers("bedrock-key-two") == 200, "the new key was never accepted")
    assert answers("bedrock-key-one") == 403
    assert emulator.proc.poll() is None and emulator.proc.pid == pid
    reloaded = [json.loads(line) for line in emulator.logs().splitlines() if '"api keys reloaded"' in line]
    assert reloaded and key_id("bedrock-key-one") in reloaded[-1]["removed"] and key_id("bedrock-key-two") in reloaded[-1]["added"], reloaded
    assert "bedrock-key-" not in emulator.logs()

    for botch in (lambda: replace(key_file, "\n# nothing here\n"), lambda: key_file.unlink()):
        warnings = emulator.logs().count("keeping the previous keys")
        botch()
        wait_for(lambda: emulator.logs().count("keeping the previous keys") > warnings, "no warning about the unusable key file")
        assert answers("bedrock-key-two") == 200


def test_the_llm_server_rereads_its_key_file_when_the_gateway_refuses_the_key(slow_chain, make_server, tmp_path):
    gateway = hops(slow_chain)["gateway"][0]
    replace(slow_chain.key_file, "client-key-old\n")
    wait_for(lambda: gateway_answers(gateway, "client-key-old") == 200, "the gateway never took the key")
    client_key = tmp_path / "api-key"
    client_key.write_text("client-key-old\n")
    s = make_server(["--backend", "chain"], env={"STRATA_SERVER__CHAIN__GATEWAY_URL": gateway, "STRATA_SERVER__CHAIN__API_KEY_FILE": str(client_key)})
    ask = {"model": MODEL, "stream": False, "prompt": "hi", "options": {"num_predict": 1}}
    assert httpx.post(s.url + "/api/generate", json=ask, timeout=60).status_code == 200

    # Rotation: the gateway now knows only the new key; the client's file gets it too.
    replace(slow_chain.key_file, "client-key-new\n")
    wait_for(lambda: gateway_answers(gateway, "client-key-old") == 403, "the old key still works")
    client_key.write_text("client-key-new\n")
    r = httpx.post(s.url + "/api/generate", json=ask, timeout=60)
    assert r.status_code == 200, r.text
    assert "client-key" not in s.logs()
    replace(slow_chain.key_file, "rotation-key-one\n")


# Distinctive values that must never reach a log.
PROMPT_MARK = "quokka-periwinkle-4417"
WRONG_KEY = "wrong-key-ab12cd34ef56"
AWS_SECRET = "aws-secret-Zq9XvTb7LmN2pR4sW6yU8kA0cE3gH5jK"
BEDROCK_KEY = "bedrock-api-key-Yt6Ui8Op0As2Df4Gh6Jk"


def test_no_key_credential_or_prompt_in_any_hops_log(make_server, tmp_path):
    config = tmp_path / "strata.toml"
    config.write_text(
        '[log]\nlevel = "info"\n\n'
        f'[bedrock_emulator]\nauth = "keys"\napi_keys = ["{BEDROCK_KEY}"]\n\n'
        # The function reaches the emulator with a Bedrock API key and AWS credentials of its own.
        f'[lambda_service.functions.strata.env]\nAWS_BEARER_TOKEN_BEDROCK = "{BEDROCK_KEY}"\nAWS_SECRET_ACCESS_KEY = "{AWS_SECRET}"\n'
    )
    run_dir = tmp_path / "run"
    s = start_up(make_server, ["--config", str(config), "--run-dir", str(run_dir)])
    h = hops(s)
    gateway_key = environ(h["gateway"][1])["STRATA_GATEWAY__API_KEYS"]
    assert len(gateway_key) >= 16
    function_env = environ(children(h["lambda-service"][1])[0])
    assert function_env["AWS_SECRET_ACCESS_KEY"] == AWS_SECRET and function_env["AWS_BEARER_TOKEN_BEDROCK"] == BEDROCK_KEY

    prompt = f"Repeat the code word {PROMPT_MARK} and then say hi."
    opts = {"num_predict": 8}
    c = ollama.Client(host=s.url)
    assert c.generate(model=MODEL, prompt=prompt, options=opts).done
    assert "".join(p.message.content for p in c.chat(model=MODEL, messages=[{"role": "user", "content": prompt}], stream=True, options=opts))
    o = openai.OpenAI(base_url=s.url + "/v1", api_key="unused")
    assert o.chat.completions.create(model=MODEL, messages=[{"role": "system", "content": prompt}, {"role": "user", "content": prompt}], max_tokens=8).choices
    assert list(o.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": prompt}], max_tokens=8, stream=True))
    # Failing ones: a prompt far longer than the model's context, a refused key at the gateway,
    # a model nobody serves.
    r = httpx.post(s.url + "/api/generate", json={"model": MODEL, "prompt": (prompt + " ") * 2000, "options": opts}, timeout=120)
    assert r.status_code >= 400, r.text
    body = {"model": MODEL, "messages": [{"role": "user", "content": prompt}]}
    assert httpx.post(h["gateway"][0] + "/v1/generate", json=body, headers={"x-api-key": WRONG_KEY}, timeout=30).status_code == 403
    assert httpx.post(s.url + "/api/chat", json={**body, "model": "nobody:1b"}, timeout=30).status_code >= 400

    # Every hop logged the requests (so the logs are really there to search)...
    logs = {p.name: p.read_text() for p in run_dir.glob("*.log")}
    assert set(logs) == {"llm-server.log", "gateway.log", "main-service.log", "lambda-service.log", "bedrock-emulator.log"}, set(logs)
    wait_for(lambda: all('"request"' in (run_dir / n).read_text() for n in logs), "a hop logged no request")
    logs = {n: (run_dir / n).read_text() for n in logs}
    logs["strata up"] = s.logs()
    # ...and none of them holds a secret or the prompt.
    for name, text in logs.items():
        for secret in (gateway_key, WRONG_KEY, AWS_SECRET, BEDROCK_KEY, PROMPT_MARK):
            assert secret not in text, f"{name} logs {secret!r}: {[line for line in text.splitlines() if secret in line][:2]}"
    assert re.search(r'"apiKeyId":"[0-9a-f]{8}"', logs["gateway.log"]), "the gateway logs key ids"

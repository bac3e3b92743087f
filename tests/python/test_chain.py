"""The whole chain under `strata up`: the official ollama and openai clients talk to the LLM
Server, which goes through the API Gateway, MainService, the Lambda service running the real
bootstrap, and the Bedrock emulator on the embedded model. Every hop is its own process."""

import json
import os
import re
import signal
import subprocess
import time

import httpx
import ollama
import openai
import pytest

from conftest import MODEL, strata_bin

STORY = "Write a long story about a lighthouse keeper and a storm."
HOPS = ["llm-server", "gateway", "main-service", "lambda", "bedrock"]


def hops(server):
    """name -> (url, pid) from the lines `strata up` prints (the latest line wins)."""
    return hops_in(server.logs())


HOP_NAMES = ("bedrock-emulator", "lambda-service", "main-service", "gateway", "llm-server")


def hops_in(output):
    # Matched by name anywhere in a line, not only from its start: once in CI the emulator's
    # line was missed, and what ran before it on that line was not kept to see.
    found = {}
    for m in re.finditer(rf"({'|'.join(HOP_NAMES)})\s+(http://\S+)\s+pid (\d+)$", output, re.M):
        found[m.group(1)] = (m.group(2), int(m.group(3)))
    return found


def children(pid):
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def start_up(make, args):
    """`strata up`, ready once it says every hop is healthy (the LLM Server answering is not
    enough: `up` announces it a moment later)."""
    s = make(args, command="up")
    wait_all_healthy(s.logs, s.proc)
    return s


def wait_all_healthy(output, proc):
    """Until `strata up` (`proc`, printing to `output()`) says every hop is healthy."""
    deadline = time.monotonic() + 60
    while "all hops healthy" not in output():
        assert time.monotonic() < deadline, output()
        assert proc.poll() is None, output()
        time.sleep(0.05)


def running(pid):
    """Alive and not a zombie (an exited child not yet reaped by its new parent)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture(scope="module")
def chain(make_server_module, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    s = start_up(make_server_module, ["--run-dir", str(run_dir)])
    s.run_dir = run_dir
    return s


def test_every_hop_is_its_own_process(chain):
    h = hops(chain)
    assert set(h) == {"bedrock-emulator", "lambda-service", "main-service", "gateway", "llm-server"}
    assert len({pid for _, pid in h.values()}) == 5
    assert h["llm-server"][0] == chain.url
    # lambda-service runs the function's environments as its own children.
    assert children(h["lambda-service"][1])
    # The MainService runs from its own, smaller executable; the others are `strata <hop>`.
    programs = {name: open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[0].decode().rsplit("/", 1)[-1] for name, (_, pid) in h.items()}
    assert programs == {"main-service": "strata-main-service", **{n: "strata" for n in h if n != "main-service"}}, programs


def test_ollama_client_lists_generates_and_chats(chain):
    c = ollama.Client(host=chain.url)
    assert MODEL in [m.model for m in c.list().models]
    r = c.generate(model=MODEL, prompt="Name a color.", options={"num_predict": 8, "temperature": 0})
    assert r.response.strip() and r.done and r.eval_count > 0
    # Measured at the LLM Server, since Bedrock reports only token counts.
    assert r.eval_duration > 0 and r.total_duration >= r.eval_duration
    r = c.chat(model=MODEL, messages=[{"role": "user", "content": "Say hi."}], options={"num_predict": 8})
    assert r.message.role == "assistant" and r.message.content.strip()


def test_ollama_stream_reaches_the_client_as_tokens_are_generated(chain):
    c = ollama.Client(host=chain.url)
    arrivals, text = [], ""
    for part in c.chat(model=MODEL, messages=[{"role": "user", "content": STORY}], stream=True, options={"num_predict": 64, "seed": 3}):
        arrivals.append(time.monotonic())
        text += part.message.content
        if part.done:
            assert part.eval_count > 0
            # Streamed: time to the first token and decode time, both measured at the LLM Server.
            assert part.prompt_eval_duration > 0 and part.eval_duration > 0
    assert len(arrivals) > 8 and text.strip()
    # The first chunk came well before the last: nothing buffered the whole answer.
    assert arrivals[-1] - arrivals[0] > 0.1


def test_openai_client_chat_streaming_and_not(chain):
    c = openai.OpenAI(base_url=chain.url + "/v1", api_key="unused")
    assert MODEL in [m.id for m in c.models.list()]
    r = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Say hi."}], max_tokens=8)
    assert r.choices[0].message.content.strip()
    chunks = list(c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": STORY}], max_tokens=32, stream=True))
    assert sum(1 for ch in chunks if ch.choices and ch.choices[0].delta.content) > 4
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_server_timing_has_one_entry_per_hop(chain):
    r = httpx.post(chain.url + "/api/chat", json={"model": MODEL, "stream": False, "messages": [{"role": "user", "content": "hi"}], "options": {"num_predict": 4}}, timeout=60)
    assert r.status_code == 200
    names = [e.split(";")[0].strip() for e in r.headers["server-timing"].split(",")]
    assert names == HOPS, r.headers["server-timing"]
    # On a stream the timing rides on the last line.
    with httpx.stream("POST", chain.url + "/api/chat", json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "options": {"num_predict": 4}}, timeout=60) as s:
        last = json.loads([line for line in s.iter_lines() if line][-1])
    assert [e.split(";")[0].strip() for e in last["server_timing"].split(",")] == HOPS


def test_the_gateway_refuses_missing_and_wrong_keys(chain):
    gateway = hops(chain)["gateway"][0]
    body = {"model": MODEL, "messages": [{"role": 2, "content": "hi"}]}
    for headers in ({}, {"x-api-key": "wrong"}):
        r = httpx.post(gateway + "/v1/generate", json=body, headers=headers, timeout=30)
        assert r.status_code == 403 and r.json() == {"message": "Forbidden"}
        assert r.headers["x-amzn-RequestId"]


def test_a_killed_function_ends_the_stream_with_an_error_and_comes_back(chain):
    c = ollama.Client(host=chain.url)
    lambda_pid = hops(chain)["lambda-service"][1]
    stream = c.chat(model=MODEL, messages=[{"role": "user", "content": STORY}], stream=True, options={"num_predict": 400, "seed": 9})
    started, killed = None, []
    with pytest.raises(ollama.ResponseError):
        for _ in stream:
            if started is None:
                started = time.monotonic()
                killed = children(lambda_pid)
                for pid in killed:
                    subprocess.run(["kill", "-9", str(pid)])
    assert time.monotonic() - started < 10
    # An idle environment killed a moment ago may not be noticed yet, and an invocation handed
    # to it would fail as it would on AWS; "comes back" means once the service has reaped
    # them (it stops handing work to an environment as it reaps it).
    deadline = time.monotonic() + 10
    while any(os.path.exists(f"/proc/{pid}") for pid in killed):
        assert time.monotonic() < deadline, killed
        time.sleep(0.01)
    r = c.chat(model=MODEL, messages=[{"role": "user", "content": "Say hi."}], options={"num_predict": 4})
    assert r.message.content.strip()


def test_up_stops_every_hop_on_sigterm(make_server, tmp_path):
    s = start_up(make_server, ["--run-dir", str(tmp_path)])
    pids = [pid for _, pid in hops(s).values()]
    functions = children(hops(s)["lambda-service"][1])
    assert s.stop(signal.SIGTERM) == 0
    for pid in pids + functions:
        assert not running(pid), f"pid {pid} outlived strata up"
    assert (tmp_path / "gateway.log").read_text().strip()
    # Nothing panics on the way down: the function environments, waiting on `/next`, are
    # killed, not answered with something their runtime cannot take.
    for log in tmp_path.glob("*.log"):
        assert "panicked" not in log.read_text(), f"{log.name}: {log.read_text()[-2000:]}"


def test_up_on_port_zero_serves_on_a_free_port_it_prints(tmp_path):
    """`--listen 127.0.0.1:0` asks for any free port, as every other hop gets: `up` picks one,
    checks the LLM Server's health there and prints it (it used to wait on port 0 forever)."""
    log = open(tmp_path / "up.out", "w+")
    proc = subprocess.Popen([strata_bin(), "up", "--listen", "127.0.0.1:0", "--run-dir", str(tmp_path / "run")], stdout=log, stderr=subprocess.STDOUT)
    try:
        output = (tmp_path / "up.out").read_text
        wait_all_healthy(output, proc)
        url, _ = hops_in(output())["llm-server"]
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url) and not url.endswith(":0"), url
        r = ollama.Client(host=url).generate(model=MODEL, prompt="Say hi.", options={"num_predict": 4})
        assert r.done and r.response.strip()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_usage_plans_and_integration_timeouts_reach_the_ollama_client(make_server, tmp_path):
    config = tmp_path / "strata.toml"
    config.write_text(
        "[gateway]\nintegration_timeout_ms = 300\n\n"
        "[gateway.usage_plans.default]\nrate_limit = 1000.0\nburst_limit = 1000\nquota_limit = 2\nquota_period = \"month\"\nquota_window_secs = 3600\n"
    )
    s = start_up(make_server, ["--config", str(config), "--run-dir", str(tmp_path / "run")])
    c = ollama.Client(host=s.url)
    # A whole answer that takes longer than the gateway waits: 504 at the client.
    with pytest.raises(ollama.ResponseError) as e:
        c.generate(model=MODEL, prompt=STORY, options={"num_predict": 300, "seed": 1})
    assert e.value.status_code == 504
    # The quota of two requests is now spent with the next one; then 429 with Retry-After.
    list(c.generate(model=MODEL, prompt="hi", stream=True, options={"num_predict": 2}))
    r = httpx.post(s.url + "/api/generate", json={"model": MODEL, "prompt": "hi", "options": {"num_predict": 2}}, timeout=30)
    assert r.status_code == 429, r.text
    assert int(r.headers["retry-after"]) > 0
    with pytest.raises(ollama.ResponseError) as e:
        c.generate(model=MODEL, prompt="hi")
    assert e.value.status_code == 429


def test_summarize_a_document_many_times_the_context_is_a_map_reduce(chain):
    main, main_pid = hops(chain)["main-service"]
    # MainService answers only its gateway, which `up` gave a secret: the test acts as the gateway.
    with open(f"/proc/{main_pid}/environ", "rb") as f:
        env = dict(item.split("=", 1) for item in f.read().decode(errors="replace").split("\0") if "=" in item)
    as_gateway = {"x-strata-gateway-secret": env["STRATA_MAIN_SERVICE__GATEWAY_SECRET"]}
    paragraph = ("The lighthouse on the northern cape was built in 1871 from granite quarried on the island. "
                 "Its keepers logged every ship, every storm and every repair in a leather book. ")
    # About 3.5 context windows of 2048 tokens.
    document = "\n\n".join(f"Chapter {i}. " + paragraph * 4 for i in range(40))
    with httpx.stream("POST", main + "/v1/summarize", json={"model": MODEL, "document": document, "stream": True,
                                                          "options": {"numPredict": 48, "temperature": 0}}, headers=as_gateway, timeout=300) as r:
        assert r.status_code == 200, r.read()
        lines = [json.loads(line) for line in r.iter_lines() if line]
    text = "".join(c["kind"]["delta"]["content"] for c in lines if "delta" in c["kind"])
    assert text.strip() and "done" in lines[-1]["kind"]
    metrics = httpx.get(main + "/metrics", timeout=10).text
    counts = dict(re.findall(r'main_service_summarize_invocations_total\{phase="(\w+)"\} (\d+)', metrics))
    assert int(counts.get("map", 0)) >= 3, metrics
    assert int(counts.get("reduce", 0)) >= 1, metrics


def test_up_restarts_a_hop_that_dies(chain):
    _, old_pid = hops(chain)["main-service"]
    subprocess.run(["kill", "-9", str(old_pid)])
    deadline = time.monotonic() + 60
    while hops(chain)["main-service"][1] == old_pid:
        assert time.monotonic() < deadline, chain.logs()
        time.sleep(0.05)
    r = ollama.Client(host=chain.url).chat(model=MODEL, messages=[{"role": "user", "content": "Say hi."}], options={"num_predict": 4})
    assert r.message.content.strip()


def test_the_callers_trace_reaches_every_hops_logs(chain):
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    r = httpx.post(chain.url + "/api/chat", headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
                   json={"model": MODEL, "stream": False, "messages": [{"role": "user", "content": "hi"}], "options": {"num_predict": 2}}, timeout=60)
    assert r.status_code == 200
    assert trace_id in r.headers["traceparent"]
    logs = ["llm-server", "gateway", "main-service", "lambda-service", "bedrock-emulator"]
    deadline = time.monotonic() + 20
    missing = logs
    while missing and time.monotonic() < deadline:
        missing = [h for h in logs if trace_id not in (chain.run_dir / f"{h}.log").read_text()]
        time.sleep(0.05)
    assert not missing, f"no log line with the trace in {missing}"

"""Faults in every hop of `strata up`: killed (-9) mid-stream, stopped (SIGSTOP) past its
timeout, slowed, throttling. The client always learns how its request ended: a protocol error
within the configured timeouts, never a hang and never a stream that ends as if complete; work
below a broken hop stops; `up` restarts a killed hop; the next request succeeds; retries happen
only before an answer's first byte. docs/reliability.md ("Faults") has the table of cases.

The chain runs on the emulator's instant generator (a fixed reply, one word every
WORD_DELAY_MS), with short timeouts nested innermost first, so that each fault is reported by
the hop nearest to it."""

import json
import os
import re
import signal
import threading
import time
import uuid

import httpx
import ollama
import openai
import pytest

from conftest import MODEL
from test_chain import children, hops, start_up

WORD_DELAY_MS = 10
# FULL numbered words, five seconds of streaming: longer than every timeout below.
FULL = 500
REPLY = " ".join(f"w{i}" for i in range(FULL))
LONG = 200  # num_predict (counted in words) of a stream a fault interrupts: two seconds

# Innermost first: each hop gives up before the one that called it does.
FUNCTION_TIMEOUT_MS = 2500  # lambda_service.functions.strata.timeout_ms
INVOCATION_TIMEOUT_MS = 3500  # main_service.lambda.invocation_timeout_ms
INTEGRATION_TIMEOUT_MS = 3000  # gateway.integration_timeout_ms (until response headers)
STREAM_IDLE_SECS = 4  # gateway.stream_idle_timeout_secs
RESPONSE_TIMEOUT_MS = 4000  # server.chain.response_timeout_ms (until the gateway's headers)
CHUNK_TIMEOUT_SECS = 6  # server.chain.chunk_timeout_secs (between streamed chunks)
# server.request_timeout_secs (a whole generation): far above the others, so that a stream
# ended within CHUNK_TIMEOUT_SECS was ended by the chunk timeout.
REQUEST_TIMEOUT_SECS = 30
# Scheduling slack on a busy two-core machine.
SLACK = 3.0

CONFIG = f"""
[server]
request_timeout_secs = {REQUEST_TIMEOUT_SECS}

[server.chain]
response_timeout_ms = {RESPONSE_TIMEOUT_MS}
chunk_timeout_secs = {CHUNK_TIMEOUT_SECS}

[gateway]
integration_timeout_ms = {INTEGRATION_TIMEOUT_MS}
stream_idle_timeout_secs = {STREAM_IDLE_SECS}

[main_service.lambda]
invocation_timeout_ms = {INVOCATION_TIMEOUT_MS}
{{extra_lambda}}

[lambda_service.functions.strata]
timeout_ms = {FUNCTION_TIMEOUT_MS}
{{extra_function}}

[bedrock_emulator]
generator = "instant"
max_concurrent_requests = {{emulator_slots}}

[bedrock_emulator.instant]
reply = "{REPLY}"
word_delay_ms = {WORD_DELAY_MS}
models = ["{MODEL}"]
"""


def start_chain(make, tmp_path_factory, emulator_slots=2, extra_function="", extra_lambda="", extra=""):
    d = tmp_path_factory.mktemp("faults")
    config = d / "strata.toml"
    config.write_text(CONFIG.format(emulator_slots=emulator_slots, extra_function=extra_function, extra_lambda=extra_lambda) + extra)
    s = start_up(make, ["--config", str(config), "--run-dir", str(d / "run")])
    s.run_dir = d / "run"
    return s


@pytest.fixture(scope="module")
def chain(make_server_module, tmp_path_factory):
    return start_chain(make_server_module, tmp_path_factory)


@pytest.fixture(scope="module")
def narrow(make_server_module, tmp_path_factory):
    """One execution environment and no queue: a second invocation is throttled by Lambda."""
    return start_chain(make_server_module, tmp_path_factory, emulator_slots=16, extra_function="concurrency = 1\nqueue_depth = 0")


@pytest.fixture(scope="module")
def patient(make_server_module, tmp_path_factory):
    """As `narrow`, with a MainService that retries a throttled invocation often enough (but
    within the gateway's integration timeout) for the one environment to come free."""
    return start_chain(make_server_module, tmp_path_factory, emulator_slots=16, extra_function="concurrency = 1\nqueue_depth = 0",
                       extra_lambda="max_attempts = 20\ninitial_backoff_ms = 150\nmax_backoff_ms = 150")


def new_trace():
    return uuid.uuid4().hex


def traced(trace_id):
    return {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}


def client(server, trace_id=None):
    return ollama.Client(host=server.url, headers=traced(trace_id or new_trace()))


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
    return value


def access_lines(server, hop, trace_id):
    """The hop's access-log lines ("message":"request") for one trace."""
    out = []
    for line in (server.run_dir / f"{hop}.log").read_text().splitlines():
        try:
            v = json.loads(line)
        except ValueError:
            continue
        if v.get("message") == "request" and v.get("trace_id") == trace_id:
            out.append(v)
    return out


def emulator_stopped_generating(server, trace_id):
    """The emulator's ConverseStream for this trace ended because its caller went away, not
    because the answer was complete: no orphaned generation."""
    lines = wait_for(lambda: [l for l in access_lines(server, "bedrock-emulator", trace_id) if "converse-stream" in l.get("route", "")], 15, f"the emulator's log line for {trace_id}")
    assert [l["outcome"] for l in lines] == ["client_closed"], lines


def restarted(server, hop, old_pid):
    new = wait_for(lambda: hops(server)[hop][1] != old_pid and hops(server)[hop][1], 60, f"{hop} to be restarted")
    assert os.path.exists(f"/proc/{new}")
    return new


def answers(server):
    """The next request succeeds."""
    r = client(server).chat(model=MODEL, messages=[{"role": "user", "content": "hi"}], options={"num_predict": 3})
    assert r.message.content.split() == ["w0", "w1", "w2"], r.message.content


def stream_with_fault(server, fault, num_predict=LONG, trace_id=None):
    """Streams an answer with the ollama client and runs `fault()` once the first token is
    in. Returns (words received, the error that ended the stream or None, seconds from the
    fault to the end, whether a `done` line came)."""
    parts, error, faulted, done = [], None, None, False
    try:
        for part in client(server, trace_id).chat(model=MODEL, messages=[{"role": "user", "content": "story"}], stream=True, options={"num_predict": num_predict}):
            parts.append(part.message.content)
            done = done or part.done
            if faulted is None:
                faulted = time.monotonic()
                fault()
    except (ollama.ResponseError, httpx.HTTPError) as e:
        error = e
    assert faulted is not None, "no token arrived before the fault"
    return "".join(parts).split(), error, time.monotonic() - faulted, done


def kill(pid):
    os.kill(pid, signal.SIGKILL)


def metric(server, name, **labels):
    text = httpx.get(hops(server)["main-service"][0] + "/metrics", timeout=10).text
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.match(r"^(\w+)\{(.*)\} (\S+)$", line)
        if m and m.group(1) == name and ",".join(sorted(m.group(2).split(","))) == want:
            return float(m.group(3))
    return 0.0


# --- kill -9 mid-stream -----------------------------------------------------------------------


# hop -> what the error line says (the hop above it noticed)
KILLED_MID_STREAM = {
    "gateway": "the chain's stream broke",
    "main-service": "the chain's stream broke",
    "lambda-service": "the Lambda stream broke",
    "bedrock-emulator": "the Bedrock stream broke",
}


@pytest.mark.parametrize("hop", list(KILLED_MID_STREAM))
def test_a_hop_killed_mid_stream_ends_the_stream_with_an_error_and_is_restarted(chain, hop):
    _, pid = hops(chain)[hop]
    trace = new_trace()
    words, error, took, done = stream_with_fault(chain, lambda: kill(pid), trace_id=trace)
    # An error line from the LLM Server, never a `done` line after a cut answer.
    assert isinstance(error, ollama.ResponseError) and KILLED_MID_STREAM[hop] in error.error, error
    assert not done and len(words) < LONG
    assert took < SLACK
    restarted(chain, hop, pid)
    if hop != "bedrock-emulator":
        emulator_stopped_generating(chain, trace)
    answers(chain)


def test_the_llm_server_killed_mid_stream_cuts_the_connection_and_comes_back(chain):
    _, pid = hops(chain)["llm-server"]
    trace = new_trace()
    words, error, took, done = stream_with_fault(chain, lambda: kill(pid), trace_id=trace)
    # The client's own peer is gone: the HTTP stream is visibly cut, not ended.
    assert isinstance(error, httpx.RemoteProtocolError), error
    assert not done and took < SLACK
    restarted(chain, "llm-server", pid)
    emulator_stopped_generating(chain, trace)
    answers(chain)


def test_a_killed_function_fails_its_stream_once_and_is_not_retried(chain):
    """A stream that already sent tokens is never sent again: one ConverseStream at the
    emulator, no retry at MainService."""
    functions = children(hops(chain)["lambda-service"][1])
    retries = metric(chain, "main_service_lambda_retries_total", operation="invoke_with_response_stream")
    trace = new_trace()
    c = openai.OpenAI(base_url=chain.url + "/v1", api_key="unused", default_headers=traced(trace), max_retries=0)
    got, started = [], None
    with pytest.raises(openai.APIError) as e:
        for chunk in c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "story"}], max_tokens=LONG, stream=True):
            got.append(chunk)
            if started is None:
                started = time.monotonic()
                for pid in functions:
                    kill(pid)
    assert "Runtime.ExitError" in str(e.value.message) or "exited" in str(e.value.message), e.value.message
    assert time.monotonic() - started < SLACK
    assert all(ch.choices[0].finish_reason is None for ch in got if ch.choices)
    emulator_stopped_generating(chain, trace)
    assert metric(chain, "main_service_lambda_retries_total", operation="invoke_with_response_stream") == retries
    # The service replaces the environments; the next invocation runs in a new one.
    wait_for(lambda: not any(os.path.exists(f"/proc/{p}") for p in functions), 10, "the killed environments to be reaped")
    answers(chain)


# --- SIGSTOP past the timeout -----------------------------------------------------------------

# hop -> (the timeout that ends the stream, in seconds; what the error says)
STOPPED_MID_STREAM = {
    "bedrock-emulator": (FUNCTION_TIMEOUT_MS / 1000, "timed out"),
    "function": (FUNCTION_TIMEOUT_MS / 1000, "timed out"),
    "lambda-service": (INVOCATION_TIMEOUT_MS / 1000, "did not finish in time"),
    "main-service": (STREAM_IDLE_SECS, "stream broke"),
    "gateway": (CHUNK_TIMEOUT_SECS, "timed out waiting for the next chunk"),
}


def pids_of(server, hop):
    if hop == "function":
        return children(hops(server)["lambda-service"][1])
    return [hops(server)[hop][1]]


def signal_all(pids, sig):
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


@pytest.mark.parametrize("hop", list(STOPPED_MID_STREAM))
def test_a_hop_stopped_mid_stream_past_its_timeout_ends_the_stream_with_a_timeout_error(chain, hop):
    timeout, says = STOPPED_MID_STREAM[hop]
    pids = pids_of(chain, hop)
    trace = new_trace()
    try:
        # The whole reply: a generation that would outlast every timeout, so that the
        # emulator is still at it when the chain gives up.
        words, error, took, done = stream_with_fault(chain, lambda: signal_all(pids, signal.SIGSTOP), num_predict=FULL, trace_id=trace)
    finally:
        signal_all(pids, signal.SIGCONT)
    assert isinstance(error, ollama.ResponseError) and says in error.error, error
    assert not done and len(words) < FULL
    assert took < timeout + SLACK, took
    emulator_stopped_generating(chain, trace)
    answers(chain)


def test_a_gateway_stopped_mid_stream_ends_an_openai_stream_with_an_error_event(chain):
    """The same chunk timeout over OpenAI: an SSE error event, no finish_reason, no [DONE];
    after SIGCONT the gateway serves the next request."""
    pid = hops(chain)["gateway"][1]
    c = openai.OpenAI(base_url=chain.url + "/v1", api_key="unused", max_retries=0, timeout=REQUEST_TIMEOUT_SECS * 2)
    got, stopped = [], None
    try:
        with pytest.raises(openai.APIError) as e:
            for chunk in c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "story"}], max_tokens=FULL, stream=True):
                got.append(chunk)
                if stopped is None:
                    stopped = time.monotonic()
                    os.kill(pid, signal.SIGSTOP)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert "timed out waiting for the next chunk" in str(e.value.message), e.value.message
    assert time.monotonic() - stopped < CHUNK_TIMEOUT_SECS + SLACK
    assert got and all(ch.choices[0].finish_reason is None for ch in got if ch.choices)
    answers(chain)


@pytest.mark.parametrize("hop,timeout", [("gateway", RESPONSE_TIMEOUT_MS / 1000), ("main-service", INTEGRATION_TIMEOUT_MS / 1000)])
def test_a_hop_stopped_before_answering_is_a_504_within_the_timeout(chain, hop, timeout):
    pid = hops(chain)[hop][1]
    started = time.monotonic()
    try:
        os.kill(pid, signal.SIGSTOP)
        with pytest.raises(ollama.ResponseError) as e:
            client(chain).generate(model=MODEL, prompt="hi", options={"num_predict": 3})
    finally:
        os.kill(pid, signal.SIGCONT)
    assert e.value.status_code == 504, e.value
    assert time.monotonic() - started < timeout + SLACK
    answers(chain)


# --- slow -------------------------------------------------------------------------------------


@pytest.mark.parametrize("hop", ["llm-server", "gateway", "main-service", "lambda-service", "function", "bedrock-emulator"])
def test_a_hop_paused_for_less_than_its_timeout_delays_the_stream_but_loses_nothing(chain, hop):
    pids = pids_of(chain, hop)

    def pause():
        signal_all(pids, signal.SIGSTOP)
        try:
            time.sleep(1.0)  # the fault itself: a one-second stall, below every timeout
        finally:
            signal_all(pids, signal.SIGCONT)

    words, error, _, done = stream_with_fault(chain, pause, num_predict=50)
    assert error is None and done
    assert words == REPLY.split()[:50]


def test_a_model_slower_than_the_function_timeout_ends_with_a_timeout_error_and_stops(chain):
    """A generation that outlasts the function's timeout: the function is stopped, the client
    gets a timeout error line, and the emulator stops generating."""
    trace = new_trace()
    started = time.monotonic()
    # Only the generation itself is slow here: FULL words at WORD_DELAY_MS each.
    words, error, _, done = stream_with_fault(chain, lambda: None, num_predict=FULL, trace_id=trace)
    assert isinstance(error, ollama.ResponseError) and "timed out" in error.error, error
    assert not done and 0 < len(words) < FULL
    assert time.monotonic() - started < FUNCTION_TIMEOUT_MS / 1000 + SLACK
    emulator_stopped_generating(chain, trace)


# --- throttling -------------------------------------------------------------------------------


def open_streams(server, n):
    """n streams holding their place down the chain (each has sent its first line)."""
    opened = []
    for _ in range(n):
        trace = new_trace()
        cm = httpx.stream("POST", server.url + "/api/chat", headers=traced(trace), timeout=30,
                          json={"model": MODEL, "messages": [{"role": "user", "content": "story"}], "options": {"num_predict": LONG}})
        r = cm.__enter__()
        assert r.status_code == 200
        # The line iterator is kept: dropping it would close the response.
        lines = r.iter_lines()
        next(lines)
        opened.append((cm, lines, trace))
    return opened


def close_streams(server, opened):
    for cm, _, _ in opened:
        cm.__exit__(None, None, None)
    for _, _, trace in opened:
        emulator_stopped_generating(server, trace)


def test_the_emulator_throttling_is_retried_by_the_function_then_a_429(chain):
    """Two streams fill the emulator's two slots; a third request is throttled
    (ThrottlingException), retried by the function's Bedrock client before any byte of the
    answer, and then refused with 429 and Retry-After."""
    opened = open_streams(chain, 2)
    trace = new_trace()
    try:
        r = httpx.post(chain.url + "/api/chat", headers=traced(trace), timeout=30, json={"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "hi"}], "options": {"num_predict": 3}})
    finally:
        close_streams(chain, opened)
    assert r.status_code == 429, r.text
    assert "error" in r.json() and int(r.headers["retry-after"]) > 0
    throttled = [l for l in access_lines(chain, "bedrock-emulator", trace) if l["status"] == 429]
    assert len(throttled) == 4, throttled  # the function's Bedrock client: max_attempts = 4
    answers(chain)


def test_lambda_throttling_is_retried_by_main_service_then_a_429(narrow):
    """The one environment is busy and there is no queue: Lambda answers
    TooManyRequestsException, MainService retries it before the first byte, then the client
    gets 429 with Retry-After."""
    operation = "invoke_with_response_stream"
    before = metric(narrow, "main_service_lambda_invocations_total", operation=operation, outcome="throttled")
    retries = metric(narrow, "main_service_lambda_retries_total", operation=operation)
    opened = open_streams(narrow, 1)
    try:
        with pytest.raises(ollama.ResponseError) as e:
            for _ in client(narrow).chat(model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True, options={"num_predict": 3}):
                pass
    finally:
        close_streams(narrow, opened)
    assert e.value.status_code == 429, e.value
    assert metric(narrow, "main_service_lambda_invocations_total", operation=operation, outcome="throttled") - before == 4
    assert metric(narrow, "main_service_lambda_retries_total", operation=operation) - retries == 3
    answers(narrow)


def test_a_throttled_invocation_is_retried_by_main_service_and_the_retry_succeeds(patient):
    """The one environment is busy: MainService's invocation is throttled before any byte of
    the answer, so it retries; once the environment is free the retry gets the whole answer.
    Every throttled attempt was retried, and none after the answer started."""
    operation = "invoke_with_response_stream"
    throttled = metric(patient, "main_service_lambda_invocations_total", operation=operation, outcome="throttled")
    retries = metric(patient, "main_service_lambda_retries_total", operation=operation)
    opened = open_streams(patient, 1)
    result = {}

    def ask():
        try:
            parts = list(client(patient).chat(model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True, options={"num_predict": 3}))
            result["words"], result["done"] = "".join(p.message.content for p in parts).split(), parts[-1].done
        except Exception as e:  # reported below, in the test's thread
            result["error"] = e

    asking = threading.Thread(target=ask)
    asking.start()
    try:
        wait_for(lambda: metric(patient, "main_service_lambda_invocations_total", operation=operation, outcome="throttled") > throttled, 10, "a throttled invocation")
    finally:
        close_streams(patient, opened)
    asking.join(timeout=30)
    assert not asking.is_alive()
    assert "error" not in result, result
    assert result["words"] == ["w0", "w1", "w2"] and result["done"], result
    more_throttled = metric(patient, "main_service_lambda_invocations_total", operation=operation, outcome="throttled") - throttled
    more_retries = metric(patient, "main_service_lambda_retries_total", operation=operation) - retries
    assert more_throttled >= 1 and more_retries == more_throttled, (more_throttled, more_retries)


# --- 5xx from Bedrock (the emulator's fault injection) ---------------------------------------

# The emulator's error -> (its status, what every client gets, ConverseStream calls per
# request: the function's Bedrock client retries unavailability 4 times, not an internal error).
BEDROCK_5XX = {
    # Bedrock out of capacity is the contract's Overloaded: 429, back off and try again.
    "ServiceUnavailableException": (503, 429, 4),
    # The Bedrock SDK's standard retry treats a 500 as transient too.
    "InternalServerException": (500, 502, 4),
}


def faulty_chain(make, tmp_path_factory, error, every):
    return start_chain(make, tmp_path_factory, emulator_slots=16, extra=f'\n[bedrock_emulator.faults]\nerror = "{error}"\nevery = {every}\n')


@pytest.mark.parametrize("error", list(BEDROCK_5XX))
def test_bedrock_server_errors_reach_every_client_in_its_protocol(make_server, tmp_path_factory, error):
    """Bedrock answers every request with a 5xx: the function's client retries what is worth
    retrying, MainService does not invoke the function again (a function error is not Lambda's
    throttling or 5xx), and each client gets an error status in its own shape, before any byte
    of an answer."""
    bedrock_status, status, attempts = BEDROCK_5XX[error]
    server = faulty_chain(make_server, tmp_path_factory, error, every=1)
    retries = metric(server, "main_service_lambda_retries_total", operation="invoke_with_response_stream")
    ask = [{"role": "user", "content": "hi"}]

    trace = new_trace()
    with pytest.raises(ollama.ResponseError) as e:
        for _ in client(server, trace).chat(model=MODEL, messages=ask, stream=True, options={"num_predict": 3}):
            pass
    assert e.value.status_code == status and "injected fault" in e.value.error, e.value
    lines = wait_for(lambda: len(access_lines(server, "bedrock-emulator", trace)) >= attempts and access_lines(server, "bedrock-emulator", trace), 15, "every attempt's log line")
    assert [l["status"] for l in lines] == [bedrock_status] * attempts, lines

    r = httpx.post(server.url + "/api/generate", json={"model": MODEL, "prompt": "hi", "stream": False}, timeout=30)
    assert r.status_code == status and "injected fault" in r.json()["error"], r.text

    c = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    for stream in (False, True):
        with pytest.raises(openai.APIStatusError) as e:
            answer = c.chat.completions.create(model=MODEL, messages=ask, max_tokens=3, stream=stream)
            if stream:
                list(answer)
        assert e.value.status_code == status and "injected fault" in e.value.message, e.value
        assert e.value.body["type"] and e.value.body["message"], e.value.body
    assert metric(server, "main_service_lambda_retries_total", operation="invoke_with_response_stream") == retries


def test_a_bedrock_5xx_on_the_first_attempt_is_retried_by_the_function_and_succeeds(make_server, tmp_path_factory):
    """Every first ConverseStream of a request is ServiceUnavailable (`every = 2`): the
    function's Bedrock client retries it before any byte reached the caller, and the client gets
    the whole answer."""
    server = faulty_chain(make_server, tmp_path_factory, "ServiceUnavailableException", every=2)
    for _ in range(2):
        trace = new_trace()
        words, error, _, done = stream_with_fault(server, lambda: None, num_predict=5, trace_id=trace)
        assert error is None and done and words == REPLY.split()[:5]
        wait_for(lambda: len(access_lines(server, "bedrock-emulator", trace)) == 2, 15, "both attempts' log lines")
        assert [l["status"] for l in access_lines(server, "bedrock-emulator", trace)] == [503, 200]


# --- the Lambda service's own errors (its fault injection) -----------------------------------

# The service's error -> (what every client gets, MainService's metric outcome per attempt).
LAMBDA_ERRORS = {
    # Lambda's 5xx: MainService retries, then the contract's Upstream, 502.
    "ServiceException": (502, "service_error"),
    # Lambda's throttling: MainService retries, then Overloaded, 429.
    "TooManyRequestsException": (429, "throttled"),
}


def lambda_faulty_chain(make, tmp_path_factory, error, every):
    return start_chain(make, tmp_path_factory, emulator_slots=16, extra=f'\n[lambda_service.faults]\nerror = "{error}"\nevery = {every}\n')


@pytest.mark.parametrize("error", list(LAMBDA_ERRORS))
def test_lambda_service_errors_are_retried_by_main_service_then_reach_the_client(make_server, tmp_path_factory, error):
    """The Lambda service refuses every invocation with its own error: MainService tries each
    request `max_attempts` (4) times, before any byte of an answer, and then the client gets
    the error status in its protocol's shape."""
    status, outcome = LAMBDA_ERRORS[error]
    server = lambda_faulty_chain(make_server, tmp_path_factory, error, every=1)
    for operation, ask in (("invoke_with_response_stream", True), ("invoke", False)):
        failed = metric(server, "main_service_lambda_invocations_total", operation=operation, outcome=outcome)
        retries = metric(server, "main_service_lambda_retries_total", operation=operation)
        if ask:
            with pytest.raises(ollama.ResponseError) as e:
                for _ in client(server).chat(model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True, options={"num_predict": 3}):
                    pass
            assert e.value.status_code == status, e.value
        else:
            r = httpx.post(server.url + "/api/generate", json={"model": MODEL, "prompt": "hi", "stream": False}, timeout=30)
            assert r.status_code == status and r.json()["error"], r.text
        assert metric(server, "main_service_lambda_invocations_total", operation=operation, outcome=outcome) - failed == 4
        assert metric(server, "main_service_lambda_retries_total", operation=operation) - retries == 3
    c = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.APIStatusError) as e:
        list(c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=3, stream=True))
    assert e.value.status_code == status and e.value.body["message"], e.value


def test_a_lambda_5xx_on_the_first_attempt_is_retried_by_main_service_and_succeeds(make_server, tmp_path_factory):
    """Every first invocation of a request gets a ServiceException (`every = 2`): MainService
    retries it before any byte reached the caller, and the client gets the whole answer."""
    server = lambda_faulty_chain(make_server, tmp_path_factory, "ServiceException", every=2)
    operation = "invoke_with_response_stream"
    for _ in range(2):
        failed = metric(server, "main_service_lambda_invocations_total", operation=operation, outcome="service_error")
        retries = metric(server, "main_service_lambda_retries_total", operation=operation)
        words, error, _, done = stream_with_fault(server, lambda: None, num_predict=5)
        assert error is None and done and words == REPLY.split()[:5]
        assert metric(server, "main_service_lambda_invocations_total", operation=operation, outcome="service_error") - failed == 1
        assert metric(server, "main_service_lambda_retries_total", operation=operation) - retries == 1

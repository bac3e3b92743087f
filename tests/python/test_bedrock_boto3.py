"""boto3's `bedrock-runtime` client against `strata bedrock-emulator`."""

import time

import boto3
import botocore.config
import botocore.exceptions
import pytest

MODEL_ID = "strata.smollm2-135m-instruct-v1:0"
CREDS = {"aws_access_key_id": "AKIDTEST", "aws_secret_access_key": "test-secret", "region_name": "us-east-1"}
NO_RETRY = botocore.config.Config(retries={"max_attempts": 1, "mode": "standard"})


def client(url, config=None):
    return boto3.client("bedrock-runtime", endpoint_url=url, config=config, **CREDS)


@pytest.fixture(scope="module")
def emulator(make_server_module):
    return make_server_module(["--generator", "embedded"], command="bedrock-emulator")


MSG = [{"role": "user", "content": [{"text": "Name a color."}]}]


def test_converse(emulator):
    r = client(emulator.url).converse(modelId=MODEL_ID, messages=MSG, system=[{"text": "Answer in one word."}],
                                      inferenceConfig={"maxTokens": 8, "temperature": 0})
    assert r["output"]["message"]["role"] == "assistant"
    assert r["output"]["message"]["content"][0]["text"].strip()
    assert r["stopReason"] in ("end_turn", "max_tokens")
    u = r["usage"]
    assert u["outputTokens"] > 0 and u["totalTokens"] == u["inputTokens"] + u["outputTokens"]
    assert r["metrics"]["latencyMs"] >= 0
    assert r["ResponseMetadata"]["RequestId"]


def test_converse_stream_events_arrive_one_by_one(emulator):
    r = client(emulator.url).converse_stream(modelId=MODEL_ID, messages=[{"role": "user", "content": [{"text": "Write a story."}]}],
                                             inferenceConfig={"maxTokens": 40, "temperature": 0})
    kinds, texts, first_delta_at = [], [], None
    for event in r["stream"]:
        kind = next(iter(event))
        kinds.append(kind)
        if kind == "contentBlockDelta":
            texts.append(event[kind]["delta"]["text"])
            first_delta_at = first_delta_at or time.monotonic()
        if kind == "metadata":
            usage = event[kind]["usage"]
    done_at = time.monotonic()
    assert kinds[0] == "messageStart"
    assert kinds[-3:] == ["contentBlockStop", "messageStop", "metadata"]
    assert len(texts) > 5, "deltas come one token at a time"
    assert usage["outputTokens"] == 40 or kinds.count("contentBlockDelta") <= 40
    assert done_at - first_delta_at > 0.05, "the first delta arrived well before the end"
    whole = client(emulator.url).converse(modelId=MODEL_ID, messages=[{"role": "user", "content": [{"text": "Write a story."}]}],
                                          inferenceConfig={"maxTokens": 40, "temperature": 0})
    assert "".join(texts) == whole["output"]["message"]["content"][0]["text"]


def test_stop_sequences_report_stop_sequence(emulator):
    full = client(emulator.url).converse(modelId=MODEL_ID, messages=MSG, inferenceConfig={"maxTokens": 30, "temperature": 0})
    word = full["output"]["message"]["content"][0]["text"].split()[1]
    r = client(emulator.url).converse(modelId=MODEL_ID, messages=MSG, inferenceConfig={"maxTokens": 30, "temperature": 0, "stopSequences": [word]})
    assert r["stopReason"] == "stop_sequence"
    assert word not in r["output"]["message"]["content"][0]["text"]


def test_unknown_model_is_resource_not_found(emulator):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client(emulator.url).converse(modelId="anthropic.no-such-model-v9:0", messages=MSG)
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_invalid_request_is_validation_exception(emulator):
    cases = [
        [{"role": "assistant", "content": [{"text": "x"}]}],
        [{"role": "user", "content": [{"image": {"format": "png", "source": {"bytes": b"x"}}}]}],
    ]
    for messages in cases:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            client(emulator.url).converse(modelId=MODEL_ID, messages=messages)
        assert e.value.response["Error"]["Code"] == "ValidationException"
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_missing_credentials_are_denied(emulator):
    import urllib.request, urllib.error, json
    req = urllib.request.Request(f"{emulator.url}/model/{MODEL_ID}/converse", data=json.dumps({"messages": MSG}).encode(), method="POST",
                                 headers={"content-type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req)
    assert e.value.code == 403
    assert e.value.headers["x-amzn-ErrorType"] == "AccessDeniedException"


def test_beyond_the_concurrency_limit_is_throttling(make_server):
    s = make_server(["--generator", "instant"], command="bedrock-emulator",
                           env={"STRATA_BEDROCK_EMULATOR__MAX_CONCURRENT_REQUESTS": "1",
                                "STRATA_BEDROCK_EMULATOR__INSTANT__WORD_DELAY_MS": "50",
                                "STRATA_BEDROCK_EMULATOR__INSTANT__REPLY": "word " * 200})
    c = client(s.url, NO_RETRY)
    stream = c.converse_stream(modelId=MODEL_ID, messages=MSG)["stream"]
    events = iter(stream)
    next(events)  # the first request holds the only slot for 10 s
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.converse(modelId=MODEL_ID, messages=MSG)
    assert e.value.response["Error"]["Code"] == "ThrottlingException"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429


def test_a_hop_serves_on_the_threads_configured(make_server):
    """`[runtime] worker_threads`: one thread by default, as many as configured otherwise,
    and either way the hop answers many clients at once."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    def threads(server):
        return len(os.listdir(f"/proc/{server.proc.pid}/task"))

    one = make_server(["--generator", "instant"], command="bedrock-emulator")
    three = make_server(["--generator", "instant"], env={"STRATA_RUNTIME__WORKER_THREADS": "3"}, command="bedrock-emulator")
    for server in (one, three):
        c = client(server.url, NO_RETRY)
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: c.converse(modelId=MODEL_ID, messages=MSG), range(32)))
        assert all(a["output"]["message"]["content"][0]["text"] for a in answers)
    assert threads(one) == 1, "the default runtime runs every request on the main thread"
    assert threads(three) == 4, "three workers beside the main thread"

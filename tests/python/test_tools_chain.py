"""Tools and structured output down the chain and on the Bedrock path: `strata up` (five
processes, the emulator's embedded model at the end), `strata serve --backend bedrock` against
the emulator, and boto3's Converse with `toolConfig` and `outputConfig` against the emulator."""

import json

import boto3
import jsonschema
import ollama
import openai
import pytest

from conftest import MODEL
from test_chain import start_up
from test_tools import ASK, PERSON, TIME, WEATHER

MODEL_ID = "strata.smollm2-135m-instruct-v1:0"
AWS = {"AWS_ACCESS_KEY_ID": "AKIDTEST", "AWS_SECRET_ACCESS_KEY": "test-secret", "AWS_REGION": "us-east-1"}
CREDS = {"aws_access_key_id": "AKIDTEST", "aws_secret_access_key": "test-secret", "region_name": "us-east-1"}


@pytest.fixture(scope="module")
def emulator(make_server_module):
    return make_server_module(["--generator", "embedded"], command="bedrock-emulator")


@pytest.fixture(scope="module")
def bedrock_serve(make_server_module, emulator, tmp_path_factory):
    config = tmp_path_factory.mktemp("bedrock-tools") / "strata.toml"
    config.write_text(f'[bedrock]\nendpoint_url = "{emulator.url}"\n\n[bedrock.model_ids]\n"{MODEL}" = "{MODEL_ID}"\n')
    return make_server_module(["--backend", "bedrock", "--config", str(config)], env=AWS)


@pytest.fixture(scope="module")
def up(make_server_module, tmp_path_factory):
    return start_up(make_server_module, ["--run-dir", str(tmp_path_factory.mktemp("run-tools"))])


@pytest.fixture(scope="module", params=["up", "bedrock"])
def front(request):
    """The LLM Server of each path that ends at Bedrock (the emulator)."""
    return request.getfixturevalue("up" if request.param == "up" else "bedrock_serve")


def oai(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def test_required_and_named_tool_calls(front):
    c = oai(front)
    r = c.chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER, TIME], tool_choice="required", temperature=0, max_tokens=80)
    assert r.choices[0].finish_reason == "tool_calls"
    call = r.choices[0].message.tool_calls[0]
    tool = WEATHER if call.function.name == "get_weather" else TIME
    jsonschema.validate(json.loads(call.function.arguments), tool["function"]["parameters"])
    r = c.chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER, TIME], temperature=0, max_tokens=80,
                                  tool_choice={"type": "function", "function": {"name": "get_time"}})
    assert {t.function.name for t in r.choices[0].message.tool_calls} == {"get_time"}
    r = c.chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER, TIME], temperature=0, max_tokens=80,
                                  tool_choice="required", parallel_tool_calls=False)
    assert len(r.choices[0].message.tool_calls) == 1


def test_streamed_tool_call_and_round_trip(front):
    c = oai(front)
    kwargs = dict(model=MODEL, messages=ASK, tools=[WEATHER], tool_choice="required", temperature=0, max_tokens=80)
    with c.chat.completions.stream(**kwargs) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    assert final.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments), WEATHER["function"]["parameters"])
    history = ASK + [final.choices[0].message.model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": call.id, "content": "18 degrees and sunny"}]
    second = c.chat.completions.create(model=MODEL, messages=history, tools=[WEATHER], temperature=0, max_tokens=30, tool_choice="none")
    assert second.choices[0].message.content.strip()


def test_ollama_tools_and_schema(front):
    c = ollama.Client(host=front.url)
    assert "tools" in c.show(MODEL).capabilities
    ask = [{"role": "user", "content": "Use the get_weather tool to get the weather in Paris."}]
    r = c.chat(model=MODEL, messages=ask, tools=[WEATHER], options={"temperature": 0, "num_predict": 80})
    assert r.message.tool_calls and r.message.tool_calls[0].function.name == "get_weather"
    history = ask + [r.message, {"role": "tool", "content": "18 degrees", "tool_name": "get_weather"}]
    assert c.chat(model=MODEL, messages=history, options={"temperature": 0, "num_predict": 20}).done
    s = c.chat(model=MODEL, messages=[{"role": "user", "content": "Invent a person."}], format=PERSON, options={"temperature": 0, "num_predict": 120})
    jsonschema.validate(json.loads(s.message.content), PERSON)


def test_bad_tool_requests_are_400s(front):
    with pytest.raises(openai.BadRequestError) as e:
        oai(front).chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "nope"}})
    assert "nope" in e.value.body["message"]


# --- boto3 against the emulator ------------------------------------------------------------

TOOL_CONFIG = {"tools": [{"toolSpec": {"name": "get_weather", "description": "Weather in a city",
                                       "inputSchema": {"json": WEATHER["function"]["parameters"]}}}],
               "toolChoice": {"any": {}}}
MSG = [{"role": "user", "content": [{"text": "What is the weather in Paris?"}]}]


def br(emulator):
    return boto3.client("bedrock-runtime", endpoint_url=emulator.url, **CREDS)


def test_boto3_converse_with_tools(emulator):
    c = br(emulator)
    r = c.converse(modelId=MODEL_ID, messages=MSG, toolConfig=TOOL_CONFIG, inferenceConfig={"temperature": 0, "maxTokens": 80})
    assert r["stopReason"] == "tool_use"
    use = next(b["toolUse"] for b in r["output"]["message"]["content"] if "toolUse" in b)
    assert use["name"] == "get_weather" and use["toolUseId"]
    jsonschema.validate(use["input"], WEATHER["function"]["parameters"])
    follow = MSG + [r["output"]["message"], {"role": "user", "content": [{"toolResult": {"toolUseId": use["toolUseId"], "content": [{"text": "18C"}]}}]}]
    again = c.converse(modelId=MODEL_ID, messages=follow, toolConfig={"tools": TOOL_CONFIG["tools"]}, inferenceConfig={"temperature": 0, "maxTokens": 30})
    assert again["stopReason"] in ("end_turn", "max_tokens", "tool_use")


def test_boto3_converse_stream_with_tools(emulator):
    r = br(emulator).converse_stream(modelId=MODEL_ID, messages=MSG, toolConfig=TOOL_CONFIG, inferenceConfig={"temperature": 0, "maxTokens": 80})
    events = list(r["stream"])
    starts = [e["contentBlockStart"] for e in events if "contentBlockStart" in e]
    assert starts and starts[0]["start"]["toolUse"]["name"] == "get_weather"
    index = starts[0]["contentBlockIndex"]
    pieces = "".join(e["contentBlockDelta"]["delta"]["toolUse"]["input"] for e in events
                     if "contentBlockDelta" in e and e["contentBlockDelta"]["contentBlockIndex"] == index)
    jsonschema.validate(json.loads(pieces), WEATHER["function"]["parameters"])
    assert any(e.get("contentBlockStop", {}).get("contentBlockIndex") == index for e in events)
    assert next(e["messageStop"] for e in events if "messageStop" in e)["stopReason"] == "tool_use"


def test_boto3_structured_output(emulator):
    fmt = {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": {"schema": json.dumps(PERSON), "name": "person"}}}}
    r = br(emulator).converse(modelId=MODEL_ID, messages=[{"role": "user", "content": [{"text": "Invent a person."}]}],
                              outputConfig=fmt, inferenceConfig={"temperature": 0, "maxTokens": 120})
    jsonschema.validate(json.loads(r["output"]["message"]["content"][0]["text"]), PERSON)


def test_boto3_invalid_tool_shapes_are_validation_exceptions(emulator):
    c = br(emulator)
    bad = [
        dict(toolConfig={"tools": TOOL_CONFIG["tools"], "toolChoice": {"tool": {"name": "nope"}}}),
        dict(messages=[{"role": "user", "content": [{"toolResult": {"toolUseId": "x", "content": [{"text": "1"}]}}]}]),
    ]
    for extra in bad:
        kwargs = dict(modelId=MODEL_ID, messages=MSG) | extra
        with pytest.raises(c.exceptions.ValidationException):
            c.converse(**kwargs)

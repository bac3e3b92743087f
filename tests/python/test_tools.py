"""Tools and structured output with the official `ollama` and `openai` clients.

Against `strata serve` on the embedded default model (SmolLM2, whose template knows no tools:
the engine's generic, grammar-constrained format), and against the instant backend, which
streams a tool call in pieces the way Bedrock does."""

import json

import jsonschema
import ollama
import openai
import pytest

from conftest import MODEL

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 40}, "unit": {"enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Get the current time in a time zone",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string", "maxLength": 30}}, "required": ["zone"]},
    },
}
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 30},
        "age": {"type": "integer"},
        "pets": {"type": "array", "items": {"enum": ["cat", "dog", "fish"]}, "maxItems": 3},
    },
    "required": ["name", "age", "pets"],
}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def oai(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def oll(server):
    return ollama.Client(host=server.url)


def weather_args_ok(args):
    jsonschema.validate(args, WEATHER["function"]["parameters"])


# --- OpenAI -------------------------------------------------------------------------------


def test_openai_required_tool_call_matches_the_schema(oai):
    r = oai.chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER, TIME], tool_choice="required", temperature=0, max_tokens=80)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name in ("get_weather", "get_time")
    args = json.loads(call.function.arguments)
    tool = WEATHER if call.function.name == "get_weather" else TIME
    jsonschema.validate(args, tool["function"]["parameters"])


def test_openai_named_tool_choice_calls_that_tool(oai):
    r = oai.chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER, TIME], temperature=0, max_tokens=80,
                                    tool_choice={"type": "function", "function": {"name": "get_time"}}, parallel_tool_calls=False)
    calls = r.choices[0].message.tool_calls
    assert [c.function.name for c in calls] == ["get_time"]
    jsonschema.validate(json.loads(calls[0].function.arguments), TIME["function"]["parameters"])


def test_openai_streamed_tool_call_assembles_like_the_whole_answer(oai):
    kwargs = dict(model=MODEL, messages=ASK, tools=[WEATHER], tool_choice="required", temperature=0, max_tokens=80)
    whole = oai.chat.completions.create(**kwargs).choices[0].message.tool_calls[0]
    with oai.chat.completions.stream(**kwargs) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    streamed = final.choices[0].message.tool_calls[0]
    assert final.choices[0].finish_reason == "tool_calls"
    assert streamed.function.name == whole.function.name
    assert json.loads(streamed.function.arguments) == json.loads(whole.function.arguments)


def test_openai_tool_round_trip(oai):
    first = oai.chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER], tool_choice="required", temperature=0, max_tokens=80)
    call = first.choices[0].message.tool_calls[0]
    history = ASK + [first.choices[0].message.model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": call.id, "content": "18 degrees and sunny"}]
    second = oai.chat.completions.create(model=MODEL, messages=history, tools=[WEATHER], tool_choice="none", temperature=0, max_tokens=40)
    assert second.choices[0].finish_reason in ("stop", "length")
    assert second.choices[0].message.content.strip()
    assert second.choices[0].message.tool_calls is None


def test_openai_json_schema_response_format_is_enforced(oai):
    r = oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Invent a person."}], temperature=0, max_tokens=120,
                                    response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}})
    jsonschema.validate(json.loads(r.choices[0].message.content), PERSON)


def test_openai_bad_tool_requests_are_400s_naming_the_problem(oai):
    cases = [
        (dict(tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "nope"}}), "nope"),
        (dict(tool_choice="required"), "tool_choice"),
        (dict(tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "string", "pattern": "a+"}}}], tool_choice="required"), "pattern"),
        (dict(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "integer", "minimum": 3}}}), "minimum"),
        (dict(messages=[{"role": "tool", "tool_call_id": "call_x", "content": "1"}]), "call_x"),
    ]
    for extra, needle in cases:
        kwargs = dict(model=MODEL, messages=ASK, max_tokens=5) | extra
        with pytest.raises(openai.BadRequestError) as e:
            oai.chat.completions.create(**kwargs)
        assert needle in e.value.body["message"], (extra, e.value.body)


# --- Ollama -------------------------------------------------------------------------------


def test_ollama_show_says_tools(oll):
    assert "tools" in oll.show(MODEL).capabilities


def test_ollama_tool_call_and_round_trip(oll):
    # Ollama has no tool_choice: the model decides. At temperature 0, asked to, it calls.
    ask = [{"role": "user", "content": "Use the get_weather tool to get the weather in Paris."}]
    r = oll.chat(model=MODEL, messages=ask, tools=[WEATHER], options={"temperature": 0, "num_predict": 80})
    calls = r.message.tool_calls
    assert calls, r.message
    assert calls[0].function.name == "get_weather"
    weather_args_ok(dict(calls[0].function.arguments))
    streamed = [c for part in oll.chat(model=MODEL, messages=ask, tools=[WEATHER], stream=True,
                                       options={"temperature": 0, "num_predict": 80}) for c in (part.message.tool_calls or [])]
    assert [(c.function.name, dict(c.function.arguments)) for c in streamed] == [(c.function.name, dict(c.function.arguments)) for c in calls]
    history = ask + [r.message, {"role": "tool", "content": "18 degrees and sunny", "tool_name": "get_weather"}]
    second = oll.chat(model=MODEL, messages=history, options={"temperature": 0, "num_predict": 40})
    assert second.done and second.message.content.strip()


def test_ollama_format_schema_is_enforced(oll):
    r = oll.chat(model=MODEL, messages=[{"role": "user", "content": "Invent a person."}], format=PERSON, options={"temperature": 0, "num_predict": 120})
    jsonschema.validate(json.loads(r.message.content), PERSON)
    g = oll.generate(model=MODEL, prompt="Invent a person.", format=PERSON, options={"temperature": 0, "num_predict": 120})
    jsonschema.validate(json.loads(g.response), PERSON)


def test_ollama_stop_may_be_one_string(oll):
    r = oll.generate(model=MODEL, prompt="Count: 1, 2, 3, 4, 5, 6", options={"temperature": 0, "num_predict": 30, "stop": ","})
    assert "," not in r.response


def test_ollama_unsupported_schema_is_a_400(oll):
    with pytest.raises(ollama.ResponseError) as e:
        oll.chat(model=MODEL, messages=ASK, format={"type": "string", "pattern": "^a"})
    assert e.value.status_code == 400 and "pattern" in e.value.error


# --- The instant backend: a tool call streamed in pieces --------------------------------


def test_instant_backend_streams_a_tool_call_in_pieces(instant_server):
    c = openai.OpenAI(base_url=instant_server.url + "/v1", api_key="unused", max_retries=0)
    with c.chat.completions.stream(model="instant", messages=ASK, tools=[WEATHER], tool_choice="required") as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    assert (call.id, call.function.name) == ("call_instant_0", "get_weather")
    weather_args_ok(json.loads(call.function.arguments))
    o = ollama.Client(host=instant_server.url)
    assert o.chat(model="instant", messages=ASK, tools=[WEATHER]).message.tool_calls[0].function.name == "get_weather"
    assert "tools" in o.show("instant").capabilities

"""Template-native tool calls, as a user gets them: `strata serve` with
`[models.chat_templates]` giving the default model Qwen 2.5's chat template, whose tools are
written the Hermes way (`<tool_call>` blocks). The official clients see ordinary tool calls."""

import json
from pathlib import Path

import ollama
import openai
import pytest

from conftest import MODEL

QWEN = Path(__file__).resolve().parents[2] / "crates" / "engine" / "testdata" / "qwen2.5-instruct.jinja"
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Get the current weather in a city",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40}}, "required": ["city"]}}}


@pytest.fixture(scope="module")
def qwen_server(make_server_module, tmp_path_factory):
    config = tmp_path_factory.mktemp("template") / "strata.toml"
    config.write_text(f'[models.chat_templates]\n"{MODEL}" = "{QWEN}"\n')
    return make_server_module(["--model", MODEL, "--config", str(config)])


def test_the_configured_template_is_the_models(qwen_server):
    show = ollama.Client(host=qwen_server.url).show(MODEL)
    assert show.template == QWEN.read_text()


def test_a_forced_call_comes_back_through_the_hermes_format(qwen_server):
    c = openai.OpenAI(base_url=qwen_server.url + "/v1", api_key="unused", max_retries=0)
    r = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "What is the weather in Paris?"}],
                                  tools=[WEATHER], tool_choice="required", max_tokens=60, temperature=0)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather" and isinstance(json.loads(call.function.arguments)["city"], str)
    # The round trip renders the call and its result through the template's own markup.
    messages = [{"role": "user", "content": "What is the weather in Paris?"}, choice.message.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": call.id, "content": "18 degrees and sunny"}]
    again = c.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER], max_tokens=24, temperature=0)
    assert again.choices[0].finish_reason in ("stop", "length", "tool_calls")


def test_free_answers_stream_as_text(qwen_server):
    chunks = list(ollama.Client(host=qwen_server.url).chat(model=MODEL, messages=[{"role": "user", "content": "Say hello in three words."}],
                                                           tools=[WEATHER], stream=True, options={"num_predict": 24, "temperature": 0}))
    texts = [c.message.content for c in chunks if c.message.content]
    calls = [c for c in chunks if c.message.tool_calls]
    # With tools offered but no call forced, the small model answers in prose, streamed piece by
    # piece (a generic-format answer would arrive whole), or calls the tool.
    assert len(texts) > 1 or calls, chunks

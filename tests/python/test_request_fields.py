"""Nothing is dropped silently: every request field the official `openai` and `ollama` Python
packages know is honoured, refused with a 400 naming it, or listed in docs/contract.md as
accepted and ignored. The field lists come from the packages themselves, so a field a newer
client adds shows up here."""

import re
from pathlib import Path

import httpx
import ollama._types as ollama_types
import pytest
from openai.types import completion_create_params, embedding_create_params
from openai.types.chat import completion_create_params as chat_create_params

DOC = Path(__file__).resolve().parents[2] / "docs" / "contract.md"

# Fields strata reads and acts on (crates/llm-server/src/{openai,ollama}/types.rs).
HONOURED = {
    "openai chat": {"frequency_penalty", "presence_penalty", "max_completion_tokens", "max_tokens", "messages", "model", "n",
                    "parallel_tool_calls", "response_format", "seed", "stop", "stream_options", "temperature", "tool_choice", "tools", "top_p"},
    "openai completions": {"frequency_penalty", "presence_penalty", "max_tokens", "model", "n", "prompt", "seed", "stop", "stream_options",
                           "temperature", "top_p"},
    "ollama chat": {"format", "keep_alive", "messages", "model", "options", "stream", "tools"},
    "ollama generate": {"format", "images", "keep_alive", "model", "options", "prompt", "raw", "stream", "system"},
    "ollama options": {"num_ctx", "num_predict", "repeat_last_n", "repeat_penalty", "seed", "stop", "temperature", "top_k", "top_p"},
    "openai embeddings": {"dimensions", "encoding_format", "input", "model"},
    # `options` are accepted and ignored for embeddings (docs/contract.md says why).
    "ollama embed": {"dimensions", "input", "keep_alive", "model", "options", "truncate"},
    "ollama embeddings": {"keep_alive", "model", "options", "prompt"},
}

FIELDS = {
    "openai chat": set(chat_create_params.CompletionCreateParamsBase.__annotations__),
    "openai completions": set(completion_create_params.CompletionCreateParamsBase.__annotations__),
    "ollama chat": set(ollama_types.ChatRequest.model_fields),
    "ollama generate": set(ollama_types.GenerateRequest.model_fields),
    "ollama options": set(ollama_types.Options.model_fields),
    "openai embeddings": set(embedding_create_params.EmbeddingCreateParams.__annotations__),
    "ollama embed": set(ollama_types.EmbedRequest.model_fields),
    "ollama embeddings": set(ollama_types.EmbeddingsRequest.model_fields),
}

BASE = {
    "openai chat": ("/v1/chat/completions", {"model": "instant", "messages": [{"role": "user", "content": "hi"}]}),
    "openai completions": ("/v1/completions", {"model": "instant", "prompt": "hi"}),
    "ollama chat": ("/api/chat", {"model": "instant", "messages": [{"role": "user", "content": "hi"}], "stream": False}),
    "ollama generate": ("/api/generate", {"model": "instant", "prompt": "hi", "stream": False}),
    "ollama options": ("/api/generate", {"model": "instant", "prompt": "hi", "stream": False}),
    "openai embeddings": ("/v1/embeddings", {"model": "instant", "input": "hi"}),
    "ollama embed": ("/api/embed", {"model": "instant", "input": "hi"}),
    "ollama embeddings": ("/api/embeddings", {"model": "instant", "prompt": "hi"}),
}


def documented_ignored():
    """`field` names of the "Accepted and ignored" table in docs/contract.md, per API."""
    text = DOC.read_text()
    table = text[text.index("Accepted and ignored:"):]
    out = {k: set() for k in FIELDS}
    for field, api in re.findall(r"^\| `([\w.]+)` \| ([^|]+) \|", table, re.M):
        if field.startswith("options."):
            out["ollama options"].add(field.removeprefix("options."))
        elif api.startswith("OpenAI embeddings"):
            out["openai embeddings"].add(field)
        elif api.startswith("OpenAI"):
            out["openai chat"].add(field)
            if "completions" in api:
                out["openai completions"].add(field)
        else:
            out["ollama chat"].add(field)
            out["ollama generate"].add(field)
    return out


def send(server, api, field, value):
    path, body = BASE[api]
    body = dict(body)
    if api == "ollama options":
        body["options"] = {field: value}
    else:
        body[field] = value
    return httpx.post(server.url + path, json=body, timeout=30)


@pytest.mark.parametrize("api", sorted(FIELDS))
def test_every_client_field_is_honoured_refused_or_documented(instant_server, api):
    ignored = documented_ignored()[api]
    assert ignored <= FIELDS[api] | {"truncate", "shift", "prompt_cache_key", "safety_identifier"}, ignored - FIELDS[api]
    for field in sorted(FIELDS[api] - HONOURED[api]):
        r = send(instant_server, api, field, "x")
        if field in ignored:
            assert r.status_code == 200, (api, field, r.text)
        else:
            assert r.status_code == 400, (api, field, r.status_code, r.text)
            assert field in r.text, (api, field, r.text)


def test_default_values_of_unsupported_fields_are_accepted(instant_server):
    for api, field, value in [("openai chat", "logprobs", False), ("openai chat", "top_logprobs", 0), ("openai chat", "modalities", ["text"]),
                              ("openai completions", "echo", False), ("ollama chat", "think", False), ("ollama generate", "suffix", ""),
                              ("ollama generate", "context", []), ("openai chat", "audio", None)]:
        r = send(instant_server, api, field, value)
        assert r.status_code == 200, (api, field, r.text)

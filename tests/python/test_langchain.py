"""LangChain's chat models against `strata serve` (the embedded default model) and
`strata up` (the whole chain): `bind_tools` and `with_structured_output` with a pydantic
model, on ChatOllama and ChatOpenAI, as agent frameworks use them."""

import pytest
from langchain_ollama import ChatOllama
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field

from conftest import MODEL
from test_chain import start_up


class Person(BaseModel):
    """A person."""

    name: str = Field(max_length=30)
    age: int


def get_weather(city: str) -> str:
    """Get the current weather in a city."""
    return f"18 degrees in {city}"


@pytest.fixture(scope="module")
def up(make_server_module, tmp_path_factory):
    return start_up(make_server_module, ["--run-dir", str(tmp_path_factory.mktemp("run-langchain"))])


@pytest.fixture(scope="module", params=["serve", "up"])
def url(request):
    return request.getfixturevalue("server" if request.param == "serve" else "up").url


def models(url):
    return [
        ChatOllama(model=MODEL, base_url=url, temperature=0, num_predict=80),
        ChatOpenAI(model=MODEL, base_url=url + "/v1", api_key="unused", temperature=0, max_tokens=80, max_retries=0),
    ]


def test_bind_tools_yields_tool_calls(url):
    ask = "Use the get_weather tool to get the weather in Paris."
    for chat in models(url):
        kwargs = {"tool_choice": "get_weather"} if isinstance(chat, ChatOpenAI) else {}
        msg = chat.bind_tools([get_weather], **kwargs).invoke(ask)
        assert msg.tool_calls, (type(chat).__name__, msg)
        call = msg.tool_calls[0]
        assert call["name"] == "get_weather" and isinstance(call["args"].get("city"), str), call


def test_with_structured_output_returns_the_pydantic_model(url):
    for chat in models(url):
        person = chat.with_structured_output(Person).invoke("Invent a person.")
        assert isinstance(person, Person), (type(chat).__name__, person)
        assert len(person.name) <= 30

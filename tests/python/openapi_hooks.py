"""schemathesis hooks for docs/openapi.yaml (loaded through SCHEMATHESIS_HOOKS).

schemathesis validates JSON bodies and each server-sent event against the schema itself. Two
things it cannot see are checked here:

- NDJSON streams (Ollama's `/api/generate`, `/api/chat`, `/api/pull`): every line must be one
  JSON object valid against the schema the document gives for `application/x-ndjson`.
- How a stream ends: exactly one final object or one error, and nothing after it. An NDJSON
  stream ends with `"done": true` (generate, chat), `{"status": "success"}` (pull) or an
  `{"error": ...}` line; an SSE stream ends with `[DONE]` after a chunk carrying a
  `finish_reason`, or with one error event and no `[DONE]`. A stream that just stops looks
  complete to no client, so a cut stream is a failure.
"""

import json

import jsonschema_rs
import schemathesis
from schemathesis.core import media_types

NDJSON = ("application", "x-ndjson")


def _media_type(response):
    values = response.headers.get("content-type") or []
    if not values:
        return None
    try:
        return media_types.parse(values[0])
    except Exception:
        return None


def _line_validator(case, status_code):
    """A validator for one NDJSON line, built from the document's (bundled) schema."""
    definition = case.operation.responses.find_by_status_code(status_code)
    assert definition is not None, f"status {status_code} is not documented"
    resolved = definition.get_schema("application/x-ndjson")
    assert resolved.schema is not None, "no schema documented for application/x-ndjson"
    return jsonschema_rs.validator_for(resolved.schema)


def _ndjson_end(path, last):
    if "error" in last:
        return
    if path.endswith("/pull"):
        assert last.get("status") == "success", f"the stream ended without success or error: {last}"
    else:
        assert last.get("done") is True, f"the stream ended without a final object or an error: {last}"


@schemathesis.check
def ndjson_stream_conformance(ctx, response, case):
    if _media_type(response) != NDJSON:
        return None
    text = response.content.decode("utf-8")
    assert text.endswith("\n"), "the NDJSON stream does not end with a newline"
    lines = [line for line in text.split("\n") if line]
    assert lines, "empty NDJSON stream"
    validator = _line_validator(case, response.status_code)
    objects = []
    for i, line in enumerate(lines):
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise AssertionError(f"line {i} is not JSON ({e}): {line[:200]!r}") from None
        errors = [f"{'/'.join(map(str, err.instance_path))}: {err.message}" for err in validator.iter_errors(obj)]
        assert not errors, f"line {i} does not match the documented schema: {errors[:3]}; line: {line[:300]}"
        objects.append(obj)
    for i, obj in enumerate(objects[:-1]):
        final = "error" in obj or obj.get("done") is True or obj.get("status") == "success"
        assert not final, f"line {i} ends the stream but {len(objects) - i - 1} more follow"
    _ndjson_end(case.operation.path, objects[-1])
    return True


@schemathesis.check
def sse_stream_conformance(ctx, response, case):
    if _media_type(response) != ("text", "event-stream"):
        return None
    text = response.content.decode("utf-8")
    assert text.endswith("\n\n"), "the event stream does not end with a complete event"
    events = [e for e in text.split("\n\n") if e]
    data = []
    for e in events:
        assert e.startswith("data: ") and "\n" not in e, f"unexpected event framing: {e[:200]!r}"
        data.append(e[len("data: "):])
    *body, last = data
    if last == "[DONE]":
        objects = [json.loads(d) for d in body]
        assert not any("error" in o for o in objects), "an error event was followed by more events"
        finished = [o for o in objects if any(c.get("finish_reason") for c in o.get("choices", []))]
        assert len(finished) == 1, f"{len(finished)} chunks carry a finish_reason; expected exactly one"
    else:
        assert "error" in json.loads(last), f"the stream ended without [DONE] or an error: {last[:200]}"
        assert "[DONE]" not in body, "[DONE] came before the end of the stream"
    return True

"""A request's output constraint, from any of the names clients use for it, as one StructuredOutputsParams dict.

`response_format` (OpenAI), `structured_outputs` (vLLM) and the older `guided_json` / `guided_regex` /
`guided_choice` / `guided_grammar` all land here; a request may name one constraint only.
"""

from __future__ import annotations

from typing import Any

from swiftcli.server.errors import APIError
from swiftcli.server.protocol import SamplingFields

_GUIDED = {"guided_json": "json", "guided_regex": "regex", "guided_choice": "choice", "guided_grammar": "grammar"}


def _response_format(req: SamplingFields) -> dict[str, Any] | None:
    fmt = req.response_format
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return {"json_object": True}
    if fmt.json_schema is None or fmt.json_schema.schema_ is None:
        raise APIError(400, "response_format json_schema needs json_schema.schema", param="response_format")
    return {"json": fmt.json_schema.schema_}


def _structured_outputs(req: SamplingFields) -> dict[str, Any] | None:
    so = req.structured_outputs
    if so is None:
        return None
    given = {k: v for k, v in so.model_dump(by_alias=True).items() if v is not None}
    if len(given) != 1:
        raise APIError(400, "structured_outputs takes exactly one of json, regex, choice, grammar, json_object",
                       param="structured_outputs")
    return given


def request_constraint(req: SamplingFields) -> dict[str, Any] | None:
    """The one constraint a request names, or None; a 400 when it names several."""
    found: list[tuple[str, dict[str, Any]]] = []
    for name, value in (("response_format", _response_format(req)), ("structured_outputs", _structured_outputs(req))):
        if value is not None:
            found.append((name, value))
    for name, key in _GUIDED.items():
        value = getattr(req, name)
        if value is not None:
            found.append((name, {key: value}))
    if len(found) > 1:
        names = " and ".join(name for name, _ in found)
        raise APIError(400, f"a request takes one output constraint, not {names}", param=found[1][0])
    if not found:
        return None
    name, constraint = found[0]
    if "choice" in constraint and not constraint["choice"]:
        raise APIError(400, f"{name}: choice needs at least one option", param=name)
    return constraint

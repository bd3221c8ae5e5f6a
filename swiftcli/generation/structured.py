"""Structured-output constraints for offline inference: `{"json": schema}`, `{"regex": ...}`,
`{"choice": [...]}`, `{"grammar": ...}` or `{"json_object": true}` (vLLM's StructuredOutputsParams names).

    request = {"query": "Capital of France?", "structured_outputs": {"choice": ["Paris", "Rome"]}}
    inference_vllm(engine, template, [request])
"""

from __future__ import annotations

import json
from typing import Any

from swiftcli.errors import UsageError

KINDS = ("json", "regex", "choice", "grammar", "json_object")


def check_structured_output(value: Any, option: str = "structured_outputs") -> dict[str, Any]:
    """A constraint as a dict (JSON text is parsed); a clear error naming `option` when it is not one."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{option} is not valid JSON: {exc.msg} at position {exc.pos}") from None
    example = "e.g. '{\"choice\": [\"yes\", \"no\"]}' or '{\"regex\": \"[0-9]+\"}'"
    if not isinstance(value, dict) or len(value) != 1:
        raise UsageError(f"{option} must be an object with one of {', '.join(KINDS)}", example)
    kind, spec = next(iter(value.items()))
    if kind not in KINDS:
        raise UsageError(f"{option}: unknown constraint {kind!r}; use one of {', '.join(KINDS)}", example)
    if kind == "choice" and not (isinstance(spec, list) and spec and all(isinstance(c, str) for c in spec)):
        raise UsageError(f"{option}: choice needs a non-empty list of strings", example)
    if kind in ("regex", "grammar") and not (isinstance(spec, str) and spec):
        raise UsageError(f"{option}: {kind} needs a non-empty string", example)
    if kind == "json" and not isinstance(spec, (dict, str)):
        raise UsageError(f"{option}: json needs a JSON schema object", example)
    if kind == "json_object" and spec is not True:
        raise UsageError(f"{option}: json_object takes true", example)
    return {kind: spec}

"""The names vLLM's engine accepts, known without importing vLLM: `--engine_kwargs '{"max_num_seq": 64}'` (a typo)
is refused in a moment, before an engine start that would fail on it half a minute later.

Importing `vllm.engine.arg_utils` takes seconds (it imports torch), so the field names of `EngineArgs` and
`AsyncEngineArgs` are read from the module's source with `ast`: they are the dataclasses' annotated fields.
When the source cannot be read (vLLM not installed, a compiled build), nothing is checked here and vLLM's own
error stands.
"""

from __future__ import annotations

import ast
import difflib
import functools
import importlib.util
from collections.abc import Iterable
from pathlib import Path

from swiftcli.errors import UsageError

_CLASSES = ("EngineArgs", "AsyncEngineArgs")


@functools.cache
def engine_arg_names() -> frozenset[str]:
    """The fields of vLLM's EngineArgs and AsyncEngineArgs; empty when they cannot be read."""
    try:
        spec = importlib.util.find_spec("vllm")  # the package's folder, without running its __init__
        if spec is None or not spec.submodule_search_locations:
            return frozenset()
        source = Path(next(iter(spec.submodule_search_locations)), "engine", "arg_utils.py").read_text(
            encoding="utf-8")
        tree = ast.parse(source)
    except (OSError, SyntaxError, ValueError, ImportError):
        return frozenset()
    return frozenset(
        statement.target.id
        for node in tree.body if isinstance(node, ast.ClassDef) and node.name in _CLASSES
        for statement in node.body
        if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)
        and not statement.target.id.startswith("_")
    )


def check_engine_kwargs(keys: Iterable[str], option: str = "--engine-kwargs") -> None:
    """Refuse keys that vLLM's engine does not take, naming the closest one it does."""
    known = engine_arg_names()
    if not known:
        return
    for key in keys:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f"did you mean {close[0]!r}?" if close else "see vLLM's engine arguments (vllm serve --help)"
            raise UsageError(f"{option}: vLLM's engine has no argument {key!r}", hint)

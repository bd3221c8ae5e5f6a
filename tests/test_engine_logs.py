"""While an engine loads, what libraries print goes to the engine log, never to stdout (results only)."""

from __future__ import annotations

import sys

from swiftcli.engines.logs import EngineLog


def test_prints_while_loading_go_to_the_log_file(tmp_path, capsys):
    log = EngineLog(tmp_path / "infer.log")
    with log.muted():
        print("a library's banner on stdout")
        print("a loading bar on stderr", file=sys.stderr)
    print("the answer")
    captured = capsys.readouterr()
    assert captured.out == "the answer\n" and captured.err == ""
    assert log.path.read_text(encoding="utf-8") == "a library's banner on stdout\na loading bar on stderr\n"


def test_verbose_load_prints_on_stderr_only(capsys):
    with EngineLog(None).muted():
        print("a library's banner on stdout")
    print("the answer")
    captured = capsys.readouterr()
    assert captured.out == "the answer\n" and captured.err == "a library's banner on stdout\n"

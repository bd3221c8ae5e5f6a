"""How a finished `swiftcli` command ends its process: exit handlers run and the output is flushed, the
interpreter's teardown is skipped (seconds once torch and vLLM are loaded), and a thread the interpreter would
wait for is still waited for."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import atexit, sys, threading, time
marks = sys.argv[1]

def mark(what):
    with open(marks, "a") as out:
        out.write(what + "\\n")

class Teardown:
    def __del__(self):
        mark("teardown")

kept = Teardown()  # freed only by the interpreter's teardown
atexit.register(mark, "exit handler")
if sys.argv[2] == "thread":
    threading.Thread(target=lambda: (time.sleep(1), mark("thread"))).start()
sys.argv = ["swiftcli", *sys.argv[3:]]
from swiftcli.cli.main import main
main()
"""


def run(tmp_path, thread, *args):
    marks = tmp_path / "marks.txt"
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(marks), thread, *args], capture_output=True,
                          text=True, timeout=120)
    return proc, marks.read_text().splitlines() if marks.exists() else []


def test_a_finished_command_runs_exit_handlers_flushes_and_skips_the_teardown(tmp_path):
    proc, marks = run(tmp_path, "none", "models", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)  # the whole output, flushed
    assert marks == ["exit handler"]


def test_the_exit_code_of_a_failed_command_stands(tmp_path):
    proc, marks = run(tmp_path, "none", "infer", "--model", str(tmp_path / "missing"), "--query", "hi")
    assert proc.returncode == 1 and proc.stderr.startswith("Error:"), proc.stderr
    assert marks == ["exit handler"]


def test_a_thread_left_running_is_waited_for_as_the_interpreter_would(tmp_path):
    proc, marks = run(tmp_path, "thread", "models", "--json")
    assert proc.returncode == 0, proc.stderr
    assert marks[0] == "thread" and "exit handler" in marks  # then the ordinary exit, teardown and all

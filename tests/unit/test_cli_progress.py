"""The training spinner shows every step a run reports, on a terminal, however short: the demo's
test found the markets model's 'fit' step missing once it took less than one of rich's
refreshes (80 ms)."""

from __future__ import annotations

import os
import pty
import re
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STEPS = """
import sys
sys.path.insert(0, {repo!r})
from cli.progress import training_status
from training.progress import report
with training_status("training the markets model"):
    report("reading"); report("fit"); report("scoring")
"""


def _on_a_terminal(code: str) -> str:
    pid, fd = pty.fork()
    if pid == 0:  # the child: a terminal on its stdout and stderr
        os.environ["TERM"] = "xterm-256color"
        os.execv(sys.executable, [sys.executable, "-c", code])
    out = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, out.decode(errors="replace")
    return re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", out).decode(errors="replace")


def test_each_reported_step_is_drawn_even_when_the_next_follows_at_once() -> None:
    shown = _on_a_terminal(STEPS.format(repo=REPO))
    for step in ("reading", "fit", "scoring"):
        assert f"training the markets model: {step}" in shown

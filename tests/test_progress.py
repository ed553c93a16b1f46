"""Tests for progress: the backfill progress bar, on a terminal and in a log."""

from __future__ import annotations

import io

from studio_exporter.progress import ProgressBar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_when_not_a_terminal() -> None:
    out = io.StringIO()
    bar = ProgressBar(out, label="backfill", width=10)
    bar.update(0, 4, 0)
    bar.update(2, 4, 20)
    bar.update(2, 4, 20)  # unchanged: not printed again
    bar.update(4, 4, 40)
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[1].startswith("backfill [#####.....] 2/4 executions, 20 steps")
    assert lines[2].startswith("backfill [##########] 4/4 executions, 40 steps")


def test_redraws_one_line_on_a_terminal() -> None:
    out = Terminal()
    bar = ProgressBar(out, label="backfill", width=4)
    bar.update(4, 4, 8)
    bar.close()
    assert out.getvalue().startswith("\rbackfill [####] 4/4 executions, 8 steps")
    assert out.getvalue().endswith("\n")


def test_nothing_listed_is_complete() -> None:
    out = io.StringIO()
    ProgressBar(out, label="backfill", width=4).update(0, 0, 0)
    assert "[####] 0/0" in out.getvalue()

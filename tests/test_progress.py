"""The progress display, driven by hand with a fake clock: what a line says, redraws in place,
the final line, and the cut to the terminal's width."""

from __future__ import annotations

import io

import pytest

from sync.progress import Display, human_bytes, human_duration

MiB = 1024 * 1024


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1536, "1.5 KiB"),
        (5 * MiB, "5.0 MiB"),
        (3 * 1024**3, "3.0 GiB"),
    ],
)
def test_human_bytes(n: int, text: str) -> None:
    assert human_bytes(n) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.25, "0.2s"), (9.94, "9.9s"), (42, "42s"), (75, "1m15s"), (3725, "1h02m")],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_a_line_shows_done_of_total_percent_rate_and_time_left() -> None:
    out, clock = io.StringIO(), Clock()
    display = Display(out, columns=lambda: 200, clock=clock)
    copy = display.copy("app:1.0")
    copy.planned(80 * MiB)
    copy.planned(20 * MiB)
    copy.planned(5 * MiB)
    copy.skipped(5 * MiB)  # the target had that one
    clock.now += 0.5
    copy.sent(0)  # the first byte starts the rate's clock
    clock.now += 2.0
    copy.sent(25 * MiB)

    last = out.getvalue().split("\x1b[J")[-1]
    assert last == "app:1.0  25.0 MiB of 100.0 MiB   25%  12.5 MiB/s  6.0s left\n", repr(last)


def test_lines_are_redrawn_in_place_and_the_final_line_stays() -> None:
    out, clock = io.StringIO(), Clock()
    display = Display(out, columns=lambda: 200, clock=clock)
    copy = display.copy("app:1.0")
    copy.planned(10 * MiB)
    clock.now += 0.2
    copy.sent(MiB)
    clock.now += 0.8
    copy.sent(9 * MiB)
    copy.done(True)

    text = out.getvalue()
    assert text.count("\r\x1b[1A\x1b[J") == 2, "each redraw first erases the line before"
    assert text.endswith("app:1.0  copied 10.0 MiB in 0.8s (12.5 MiB/s)\n"), repr(text)
    display.close()
    assert out.getvalue() == text, "nothing is left to erase after the final line"


def test_a_failed_copy_says_so_and_a_copy_that_sent_nothing_leaves_no_line() -> None:
    out, clock = io.StringIO(), Clock()
    display = Display(out, columns=lambda: 200, clock=clock)
    failed, nothing = display.copy("a:1"), display.copy("b:1")
    failed.planned(4 * MiB)
    clock.now += 0.2
    failed.sent(MiB)
    failed.done(False)
    nothing.done(True)
    assert "a:1  failed after 1.0 MiB of 4.0 MiB\n" in out.getvalue()
    assert "b:1" not in out.getvalue()


def test_lines_never_wrap_and_clear_erases_them_for_a_log_line() -> None:
    out, clock = io.StringIO(), Clock()
    display = Display(out, columns=lambda: 30, clock=clock)
    copy = display.copy("a-very-long-image-name:with-a-long-tag")
    copy.planned(MiB)
    clock.now += 0.2
    copy.sent(1)
    drawn = out.getvalue().split("\x1b[J")[-1]
    assert all(len(line) <= 29 for line in drawn.splitlines()), drawn
    display.clear()
    assert out.getvalue().endswith("\r\x1b[1A\x1b[J")

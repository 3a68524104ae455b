"""Copy progress on a terminal: a line per copy under way, a clean final line when it ends.

A line reads `NAME  45.2 MiB of 120.0 MiB  37%  12.3 MiB/s  6s left`: bytes sent of the bytes
to send (blobs the target already has, or can mount, are not counted), the average rate since
the first byte, and the time left at that rate. It shows once the first byte is sent, is
redrawn in place at most ten times a second, and is cut to the terminal's width so that it
never wraps. When a copy ends its line is replaced by `NAME  copied 120.0 MiB in 9.8s
(12.2 MiB/s)` (or `failed after ...`), which stays.

Written here rather than with rich or tqdm: what is needed is a few lines of ANSI (cursor up,
clear to the end of the screen), and a library would add an install and import time to every
run of the CLI and of the function (which shares the dependencies) for that.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["Display", "human_bytes", "human_duration"]

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")
_REDRAW_SECONDS = 0.1


def human_bytes(n: float) -> str:
    """`1536` → `1.5 KiB`; bytes below 1 KiB as a whole number."""
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def human_duration(seconds: float) -> str:
    """`75` → `1m15s`; under a minute with a decimal below ten seconds."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class _Copy:
    """One copy's counters; the CopyProgress the copier reports to."""

    def __init__(self, display: Display, label: str) -> None:
        self._display = display
        self.label = label
        self.total = 0
        self.done_bytes = 0
        self.first_byte: float | None = None

    # The copier plans every blob before it asks the target about any, so the total is whole
    # by the time the first byte goes out; a line shows from then on.
    def planned(self, size: int) -> None:
        self.total += size

    def skipped(self, size: int) -> None:
        self.total -= size

    def sent(self, size: int) -> None:
        if self.first_byte is None:
            self.first_byte = self._display.clock()
        self.done_bytes += size
        self._display.changed()

    def done(self, ok: bool) -> None:
        self._display.finished(self, ok)

    def rate(self, now: float) -> float | None:
        if self.first_byte is None or now - self.first_byte < 0.05:
            return None
        return self.done_bytes / (now - self.first_byte)

    def line(self, now: float) -> str:
        total = max(self.total, self.done_bytes)
        percent = 100 * self.done_bytes / total if total else 0
        parts = [
            self.label,
            f"{human_bytes(self.done_bytes)} of {human_bytes(total)}",
            f"{percent:3.0f}%",
        ]
        rate = self.rate(now)
        if rate:
            parts.append(f"{human_bytes(rate)}/s")
            parts.append(f"{human_duration((total - self.done_bytes) / rate)} left")
        return "  ".join(parts)

    def final_line(self, now: float, ok: bool) -> str:
        spent = now - self.first_byte if self.first_byte is not None else 0.0
        sent = human_bytes(self.done_bytes)
        if not ok:
            return f"{self.label}  failed after {sent} of {human_bytes(self.total)}"
        rate = f" ({human_bytes(self.done_bytes / spent)}/s)" if spent > 0 else ""
        return f"{self.label}  copied {sent} in {human_duration(spent)}{rate}"


class Display:
    """The progress lines of every copy under way, drawn on `stream` (a terminal).

    `copy(label)` makes the CopyProgress of one copy (the engine's progress factory). Before
    anything else writes to the same terminal (a log line), call `clear()`; `close()` at the
    end. Safe to call from several threads.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        columns: Callable[[], int] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._columns = columns or (lambda: shutil.get_terminal_size((100, 24)).columns)
        self.clock = clock
        self._lock = threading.RLock()
        self._active: list[_Copy] = []
        self._drawn = 0
        self._last_draw = 0.0

    def copy(self, label: str) -> _Copy:
        progress = _Copy(self, label)
        with self._lock:
            self._active.append(progress)
        return progress

    def changed(self) -> None:
        with self._lock:
            if self.clock() - self._last_draw >= _REDRAW_SECONDS:
                self._draw()

    def finished(self, progress: _Copy, ok: bool) -> None:
        with self._lock:
            if progress in self._active:
                self._active.remove(progress)
            # A copy that sent nothing (everything was there) leaves no line: the result says it.
            final = [progress.final_line(self.clock(), ok)] if progress.done_bytes else []
            self._draw(final)

    def clear(self) -> None:
        """Erase the lines under way (they come back with the next change)."""
        with self._lock:
            self._write(self._erase())
            self._drawn = 0

    def close(self) -> None:
        with self._lock:
            self._active.clear()
            self.clear()

    def _erase(self) -> str:
        return f"\r\x1b[{self._drawn}A\x1b[J" if self._drawn else ""

    def _draw(self, final: list[str] | None = None) -> None:
        now = self.clock()
        self._last_draw = now
        width = max(self._columns() - 1, 20)
        lines = [line[:width] for line in final or []]
        active = [p.line(now)[:width] for p in self._active if p.done_bytes]
        self._write(self._erase() + "".join(f"{line}\n" for line in [*lines, *active]))
        self._drawn = len(active)

    def _write(self, text: str) -> None:
        if not text:
            return
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):
            pass  # the terminal went away: progress is not worth failing for

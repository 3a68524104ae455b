"""The demo's output: numbered steps with elapsed time, indented detail, a timing summary."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from typing import TextIO

__all__ = ["Console"]


class Console:
    """Writes to `stream`, flushing every line (so output interleaves right with children's)."""

    def __init__(self, stream: TextIO, total_steps: int) -> None:
        self.stream = stream
        self.total = total_steps
        self.started = time.monotonic()
        self.number = 0
        self.title = ""
        self.timings: list[tuple[str, float]] = []
        self.broken = False

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def line(self, text: str = "", indent: int = 0) -> None:
        """One or more lines; once the reader is gone (`python -m demo | head`) output is
        dropped, so that nothing, the cleanup least of all, fails for want of a reader."""
        if self.broken:
            return
        pad = " " * indent
        try:
            for part in text.splitlines() or [""]:
                self.stream.write(f"{pad}{part}".rstrip() + "\n")
            self.stream.flush()
        except (BrokenPipeError, ValueError):
            self.broken = True
            # Python flushes stdout again at exit: point it at /dev/null so that is quiet too.
            with contextlib.suppress(OSError, ValueError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, self.stream.fileno())

    def say(self, text: str) -> None:
        """Detail under the current step."""
        self.line(text, indent=4)

    def block(self, text: str) -> None:
        """Program output or JSON, indented a little further."""
        self.line(text, indent=6)

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[None]:
        self.number += 1
        self.title = title
        self.line()
        self.line(f"[{self.number}/{self.total}] {title}  (at {self.elapsed():.1f}s)")
        began = time.monotonic()
        try:
            yield
        finally:
            self.timings.append((f"{self.number}. {title}", time.monotonic() - began))

    def timing_summary(self) -> None:
        width = max((len(name) for name, _ in self.timings), default=0)
        for name, seconds in self.timings:
            self.say(f"{name.ljust(width)}  {seconds:6.2f}s")

"""A progress bar for long benchmark runs: tqdm when installed, else a plain one on stderr."""

from __future__ import annotations

import sys
import time
from typing import Any


class Progress:
    """`update()` per step, `set_note(text)` for what runs now, `write(line)` for messages."""

    def __init__(self, total: int, description: str) -> None:
        self.total, self.done, self.note, self.description = total, 0, "", description
        self.started = self.last_line = time.time()
        self.is_tty = sys.stderr.isatty()
        self.bar: Any = None
        try:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=description, file=sys.stderr, dynamic_ncols=True)
        except ImportError:
            pass

    def set_note(self, note: str) -> None:
        self.note = note
        if self.bar is not None:
            self.bar.set_postfix_str(note)
        else:
            self._draw()

    def update(self, steps: int = 1) -> None:
        self.done = min(self.total, self.done + steps)
        if self.bar is not None:
            self.bar.update(steps)
        else:
            self._draw()

    def write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            print(("\r\033[K" if self.is_tty else "") + line, file=sys.stderr, flush=True)
            self._draw(force=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        else:
            self._draw(force=True)
            if self.is_tty:
                print(file=sys.stderr, flush=True)

    def _draw(self, force: bool = False) -> None:
        now = time.time()
        if not self.is_tty and not force and now - self.last_line < 10:
            return  # in logs: one line every 10 s at most
        self.last_line = now
        width = 30
        filled = int(width * self.done / max(self.total, 1))
        elapsed = now - self.started
        eta = elapsed / self.done * (self.total - self.done) if self.done else float("nan")
        line = (f"{self.description} [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
                f"{elapsed:5.0f}s elapsed, eta {eta:5.0f}s  {self.note}")
        print(("\r\033[K" + line) if self.is_tty else line, end="" if self.is_tty else "\n", file=sys.stderr,
              flush=True)

"""Progress bars that suit where they are written: a live tqdm bar on a terminal, and a plain line
every `interval` seconds when the stream is a file or a pipe (`nohup ... > log` must not fill up
with carriage-return updates)."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm


class LineProgress:
    """The part of tqdm's interface that the project uses, writing whole lines."""

    def __init__(self, total=None, initial=0, desc="", unit="it", file=None, interval=30.0,
                 disable=False, **_ignored) -> None:
        self.total, self.n, self.desc, self.unit = total, initial, desc, unit
        self.file = file or sys.stderr
        self.interval, self.disable = interval, disable
        self.start = self.last = time.monotonic()
        self.start_n = initial
        self.postfix = ""

    def _line(self) -> str:
        elapsed = time.monotonic() - self.start
        rate = (self.n - self.start_n) / elapsed if elapsed > 0 else 0.0
        total = f"/{self.total}" if self.total else ""
        extra = f" {self.postfix}" if self.postfix else ""
        return f"{self.desc}: {self.n}{total} {self.unit} ({rate:.1f} {self.unit}/s, {elapsed:.0f} s){extra}"

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if not self.disable and now - self.last >= self.interval:
            self.last = now
            print(self._line(), file=self.file, flush=True)

    def set_postfix(self, refresh: bool = False, **values) -> None:
        self.postfix = " ".join(f"{k}={v}" for k, v in values.items())

    @staticmethod
    def write(text: str, file=None) -> None:
        print(text, file=file or sys.stderr, flush=True)

    def close(self) -> None:
        if not self.disable:
            print(self._line(), file=self.file, flush=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(total=None, desc="", unit="it", file=None, **kwargs):
    """tqdm on a terminal, LineProgress otherwise."""
    stream = file or sys.stderr
    if hasattr(stream, "isatty") and stream.isatty():
        return tqdm(total=total, desc=desc, unit=unit, file=stream, dynamic_ncols=True, **kwargs)
    kwargs.pop("leave", None)
    return LineProgress(total=total, desc=desc, unit=unit, file=stream, **kwargs)


def write(text: str) -> None:
    """A message that does not break a live bar."""
    tqdm.write(text)

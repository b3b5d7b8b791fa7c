"""The serial console of one run: its log, watched for a marker and a failure.

Real firmware never exits by itself (OVMF sits in its boot manager for
ever), so "booted" often means "a line the guest prints once it got there
appeared on COM1".  :class:`ConsoleLog` is pexpect's ``logfile_read``: every
byte read from the console goes to ``console.log``, and while anything is
watched the text is decoded incrementally (UTF-8 split across reads stays
whole) and searched for

* ``until``, the marker the caller waits for (searched until it matched);
* ``fail``, a line that ends the run early (a kernel panic), searched for
  the whole run, also after the marker when the run goes on past it.

Only the last :data:`ConsoleLog.WINDOW` characters are kept and each
search starts at most :data:`ConsoleLog.REACH` characters before the new
text (a marker is a line, far shorter), so a long console costs neither
memory nor quadratic time.  :mod:`harness.qemu.runner` acts on what this
sees (quit QEMU, report progress); this module only watches.
"""

from __future__ import annotations

import codecs
import re
import time
from pathlib import Path
from re import Pattern

from harness.terminal import last_line

#: A console pattern: a regex over the decoded console text.
ConsolePattern = str | Pattern[str]


def compile_pattern(pattern: ConsolePattern | None) -> Pattern[str] | None:
    """A compiled pattern (``str`` regexes compiled without flags; a
    compiled one kept as it is, flags included)."""
    if pattern is None or isinstance(pattern, Pattern):
        return pattern
    return re.compile(pattern)


class ConsoleLog:
    """``console.log`` that watches the stream (see the module docstring).
    ``matched`` / ``failed_on`` hold the text each pattern matched and
    ``matched_at`` / ``failed_at`` the monotonic time its bytes were read."""

    WINDOW = 64 * 1024   # characters of recent console kept for searches and progress
    REACH = 8 * 1024     # how far before the new text a match may start

    def __init__(self, path: Path, until: ConsolePattern | None = None,
                 fail: ConsolePattern | None = None, tail: bool = False) -> None:
        self._fh = open(path, "wb")
        self._until = compile_pattern(until)
        self._fail = compile_pattern(fail)
        self._keep = tail or self._until is not None or self._fail is not None
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._window = ""
        self.matched: str | None = None
        self.matched_at: float | None = None
        self.failed_on: str | None = None
        self.failed_at: float | None = None

    def write(self, data: bytes) -> None:
        self._fh.write(data)
        if not self._keep:
            return
        new = self._decoder.decode(data)
        if not new:
            return
        window = self._window + new
        if len(window) > 2 * self.WINDOW:   # trimmed now and then: amortised O(new)
            window = window[-self.WINDOW:]
        self._window = window
        start = max(0, len(window) - len(new) - self.REACH)
        now = time.monotonic()
        marker = failure = None
        if self._until is not None and self.matched is None:
            marker = self._until.search(window, start)
        if self._fail is not None and self.failed_on is None:
            failure = self._fail.search(window, start)
        if marker and failure and failure.start() < marker.start():
            marker = None       # the failure came first: the marker was never reached
        if marker:
            self.matched, self.matched_at = marker.group(0), now
        if failure:
            self.failed_on, self.failed_at = failure.group(0), now

    def last_line(self) -> str:
        """The console's last non-empty line, as a reader sees it."""
        return last_line(self._window[-2048:])

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()

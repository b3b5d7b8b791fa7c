"""The serial console of one run: its log, watched for a marker and a failure.

Real firmware never exits by itself (OVMF sits in its boot manager for
ever), so "booted" often means "a line the guest prints once it got there
appeared on COM1".  :class:`ConsoleLog` is pexpect's ``logfile_read``: every
byte read from the console goes to ``console.log``, and while anything is
watched the text is decoded incrementally (UTF-8 split across reads stays
whole) and searched for

* ``until``, the marker the caller waits for (searched until it matched);
* ``fail``, a line that ends the run early (a kernel panic), searched for
  the whole run, also after the marker when the run goes on past it;
* ``answers``: ``(prompt, keys)`` pairs; when a prompt first appears its
  keys are queued once for the runner to type (a firmware countdown a
  user would cut short with a key).

Only the last :data:`ConsoleLog.WINDOW` characters are kept and each
search starts at most :data:`ConsoleLog.REACH` characters before the new
text (a marker is a line, far shorter), so a long console costs neither
memory nor quadratic time.  :mod:`harness.qemu.runner` acts on what this
sees (quit QEMU, report progress); this module only watches.

It also notes when the text arrived (:attr:`ConsoleLog.arrivals`: the
decoded length after each read, with its time), so that a finished run's
record answers "when did the console first show X" for any X, not only
for the marker it was watched for: one boot serves several checks
(harness.qemu.records).
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
    #: Arrival notes kept (one per read, at most one per millisecond): a
    #: Linux boot through OVMF makes a few thousand; a console that floods
    #: for the whole deadline keeps its first ARRIVALS_MAX.
    ARRIVALS_MAX = 100_000

    def __init__(self, path: Path, until: ConsolePattern | None = None,
                 fail: ConsolePattern | None = None, tail: bool = False,
                 answers: tuple[tuple[ConsolePattern, bytes], ...] = ()) -> None:
        self._fh = open(path, "wb")
        self._until = compile_pattern(until)
        self._fail = compile_pattern(fail)
        self._answers = [(compile_pattern(p), keys) for p, keys in answers]
        #: keys whose prompt appeared, for the runner to type (then cleared)
        self.to_type: list[bytes] = []
        self._keep = (tail or self._until is not None or self._fail is not None
                      or bool(self._answers))
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._window = ""
        self._length = 0
        #: ``(decoded length after a read, monotonic time of that read)``
        self.arrivals: list[tuple[int, float]] = []
        self.matched: str | None = None
        self.matched_at: float | None = None
        self.failed_on: str | None = None
        self.failed_at: float | None = None

    def write(self, data: bytes) -> None:
        self._fh.write(data)
        new = self._decoder.decode(data)
        if not new:
            return
        now = time.monotonic()
        self._length += len(new)
        arrivals = self.arrivals
        if arrivals and now - arrivals[-1][1] < 0.001:
            arrivals[-1] = (self._length, arrivals[-1][1])
        elif len(arrivals) < self.ARRIVALS_MAX:
            arrivals.append((self._length, now))
        if not self._keep:
            return
        window = self._window + new
        if len(window) > 2 * self.WINDOW:   # trimmed now and then: amortised O(new)
            window = window[-self.WINDOW:]
        self._window = window
        start = max(0, len(window) - len(new) - self.REACH)
        marker = failure = None
        if self._until is not None and self.matched is None:
            marker = self._until.search(window, start)
        if self._fail is not None and self.failed_on is None:
            failure = self._fail.search(window, start)
        if marker and failure and failure.start() < marker.start():
            marker = None       # the failure came first: the marker was never reached
        if self._answers:
            waiting = []
            for prompt, keys in self._answers:
                if prompt.search(window, start):
                    self.to_type.append(keys)
                else:
                    waiting.append((prompt, keys))
            self._answers = waiting
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

"""The guests' side channel: the ``IGVMT`` line protocol they print on the
console, and the platform configuration page they read.

Both mirror ``fixtures/guests/platform.inc`` (the assembly side); a test
assembles a probe against that file and compares the numbers, so the two
cannot drift apart silently.

Line protocol: ``IGVMT <kind> key=value key=value ...``; values are hex
(``0x..``) or decimal integers, anything else stays a string.  Non-``IGVMT``
console output is kept but ignored.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Iterator

PREFIX = "IGVMT"

# ---------------------------------------------------------- config page
CONFIG_GPA = 0x9000
CONFIG_MAGIC = b"IGVMTCFG"
TASKS_OFFSET = 0x40
TASK_SIZE = 32
MAX_TASKS = 126
DEFAULT_SERIAL = 0x3F8
DEFAULT_EXIT_PORT = 0x501  # hw/misc/debugexit.c: default iobase


class IoMode(IntEnum):
    """How a guest writes its console and ends (the platform seam)."""

    PORT = 0       # COM1 port I/O + isa-debug-exit (native, SEV)
    GHCB_MSR = 1   # GHCB MSR protocol (SEV-ES, SEV-SNP)


class TaskOp(IntEnum):
    """Operations of the 64-bit payload's task list (platform.inc OP_*)."""

    VPCOUNT = 1   # a = GPA of the u32 VP count parameter
    MMAP = 2      # a = GPA of the memory map parameter, b = max entries
    ENVINFO = 3   # a = GPA of the u32 environment info parameter
    E820 = 4      # read QEMU's fw_cfg "etc/e820"
    SUM = 5       # a = GPA, b = length: qword sum, rotate-xor hash, non-zero count
    MEMTEST = 6   # a = GPA, b = length: write a pattern, read it back
    PEEK = 7      # a = GPA: the u64 there


@dataclass(frozen=True)
class Task:
    op: TaskOp
    a: int = 0
    b: int = 0
    c: int = 0

    def pack(self) -> bytes:
        return struct.pack("<IIQQQ", int(self.op), 0, self.a, self.b, self.c)


@dataclass
class ConfigPage:
    """The per-platform configuration page at :data:`CONFIG_GPA`."""

    io_mode: IoMode = IoMode.PORT
    exit_status: int = 0
    serial_port: int = DEFAULT_SERIAL
    exit_port: int = DEFAULT_EXIT_PORT
    tasks: list[Task] = field(default_factory=list)

    def pack(self) -> bytes:
        if len(self.tasks) > MAX_TASKS:
            raise ValueError(f"at most {MAX_TASKS} guest tasks fit in the config page")
        head = CONFIG_MAGIC + struct.pack("<IIHHI", int(self.io_mode), self.exit_status,
                                          self.serial_port, self.exit_port, len(self.tasks))
        head = head.ljust(TASKS_OFFSET, b"\0")
        body = b"".join(t.pack() for t in self.tasks)
        return (head + body).ljust(0x1000, b"\0")


# ----------------------------------------------------------- reference
def qword_digest(data: bytes) -> tuple[int, int, int]:
    """What the payload's SUM task computes, from the bytes a test placed:
    (sum of qwords mod 2**64, rotate-xor hash h = rol(h,5) ^ q, non-zero
    qwords).  Defined by the protocol, computed here independently."""
    mask = (1 << 64) - 1
    total = h = nonzero = 0
    n = len(data) // 8
    for (q,) in struct.iter_unpack("<Q", data[: n * 8]):
        total = (total + q) & mask
        h = (((h << 5) | (h >> 59)) & mask) ^ q
        if q:
            nonzero += 1
    return total, h, nonzero


# -------------------------------------------------------------- parsing
def _value(text: str) -> int | str:
    try:
        return int(text, 0)
    except ValueError:
        return text


@dataclass(frozen=True)
class Record:
    """One ``IGVMT`` line."""

    kind: str
    fields: dict
    line: str

    def __getitem__(self, key: str):
        return self.fields[key]

    def get(self, key: str, default=None):
        return self.fields.get(key, default)


def parse_line(line: str) -> Record | None:
    """A console line -> :class:`Record`, or None when it is not ``IGVMT``."""
    text = line.strip().strip("\x00")
    idx = text.find(PREFIX + " ")
    if idx < 0:
        return None
    parts = text[idx + len(PREFIX) + 1:].split()
    if not parts:
        return None
    kind, fields = parts[0], {}
    for part in parts[1:]:
        key, sep, val = part.partition("=")
        fields[key] = _value(val) if sep else True
    return Record(kind, fields, text[idx:])


@dataclass
class GuestReport:
    """Everything a guest reported, in order."""

    records: list[Record] = field(default_factory=list)

    @classmethod
    def parse(cls, console: str) -> "GuestReport":
        recs = [r for r in (parse_line(l) for l in console.splitlines()) if r is not None]
        return cls(recs)

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def __bool__(self) -> bool:
        return bool(self.records)

    def all(self, kind: str, **match) -> list[Record]:
        return [r for r in self.records if r.kind == kind
                and all(r.fields.get(k) == v for k, v in match.items())]

    def first(self, kind: str, **match) -> Record | None:
        found = self.all(kind, **match)
        return found[0] if found else None

    def one(self, kind: str, **match) -> Record:
        found = self.all(kind, **match)
        if len(found) != 1:
            raise AssertionError(f"expected one 'IGVMT {kind}' line, got {len(found)}:"
                                 f" {[r.line for r in found]}")
        return found[0]

    @property
    def booted(self) -> bool:
        return self.first("boot") is not None

    @property
    def done(self) -> bool:
        return self.first("done") is not None

    @property
    def status(self) -> int | None:
        rec = self.first("done")
        return None if rec is None else rec.get("status")

    def table(self, kind: str) -> list[dict]:
        """The indexed lines of one kind (``i=`` present), ordered by i."""
        rows = [r.fields for r in self.records if r.kind == kind and "i" in r.fields]
        return sorted(rows, key=lambda f: f["i"])

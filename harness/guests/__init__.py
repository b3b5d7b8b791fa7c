"""guests layer: builds the assembly payloads in ``fixtures/guests/`` with
binutils (cached by content hash) and parses their ``IGVMT`` line protocol."""

from harness.guests.build import GUESTS, GuestImage, GuestBuildError, build_guest, build_all
from harness.guests.protocol import (
    ConfigPage, GuestReport, IoMode, Record, Task, TaskOp, parse_line, qword_digest,
)

__all__ = ["GUESTS", "GuestImage", "GuestBuildError", "build_guest", "build_all",
           "ConfigPage", "GuestReport", "IoMode", "Record", "Task", "TaskOp",
           "parse_line", "qword_digest"]

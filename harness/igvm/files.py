"""Opening an IGVM file: mapped, not read; its size bound and magic checked first.

Kept apart from the parser so that a command that only needs the bytes
(``measure FW.fd``: an OVMF image) does not import the IGVM model.
"""

from __future__ import annotations

import mmap
import os
import struct

from harness.errors import HarnessError
from harness.igvm.defs import IGVM_MAGIC
from harness.igvm.limits import MAX_FILE_SIZE
from harness.inputs import open_input

_U32 = struct.Struct("<I")


def read(path, require_igvm: bool = False) -> mmap.mmap | bytes:
    """Map (or, if empty, read) a file; I/O problems become HarnessError.

    With ``require_igvm`` the size bound (:data:`MAX_FILE_SIZE`) and the
    magic are checked on the descriptor before anything is mapped, so that
    a 5 GiB file of zeros costs one ``fstat`` and a 4-byte read.
    """
    path = os.fspath(path)
    fd = open_input(path)  # regular files only: a FIFO would block, /dev/zero never end
    try:
        size = os.fstat(fd).st_size
        if require_igvm:
            _check_image(path, fd, size)
        if size == 0:
            return b""
        return mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    except OSError as exc:
        raise HarnessError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise HarnessError(f"{path}: cannot map: {exc}") from None
    finally:
        os.close(fd)  # the mapping keeps its own reference


def _check_image(path: str, fd: int, size: int) -> None:
    if size > MAX_FILE_SIZE:
        raise HarnessError(f"{path}: not an IGVM file: {size} bytes; the limit is {MAX_FILE_SIZE} "
                           "bytes (the fixed header's total_file_size is a u32)", 1)
    head = os.pread(fd, 4, 0)
    if len(head) < 4:
        raise HarnessError(f"{path}: not an IGVM file: {size} bytes, too short for the magic", 1)
    (magic,) = _U32.unpack(head)
    if magic != IGVM_MAGIC:
        raise HarnessError(f"{path}: not an IGVM file: magic 0x{magic:08x}, expected "
                           f"0x{IGVM_MAGIC:08x} ('IGVM')", 1)

"""SEV and SEV-ES launch digests: SHA-256 over what the firmware measured.

The SEV firmware (AMD SEV API spec, LAUNCH_UPDATE_DATA / LAUNCH_UPDATE_VMSA)
extends one running SHA-256 with the plaintext of every region passed to it,
in call order, and LAUNCH_MEASURE returns ``HMAC-SHA256(TIK, 0x04 || api_major
|| api_minor || build || policy(le32) || digest || mnonce)``.  This module only
knows bytes; which bytes and in which order is decided by :mod:`pages`.
"""

from __future__ import annotations

import hashlib
import struct

from harness.errors import HarnessError
from harness.record import Record

PAGE_4K = 0x1000
_ZERO_CHUNK = bytes(0x200000)  # 2 MiB of zeros, shared, for zero runs

#: The first byte of the LAUNCH_MEASURE MAC input (SEV API spec, LAUNCH_MEASURE).
LAUNCH_MEASURE_CONTEXT = 0x04


class SevDigest:
    """Running SHA-256 of an SEV / SEV-ES launch.

    ``update`` takes memoryviews so a multi-GiB mapped image is hashed
    without copies; ``update_zeros`` feeds zeros from a shared buffer.
    """

    def __init__(self) -> None:
        self._h = hashlib.sha256()

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._h.update(data)

    def update_padded(self, data: bytes | bytearray | memoryview | None, length: int) -> None:
        """Feed ``data`` zero-padded to ``length`` (QEMU pads short IGVM page data)."""
        n = 0 if data is None else len(data)
        if n > length:
            raise HarnessError(f"page data of {n} bytes exceeds its page size {length}", 1)
        if n:
            self._h.update(data)
        self.update_zeros(length - n)

    def update_pages(self, pages, page_size: int) -> None:
        """Feed a run of pages (each data or None, zero-padded to ``page_size``).

        The hot loop of a launch prediction: full pages go straight to hashlib."""
        upd = self._h.update
        for page in pages:
            if page is not None and len(page) == page_size:
                upd(page)
            else:
                self.update_padded(page, page_size)

    def update_segments(self, segments, page_size: int) -> None:
        """Feed one launch update's pages from ``(gpa, data, pages, repeat)``
        stretches (harness.measure.pages.Update.segments): a run of file
        data in one call, a page every page of the run shares once per page,
        zeros from the shared buffer."""
        upd = self._h.update
        for _gpa, data, pages, repeat in segments:
            if data is None:
                self.update_zeros(pages * page_size)
            elif not repeat and len(data) == pages * page_size:
                upd(data)
            elif len(data) == page_size:
                for _ in range(pages):
                    upd(data)
            else:
                for _ in range(pages):
                    self.update_padded(data, page_size)

    def update_zeros(self, length: int) -> None:
        while length > 0:
            step = min(length, len(_ZERO_CHUNK))
            self._h.update(memoryview(_ZERO_CHUNK)[:step])
            length -= step

    def copy(self) -> "SevDigest":
        other = SevDigest()
        other._h = self._h.copy()
        return other

    def digest(self) -> bytes:
        return self._h.digest()

    def hexdigest(self) -> str:
        return self._h.hexdigest()


class LaunchMeasurement(Record, frozen=True):
    """The 48-byte LAUNCH_MEASURE blob: ``measure[32] || mnonce[16]``.

    QEMU returns it base64-encoded in ``query-sev-launch-measure`` (target/i386/sev.c:
    sev_launch_get_measure stores ``g_base64_encode(data, measurement.len)``).
    """

    measure: bytes
    mnonce: bytes

    @classmethod
    def from_base64(cls, text: str) -> "LaunchMeasurement":
        import base64  # the QMP flow only, not `measure`

        try:
            raw = base64.b64decode(text, validate=True)
        except (ValueError, TypeError) as exc:
            raise HarnessError(f"launch measurement is not base64: {exc}") from None
        if len(raw) != 48:
            raise HarnessError(f"launch measurement is {len(raw)} bytes, expected 48 (measure[32] || mnonce[16])")
        return cls(raw[:32], raw[32:])

    def to_base64(self) -> str:
        import base64

        return base64.b64encode(self.measure + self.mnonce).decode()


def launch_measure_mac(tik: bytes, api_major: int, api_minor: int, build: int,
                       policy: int, digest: bytes, mnonce: bytes) -> bytes:
    """Compute the MEASURE field the firmware returns for ``digest``."""
    if len(digest) != 32 or len(mnonce) != 16:
        raise HarnessError("launch digest must be 32 bytes and mnonce 16 bytes")
    import hmac  # the QMP flow only, not `measure`

    msg = (bytes([LAUNCH_MEASURE_CONTEXT, api_major & 0xFF, api_minor & 0xFF, build & 0xFF])
           + struct.pack("<I", policy & 0xFFFFFFFF) + digest + mnonce)
    return hmac.new(tik, msg, hashlib.sha256).digest()


def check_launch_measure(tik: bytes, api_major: int, api_minor: int, build: int,
                         policy: int, digest: bytes, observed: LaunchMeasurement) -> bool:
    """True when ``observed`` is the firmware's MAC over ``digest`` (constant-time compare)."""
    import hmac

    expected = launch_measure_mac(tik, api_major, api_minor, build, policy, digest, observed.mnonce)
    return hmac.compare_digest(expected, observed.measure)

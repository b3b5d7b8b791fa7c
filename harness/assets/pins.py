"""Pins (package version + SHA-256 of the file) kept in the repository.

Like QEMU's functional-test assets (tests/functional/qemu_test/asset.py,
``Asset._check``: the SHA-256 of the fetched file is compared with the one
written in the test), a pinned file whose hash differs is refused.  Pins are
validated when read so that a malformed one can never compare as "equal".
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError

PINS_FILE = Path(__file__).with_name("pins.toml")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Pin:
    name: str
    package: str
    version: str
    sha256: str


class PinMismatch(HarnessError):
    """A pinned version's file does not have the pinned hash: refuse it."""


def parse(text: str, origin: str = str(PINS_FILE)) -> dict[str, Pin]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise HarnessError(f"{origin}: {exc}") from None
    pins = {}
    for name, entry in data.items():
        if not isinstance(entry, dict):
            raise HarnessError(f"{origin}: [{name}] is not a table")
        package, version, sha = (entry.get(k) for k in ("package", "version", "sha256"))
        if not all(isinstance(v, str) and v for v in (package, version, sha)):
            raise HarnessError(f"{origin}: [{name}] needs package, version and sha256 strings")
        if not _SHA256.fullmatch(sha):
            raise HarnessError(f"{origin}: [{name}] sha256 must be 64 lower-case hex digits")
        pins[name] = Pin(name, package, version, sha)
    return pins


def load(path: Path = PINS_FILE) -> dict[str, Pin]:
    return parse(path.read_text(), str(path))


def check(pin: Pin, version: str, sha256: str) -> bool:
    """True when (*version*, *sha256*) is the pinned file, False when *version*
    is not the pinned one (unpinned); raises PinMismatch for the pinned version
    with another hash."""
    if version != pin.version:
        return False
    if sha256.lower() != pin.sha256:
        raise PinMismatch(f"{pin.name}: {pin.package} {version} gave a file with sha256 "
                          f"{sha256}, but {PINS_FILE.name} pins {pin.sha256}: refused")
    return True

"""Random mutations: libigvm built with AddressSanitizer/UBSan never faults,
every accepted file can be walked through the whole API, and the C library
refuses a randomly corrupted file exactly when the Python validator does.

Files come from the differential test's builder bases; each is corrupted
deterministically (seeded) by overwriting header bytes or 32-bit fields with
boundary values, then resealed with a correct CRC-32 so that the corruption
reaches the header rules instead of stopping at the checksum.
"""

from __future__ import annotations

import random
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from tests.libigvm.conftest import LIBIGVM_DIR, _require_toolchain

try:
    from tests.libigvm.test_differential import BASES, RULES, expected_codes, validate
except ImportError:  # pragma: no cover
    pytest.skip("format library mutators not available", allow_module_level=True)

SEED = 20261126
PER_BASE = 1000
INTERESTING = (0, 1, 2, 3, 4, 5, 6, 7, 8, 0x10, 0x14, 0x18, 0x100, 0x101, 0x1000, 0x1001,
               0x301, 0x302, 0x304, 0x313, 0x314, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)
SANITIZE = "-O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all"


@pytest.fixture(scope="module")
def sanitized_check(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _require_toolchain()
    builddir = tmp_path_factory.mktemp("libigvm-asan")
    probe = builddir / "probe.c"
    probe.write_text("int main(void) { return 0; }\n")
    if subprocess.run(["cc", *SANITIZE.split(), "-o", str(builddir / "probe"), str(probe)],
                      capture_output=True).returncode != 0:
        pytest.skip("no AddressSanitizer/UBSan runtime for cc")
    proc = subprocess.run(["make", "-s", "-C", str(LIBIGVM_DIR), f"BUILDDIR={builddir}",
                           f"CFLAGS={SANITIZE}", "all"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return builddir / "igvm-check"


def _reseal(buf: bytearray) -> None:
    version = struct.unpack_from("<I", buf, 4)[0] if len(buf) >= 8 else 1
    fixed = 32 if version == 2 else 24
    if len(buf) < fixed:
        return
    vho, vhs = struct.unpack_from("<II", buf, 8)
    struct.pack_into("<I", buf, 20, 0)
    crc = zlib.crc32(bytes(buf[vho:vho + vhs]), zlib.crc32(bytes(buf[:fixed])))
    struct.pack_into("<I", buf, 20, crc)


def _corrupt(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    vho, vhs = struct.unpack_from("<II", buf, 8)
    end = vho + vhs
    kind = rng.randrange(4)
    if kind == 0:  # a 32-bit field of the variable headers takes a boundary value
        off = vho + 4 * rng.randrange(vhs // 4)
        struct.pack_into("<I", buf, off, rng.choice(INTERESTING))
    elif kind == 1:  # a few random bytes anywhere in the headers
        for _ in range(rng.randint(1, 4)):
            buf[rng.randrange(end)] = rng.randrange(256)
    elif kind == 2:  # a fixed-header field
        off = 4 * rng.randrange(6)
        struct.pack_into("<I", buf, off, rng.choice(INTERESTING + (vho, vhs, len(buf))))
    else:  # a boundary value in a header field, then cut the file short or not
        off = vho + 4 * rng.randrange(vhs // 4)
        struct.pack_into("<I", buf, off, rng.choice(INTERESTING))
        if rng.random() < 0.3:
            del buf[rng.randrange(end, len(buf)):]
            struct.pack_into("<I", buf, 16, len(buf))
    if rng.random() < 0.9:
        _reseal(buf)
    return bytes(buf)


def test_random_corruptions(sanitized_check: Path, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    files: dict[str, list] = {}
    for name, make in BASES.items():
        base = make()
        for i in range(PER_BASE):
            data = _corrupt(base, rng)
            path = tmp_path / f"{name}-{i:04d}.igvm"
            path.write_bytes(data)
            files[str(path)] = [v for v in validate(data) if not RULES[v.rule].strict]

    proc = subprocess.run([str(sanitized_check), "-w", *files], capture_output=True,
                          text=True, timeout=600)
    # 0/1: accepted/refused; 2 would be a walk inconsistency; a sanitizer abort is != 0..2
    assert proc.returncode in (0, 1), proc.stdout[-2000:] + proc.stderr[-4000:]
    results = {}
    for line in proc.stdout.splitlines():
        code, _name, rest = line.split(" ", 2)
        path = rest.split(": ", 1)[0].split(" ", 1)[0]
        assert "walk-error" not in rest, line
        results[path] = int(code)
    assert set(results) == set(files)

    accepted = sum(1 for c in results.values() if c == 0)
    assert 0 < accepted < len(files), "corruptions should produce both outcomes"
    disagreements, wrong_codes = [], []
    for path, violations in files.items():
        code = results[path]
        if (code != 0) != bool(violations):
            disagreements.append(f"{Path(path).name}: C {code}, validator "
                                 f"{[v.rule for v in violations] or 'accepts'}")
        elif code != 0:
            allowed = set().union(*(expected_codes(v.rule) for v in violations))
            if code not in allowed:
                wrong_codes.append(f"{Path(path).name}: C {code}, expected {sorted(allowed)} "
                                   f"for {[v.rule for v in violations]}")
    assert not disagreements, "\n".join(disagreements[:30])
    assert not wrong_codes, "\n".join(wrong_codes[:30])

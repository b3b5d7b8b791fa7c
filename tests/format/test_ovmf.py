"""The OVMF reader (harness/igvm/ovmf.py) against edk2's layouts, sev-snp-measure's
reader and malformed images."""

from __future__ import annotations

import struct
import subprocess
import sys

import pytest

from harness.errors import HarnessError
from harness.igvm import ovmf
from tests.ovmf_images import IGVM_SECTIONS, RESET_ADDR, SECTIONS, debian_ovmf, synthetic_ovmf


def test_synthetic_image_fields():
    img = ovmf.read(synthetic_ovmf(), "syn.fd")
    assert img.size == 0x40000 and img.base_gpa == (1 << 32) - 0x40000
    assert [e.name for e in img.footer_entries] == [
        "sev-es-reset-block", "sev-secret-block", "sev-metadata-offset", "igvm-metadata-offset"]
    assert img.reset_block.address == RESET_ADDR
    assert (img.reset_block.cs_base, img.reset_block.ip) == (0x800000, 0xB004)
    nonzero = [(b, s, t) for b, s, t in SECTIONS if s]
    assert [(s.gpa, s.size, s.type) for s in img.sev_metadata.sections] == nonzero
    assert img.sev_metadata.skipped == 1
    assert [(s.start, s.size, s.id) for s in img.igvm_metadata.sections] == IGVM_SECTIONS
    assert img.igvm_metadata.param_area.start == 0x812000
    assert img.igvm_metadata.vp_count.start == 0xC0
    assert (img.sev_secret.gpa, img.sev_secret.size) == (0x810000, 0xC00)


def test_image_without_metadata():
    img = ovmf.read(synthetic_ovmf(sev=False, igvm=False, reset=0))
    assert img.sev_metadata is None and img.igvm_metadata is None and img.reset_block is None


def _patch(data: bytes, off: int, fmt: str, value) -> bytes:
    b = bytearray(data)
    struct.pack_into(fmt, b, off, value)
    return bytes(b)


SIZE = 0x40000
TABLE_LEN_AT = SIZE - 0x20 - 16 - 2


def _bad_images():
    good = synthetic_ovmf()
    first_entry_len = TABLE_LEN_AT - 16 - 2  # the reset block entry's length field
    yield "not-ovmf", bytes(SIZE), "not an OVMF image"
    yield "too-small", good[-0x800:], "not an OVMF image"
    yield "table-too-long", _patch(good, TABLE_LEN_AT, "<H", 0xFFFF), "footer entry"
    yield "table-too-short", _patch(good, TABLE_LEN_AT, "<H", 5), "invalid"
    yield "entry-too-long", _patch(good, first_entry_len, "<H", 0x7FF0), "outside the"
    yield "entry-zero", _patch(good, first_entry_len, "<H", 0), "outside the"
    sev_at = SIZE - 0x2000
    yield "sev-count", _patch(good, sev_at + 12, "<I", 0xFFFFFFFF), "declares"
    yield "sev-length", _patch(good, sev_at + 4, "<I", 0x7FFFFFFF), "runs past"
    yield "sev-signature", _patch(good, sev_at, "<4s", b"XSEV"), "signature"
    yield "sev-unaligned", _patch(good, sev_at + 16, "<I", 0x800123), "page aligned"
    yield "sev-past-4g", _patch(good, sev_at + 16, "<I", 0xFFFFF000), "past 4 GiB"
    igvm_at = SIZE - 0x1800
    yield "igvm-mmap-outside", _patch(good, igvm_at + 16 + 12 + 4, "<I", 0x2000), "outside the"
    # the SEV metadata offset pointing before the start of the image
    off_entry = [i for i in range(len(good) - 16) if good[i:i + 16] == ovmf_guid("dc886566-984a-4798-a75e-5585a7bf67cc")][0]
    yield "sev-offset", _patch(good, off_entry - 2 - 4, "<I", 0x7FFFFFFF), "outside the"
    yield "huge", bytes(ovmf.MAX_IMAGE + 0x1000), "larger than"


def ovmf_guid(text: str) -> bytes:
    import uuid
    return uuid.UUID(text).bytes_le


@pytest.mark.parametrize("label,data,needle", list(_bad_images()), ids=lambda v: v if isinstance(v, str) else "")
def test_malformed_images_raise_one_error(label, data, needle):
    with pytest.raises(HarnessError) as ei:
        ovmf.read(data, "bad.fd")
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith("bad.fd: ")
    assert needle in msg


def test_inspect_cli_detects_ovmf_by_content(tmp_path):
    p = tmp_path / "firmware.bin"  # not a .fd name: content decides
    p.write_bytes(synthetic_ovmf())
    r = subprocess.run([sys.executable, "-m", "harness.cli", "inspect", str(p)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "OVMF firmware image" in r.stdout and "SNP_SECRETS" in r.stdout and "PARAM_VP_COUNT" in r.stdout
    bad = tmp_path / "bad.fd"
    bad.write_bytes(_patch(synthetic_ovmf(), TABLE_LEN_AT, "<H", 0xFFFF))
    r = subprocess.run([sys.executable, "-m", "harness.cli", "inspect", str(bad)],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "OVMF footer entry" in r.stderr


@pytest.mark.parametrize("asset", ["ovmf-amdsev", "ovmf-generic", "ovmf-bookworm"])
def test_debian_ovmf_matches_sev_snp_measure(asset):
    """The reader agrees with sev-snp-measure's (sevsnpmeasure/ovmf.py) on Debian's builds."""
    from sevsnpmeasure.ovmf import OVMF
    path = debian_ovmf(asset)
    theirs = OVMF(str(path))
    ours = ovmf.load(path)
    assert ours.base_gpa == theirs.gpa()
    assert ours.reset_block.address == theirs.sev_es_reset_eip()
    want = [(d.gpa, d.size, d.section_type().value) for d in theirs.metadata_items() if d.size]
    assert [(s.gpa, s.size, s.type) for s in ours.snp_sections()] == want


from hypothesis import given, settings, strategies as st  # noqa: E402

_GOOD = synthetic_ovmf()
#: the bytes the reader follows: both metadata blobs and the footer table
_HOT = list(range(SIZE - 0x2000, SIZE - 0x1F00)) + list(range(SIZE - 0x1800, SIZE - 0x1780)) \
    + list(range(SIZE - 0x140, SIZE))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_HOT), st.integers(0, 255)), min_size=1, max_size=8))
def test_mutated_images_parse_or_fail_with_one_error(edits):
    data = bytearray(_GOOD)
    for at, value in edits:
        data[at] = value
    try:
        img = ovmf.read(bytes(data), "m.fd")
    except HarnessError as exc:
        assert "\n" not in str(exc)
        return
    for s in img.snp_sections():  # whatever was accepted is inside the bounds it claims
        assert s.gpa + s.size <= 1 << 32 and s.size % 0x1000 == 0
    for e in img.footer_entries:
        assert 0 <= e.offset < SIZE


def test_guid_is_uuids_mixed_endian_form():
    """ovmf.Guid (no uuid import at start-up) against the standard library's
    uuid.UUID: the same text and bytes_le, both ways, for random GUIDs."""
    import os
    import uuid

    from harness.igvm.ovmf import Guid

    for _ in range(200):
        u = uuid.UUID(bytes=os.urandom(16))
        g = Guid(str(u))
        assert g.bytes_le == u.bytes_le and str(g) == str(u)
        assert Guid(bytes_le=u.bytes_le) == g and hash(Guid(str(u).upper())) == hash(g)

"""igvm-harness inspect / validate: output, exit status (0 valid, 1 invalid,
2 usage or I/O) and one-line errors for bad input."""

import json
import os
import struct
import subprocess
import sys

import pytest

from harness.cli import main
from harness.igvm.builder import IgvmBuilder
from harness.igvm.defs import KVM_VMSA_GPA, PlatformType
from harness.igvm.vmsa import SevEsVmsa


@pytest.fixture
def good(tmp_path):
    b = IgvmBuilder()
    snp = b.platform(PlatformType.SEV_SNP)
    b.pages(0x100000, b"\x90" * 8192)
    b.page(0x102000)
    b.vp_context(KVM_VMSA_GPA, SevEsVmsa(rip=0xFFF0, sev_features=1), mask=snp)
    path = tmp_path / "good.igvm"
    path.write_bytes(b.build())
    return path


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_validate_valid(capsys, good):
    rc, out, err = run(capsys, "validate", good)
    assert rc == 0 and out.strip() == f"{good}: valid IGVM" and err == ""
    rc, out, _ = run(capsys, "validate", "--qemu", "--platform", "sev-snp", good)
    assert rc == 0 and "QEMU lint clean" in out


def test_validate_platform_absent(capsys, good):
    rc, out, _ = run(capsys, "validate", "--platform", "native", good)
    assert rc == 1 and "platform-absent" in out


@pytest.mark.parametrize("damage,rule", [
    (lambda d: d[:len(d) // 2], "total-size-mismatch"),       # truncated
    (lambda d: d[:20] + b"\0\0\0\0" + d[24:], "checksum-mismatch"),
    (lambda d: b"", "file-too-small"),
    (lambda d: os.urandom(4096), "bad-magic"),                # garbage
])
def test_bad_input_is_one_line(capsys, good, tmp_path, damage, rule):
    bad = tmp_path / "vendor.igvm"
    bad.write_bytes(damage(good.read_bytes()))
    rc, out, err = run(capsys, "validate", bad)
    assert rc == 1
    lines = out.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{bad}: invalid IGVM: {rule}: ")
    if rule == "checksum-mismatch":
        assert "header says 0x00000000, computed 0x" in lines[0]
    rc, out, err = run(capsys, "inspect", bad)
    assert rc == 1 and "Traceback" not in out + err


def test_huge_sparse_file(capsys, tmp_path):
    huge = tmp_path / "huge.igvm"
    with open(huge, "wb") as fh:
        fh.truncate(5 << 30)  # sparse 5 GiB of zeros
    rc, out, _ = run(capsys, "validate", huge)
    assert rc == 1 and len(out.splitlines()) == 1 and "bad-magic" in out


def test_io_errors_exit_2(capsys, tmp_path):
    rc, out, err = run(capsys, "validate", tmp_path / "missing.igvm")
    assert rc == 2 and out == "" and err.count("\n") == 1 and "missing.igvm" in err
    rc, _, err = run(capsys, "inspect", tmp_path)
    assert rc == 2 and "is a directory" in err


def test_usage_error_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["validate"])
    assert e.value.code == 2


def test_validate_json(capsys, good, tmp_path):
    bad = tmp_path / "bad.igvm"
    data = bytearray(good.read_bytes())
    # first page data header: fixed 24 + platform 24 -> gpa field at 56
    struct.pack_into("<Q", data, 24 + 24 + 8, 0x100001)
    bad.write_bytes(data)
    rc, out, _ = run(capsys, "validate", "--json", bad)
    doc = json.loads(out)
    assert rc == 1 and doc["valid"] is False
    rules = [v["rule"] for v in doc["violations"]]
    assert "checksum-mismatch" in rules and "gpa-unaligned" in rules
    gpa = [v for v in doc["violations"] if v["rule"] == "gpa-unaligned"][0]
    assert gpa["header_index"] == 1 and gpa["offset"] == 48


def test_inspect_json(capsys, good):
    rc, out, _ = run(capsys, "inspect", "--json", good)
    doc = json.loads(out)
    assert rc == 0 and doc["format_version"] == 1
    assert doc["platforms"][0]["type"] == "SEV_SNP"
    # two data pages coalesce; the zero page is its own range
    assert [(r["gpa"], r["pages"], r["zero"]) for r in doc["page_ranges"]] == [
        (0x100000, 2, False), (0x102000, 1, True)]
    [vp] = doc["vp_contexts"]
    assert vp["kind"] == "vmsa" and vp["fields"]["rip"] == 0xFFF0


def test_inspect_text(capsys, good):
    rc, out, _ = run(capsys, "inspect", good)
    assert rc == 0
    assert "SEV_SNP" in out and "page ranges:" in out and "rip = 0xfff0" in out


def test_entry_point_never_prints_a_traceback(tmp_path):
    bad = tmp_path / "g.igvm"
    bad.write_bytes(b"IGVM" + os.urandom(100))
    exe = os.path.join(os.path.dirname(sys.executable), "igvm-harness")
    p = subprocess.run([exe, "validate", str(bad)], capture_output=True, text=True)
    assert p.returncode == 1 and "Traceback" not in p.stderr + p.stdout
    assert len(p.stdout.splitlines()) == 1

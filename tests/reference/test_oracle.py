"""The reference oracle itself: built from the committed lock, asked in batch, honest about absence."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness import cargo
from harness.errors import HarnessError
from harness.reference import oracle
from tests.libigvm.test_differential import base_native, base_snp

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "harness.cli"]


def test_the_build_record_is_the_locks(oracle_binary):
    rec = oracle.record()
    lock = cargo.lock_packages(ROOT / "tools" / "igvm-oracle" / "Cargo.lock")
    assert rec["igvm"] == lock["igvm"]["version"] and rec["checksum"] == lock["igvm"]["checksum"]
    assert len(rec["checksum"]) == 64  # the registry's SHA-256 of the .crate


def test_one_process_answers_for_many_files_in_order(oracle_binary, tmp_path):
    files = []
    for i, data in enumerate([base_native(), b"not an IGVM file", base_snp()] * 50):
        p = tmp_path / f"{i:03d}.igvm"
        p.write_bytes(data)
        files.append(p)
    answers = oracle.parse(files)
    assert [a["file"] for a in answers] == [str(p) for p in files]
    assert [a["c_api"] for a in answers[:3]] == [0, -16, 0]  # IGVMAPI_INVALID_FIXED_HEADER
    assert answers[1]["any"]["error"] == "InvalidFixedHeader"
    snp = answers[2]
    assert all(snp[p]["ok"] for p in oracle.PLATFORMS)


def test_unreadable_and_absent_files_are_answers_not_crashes(oracle_binary, tmp_path):
    answers = oracle.parse([tmp_path / "absent.igvm", tmp_path])
    assert all("read_error" in a for a in answers)


def test_names_with_a_newline_are_refused():
    with pytest.raises(HarnessError, match="newline"):
        oracle.parse(["a\nb"])


def test_cli_status_and_parse(oracle_binary, tmp_path):
    f = tmp_path / "n.igvm"
    f.write_bytes(base_native())
    st = subprocess.run([*CLI, "oracle", "status", "--json"], capture_output=True, text=True,
                        cwd=ROOT, check=True)
    assert json.loads(st.stdout)["present"] is True
    out = subprocess.run([*CLI, "oracle", "parse", "--compact", str(f)], capture_output=True,
                         text=True, cwd=ROOT, check=True)
    assert json.loads(out.stdout)["c_api"] == 0


def test_status_names_a_missing_cargo(monkeypatch):
    def no_cargo():
        raise cargo.Unavailable("no cargo (a Rust toolchain: rustup's)")

    monkeypatch.setattr(cargo, "require_cargo", no_cargo)
    path, line = oracle.status()
    assert path is None and line.startswith("no reference oracle: no cargo")


def test_measure_explain_shows_the_crate_beside_qemu(oracle_binary, tmp_path):
    """``measure FILE --platform sev-snp --explain``: QEMU's digest, the crate's, the
    harness's replay of the crate's model (equal), and each difference with its source."""
    from harness.igvm.builder import IgvmBuilder
    from harness.igvm.defs import PlatformType

    b = IgvmBuilder()
    b.platform(PlatformType.SEV_SNP)
    b.guest_policy(0x30000)
    b.pages(0x100000, b"x" * 0x3000)
    f = tmp_path / "snp.igvm"
    f.write_bytes(b.build())
    res = subprocess.run([*CLI, "measure", str(f), "--platform", "sev-snp", "--explain", "--json"],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    x = json.loads(res.stdout)
    assert x["oracle"]["digest"] == x["crate_model"] and x["qemu"] != x["crate_model"]
    assert [d["id"] for d in x["differences"]] == ["vmsa"] and not x["unexplained"]
    assert "backends/igvm.c:446" in x["differences"][0]["qemu_source"]
    text = subprocess.run([*CLI, "measure", str(f), "--platform", "sev-snp", "--explain"],
                          capture_output=True, text=True, cwd=ROOT).stdout
    assert "(equal to the crate's)" in text and "[vmsa] VMSA pages" in text
    bad = subprocess.run([*CLI, "measure", str(f), "--platform", "sev", "--explain"],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


def test_corim_requests_stay_in_step_and_errors_are_answers(oracle_binary, tmp_path):
    """One answer per SVN even for a file the crate cannot measure, so that a batch of
    requests maps back; a request's failure is its answer, not the process's."""
    from tests.corim.fixtures import small_snp_file

    good = tmp_path / "snp.igvm"
    good.write_bytes(small_snp_file())
    native = tmp_path / "native.igvm"
    native.write_bytes(base_native())
    # a VBS file with a page of another data type: the crate's VBS measurement asserts
    # NORMAL (igvm 0.5 measurement/vbs.rs: assert_eq!(*data_type, IgvmPageDataType::NORMAL))
    from harness.igvm.builder import IgvmBuilder
    from harness.igvm.defs import PageDataType, PlatformType
    b = IgvmBuilder()
    b.platform(PlatformType.VSM_ISOLATION)
    b.page(0x1000, None, data_type=PageDataType.SECRETS)
    panics = tmp_path / "vbs-secrets.igvm"
    panics.write_bytes(b.build())
    out = oracle.corim_build([(tmp_path / "absent.igvm", "sev-snp", [1, 2, 3]),
                              (native, "sev-snp", [1]), (panics, "vsm", [1, 2]),
                              (good, "sev-snp", [4, 5]), (good, "sev", [1])])
    assert [len(a) for a in out] == [3, 1, 2, 2, 1]
    assert all("error" in a for a in out[0] + out[1] + out[4])
    assert all("panic" in a for a in out[2])
    out = out[:2] + out[3:]
    assert [a["svn"] for a in out[2]] == [4, 5] and out[2][0]["digest"] == out[2][1]["digest"]
    assert "unknown platform" in out[3][0]["error"]
    (read,) = oracle.corim_read([tmp_path / "absent.igvm"])
    assert "error" in read


def test_cli_oracle_corim(oracle_binary, tmp_path):
    from tests.corim.fixtures import small_snp_file

    f = tmp_path / "snp.igvm"
    f.write_bytes(small_snp_file())
    out = subprocess.run([*CLI, "oracle", "corim", "build", str(f), "--svn", "1", "2", "--compact"],
                         capture_output=True, text=True, cwd=ROOT, check=True)
    a, b = (json.loads(x) for x in out.stdout.splitlines())
    assert (a["svn"], b["svn"], a["digest"]) == (1, 2, b["digest"]) and a["corim"] != b["corim"]
    doc = tmp_path / "doc.cbor"
    doc.write_bytes(bytes.fromhex(a["corim"]))
    chk = subprocess.run([*CLI, "oracle", "corim", "check", str(doc), "--evidence", a["digest"],
                          "--compact"], capture_output=True, text=True, cwd=ROOT, check=True)
    assert json.loads(chk.stdout)["appraisal"]["endorsed"][0]["svn"] == {"exact": 1}
    bad = subprocess.run([*CLI, "oracle", "corim", "build", str(tmp_path / "absent"), "--compact"],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 1 and "error" in json.loads(bad.stdout)

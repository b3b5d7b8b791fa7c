"""Every input of issue 13 that crashed or blew a bound, kept as a regression
test: each command gives one bounded answer and exit 1 (or 2 for a usage /
I/O problem) in a fresh process, and its peak memory stays within the file
size + 64 MiB over an idle interpreter running the same command on a tiny
valid file.  Time is not asserted here (benchmarks/test_untrusted_bench.py
measures it); a subprocess timeout only keeps a regression from hanging CI.

The inputs are made in the test (tests/untrusted/hostile.py), never committed.
"""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from tests.untrusted import hostile

MIB = 1 << 20
HANG_GUARD = 120  # seconds: only so that a regression fails instead of hanging


def _cli(cwd, *argv):
    """Run igvm-harness in a child; (rc, stdout, stderr, peak RSS in bytes)."""
    # VmHWM, not ru_maxrss: Linux carries the parent's peak across execve
    # into ru_maxrss (exec_mmap), so a child of a big pytest worker would inherit it
    code = ("import sys\n"
            "from harness.cli import main\n"
            "try:\n    rc = main(sys.argv[1:])\n"
            "except SystemExit as e:\n    rc = e.code\n"
            "sys.stdout.flush()\n"
            "hwm = [ln for ln in open('/proc/self/status') if ln.startswith('VmHWM:')][0]\n"
            "print('PEAK', hwm.split()[1], file=sys.stderr)\n"
            "sys.exit(rc)\n")
    res = subprocess.run([sys.executable, "-c", code, *map(str, argv)], capture_output=True,
                         text=True, timeout=HANG_GUARD, cwd=cwd, stdin=subprocess.DEVNULL)
    err_lines = res.stderr.splitlines()
    peak = int(err_lines[-1].split()[1]) * 1024  # VmHWM is in kB
    return res.returncode, res.stdout, "\n".join(err_lines[:-1]), peak


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """Peak RSS of the same commands on a small valid file."""
    d = tmp_path_factory.mktemp("baseline")
    small = d / "small.igvm"
    small.write_bytes(hostile.parameter_area(0x1000))
    peaks = {}
    for name, argv in COMMANDS.items():
        peaks[name] = _cli(d, *argv(small))[3]
    return peaks


COMMANDS = {
    "validate": lambda f: ["validate", f],
    "inspect": lambda f: ["inspect", f],
    "measure": lambda f: ["measure", f, "--platform", "sev-snp"],
    "certify": lambda f: ["certify", f, "--no-boot", "-q", "--output", "out"],
}


def _within(peak, base, size):
    assert peak <= base + size + 64 * MIB, (
        f"peak {peak / MIB:.0f} MiB over baseline {base / MIB:.0f} MiB + file {size / MIB:.0f} MiB")


@pytest.mark.parametrize("size", [1 << 62, 1 << 40])
@pytest.mark.parametrize("command", ["measure", "certify"])
def test_huge_parameter_area(tmp_path, baseline, command, size):
    """A valid 4 KiB file whose PARAMETER_AREA declares 2^62 / 2^40 bytes."""
    f = tmp_path / "area.igvm"
    f.write_bytes(hostile.parameter_area(size))
    rc, out, err, peak = _cli(tmp_path, *COMMANDS[command](f))
    if command == "measure":
        assert rc == 1 and out == ""
        assert err.count("\n") == 0 and "PARAMETER_AREA 0 declares" in err
        assert f"{size:#x} bytes" in err and "the limit is 0x200000 bytes" in err
        assert "directive 1" in err  # after one page data directive
    else:  # certify reports it as the failed measurement check, the run ends with a verdict
        assert rc == 1 and "Traceback" not in err + out
        assert "PARAMETER_AREA 0 declares" in out
    _within(peak, baseline[command], f.stat().st_size)


def test_parameter_area_at_the_bound_is_measured(tmp_path):
    f = tmp_path / "area.igvm"
    f.write_bytes(hostile.parameter_area(0x200000))
    rc, out, err, _ = _cli(tmp_path, "measure", f, "--platform", "sev-snp")
    assert rc == 0, err
    assert "SEV_SNP launch digest" in out or "launch digest" in out


@pytest.mark.parametrize("command", ["validate", "inspect", "certify"])
def test_relocation_regions_8000(tmp_path, baseline, command):
    f = tmp_path / "reloc.igvm"
    f.write_bytes(hostile.relocation_regions(8000, overlap_last=True))
    rc, out, err, peak = _cli(tmp_path, *COMMANDS[command](f))
    assert rc == 1 and "Traceback" not in err
    assert "relocation-regions-overlap" in out
    _within(peak, baseline[command], f.stat().st_size)


@pytest.fixture(scope="module")
def bad_headers(tmp_path_factory):
    """4 million bad headers: 32 MB, made here (not committed)."""
    f = tmp_path_factory.mktemp("bad") / "bad.igvm"
    f.write_bytes(hostile.bad_headers(4_000_000))
    return f


@pytest.mark.parametrize("command", ["validate", "inspect", "certify"])
def test_four_million_bad_headers(tmp_path, baseline, bad_headers, command):
    from harness.igvm.limits import MAX_VIOLATIONS
    rc, out, err, peak = _cli(tmp_path, *COMMANDS[command](bad_headers))
    assert rc == 1 and "Traceback" not in err
    lines = [ln for ln in out.splitlines() if "invalid IGVM" in ln]
    # hostile.bad_headers(4_000_000): one violation per bad header, all of
    # them counted (the scan reads the whole file), the first N kept
    if command != "certify":
        assert len(lines) == MAX_VIOLATIONS + 1  # the first N, then the summary
        assert all("unknown-header-type" in ln for ln in lines[:-1])
        assert "4000000 violations" in lines[-1]
        assert f"{4_000_000 - MAX_VIOLATIONS} more violations not shown" in lines[-1]
        assert f"header {MAX_VIOLATIONS + 1}," in lines[-1]  # platform header is 0
    else:
        assert "4000000 violation(s)" in out
    _within(peak, baseline[command], bad_headers.stat().st_size)


def test_four_million_bad_headers_json_keeps_the_bound(tmp_path, bad_headers):
    import json
    from harness.igvm.limits import MAX_VIOLATIONS
    rc, out, err, _ = _cli(tmp_path, "validate", "--json", bad_headers)
    doc = json.loads(out)
    assert rc == 1 and len(doc["violations"]) == MAX_VIOLATIONS
    summary = doc["violation_summary"]
    assert summary["truncated"] is True
    assert summary["not_shown"] == 4_000_000 - MAX_VIOLATIONS
    assert summary["total"] == 4_000_000
    assert summary["first_not_shown"]["header_index"] == MAX_VIOLATIONS + 1


@pytest.mark.parametrize("command", ["validate", "inspect", "measure", "certify"])
def test_sparse_5gib_of_zeros(tmp_path, baseline, command):
    f = tmp_path / "zeros.igvm"
    hostile.sparse_zeros(f, 5 << 30)
    rc, out, err, peak = _cli(tmp_path, *COMMANDS[command](f))
    assert rc == 1 and "Traceback" not in err + out
    text = out + err
    assert "bad-magic" in text or "not an IGVM file" in text
    if command == "certify":  # checked before reading: the size bound, in one line
        assert err.count("\n") == 0 and "the limit is 4294967295 bytes" in err
    _within(peak, baseline[command], 0)  # nothing of the file is read


@pytest.mark.parametrize("command", ["validate", "inspect", "measure", "certify"])
def test_unix_socket_is_named_as_one(tmp_path, command):
    path = tmp_path / "s.igvm"
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(path))
        rc, out, err, _ = _cli(tmp_path, *COMMANDS[command](path))
    finally:
        sock.close()
    assert rc == 2 and out == ""
    assert err == f"igvm-harness: {path}: not a regular file (a socket)"


@pytest.mark.parametrize("command", ["measure", "certify"])
def test_vcpus_hex_means_the_same_everywhere(tmp_path, command):
    """`--vcpus 0x10` was accepted by measure and refused by certify."""
    from harness.igvm.limits import vcpus
    assert vcpus("0x10") == 16
    f = tmp_path / "snp.igvm"
    f.write_bytes(hostile.parameter_area(0x1000))
    rc, out, err, _ = _cli(tmp_path, *COMMANDS[command](f), "--vcpus", "0x10")
    assert "usage" not in err and "invalid" not in err.lower(), err
    if command == "measure":
        assert rc == 0 and "vcpus=16" in out


def test_qemu_lint_keeps_the_first_findings_and_counts_the_rest():
    """One finding per unhandled header made 8,001 findings for 8,000 regions
    (and certify's report quadratic); the rest are counted in one finding."""
    from harness.igvm.limits import MAX_VIOLATIONS
    from harness.igvm.qemu_lint import lint
    found = lint(hostile.relocation_regions(8000, overlap_last=True))
    assert len(found) == MAX_VIOLATIONS + 1
    assert all(f.rule == "qemu-unhandled-header" for f in found[:-1])
    last = found[-1]
    assert last.rule == "qemu-lint-truncated" and last.severity == "error"
    total = len(lint(hostile.relocation_regions(8000, overlap_last=True), limit=None))
    assert f"{total - MAX_VIOLATIONS} more finding(s)" in last.message


@pytest.mark.parametrize("gpa, refused", [((1 << 52) - 0x1000, False), (1 << 52, True),
                                          ((1 << 64) - 0x1000, True)])
def test_pages_beyond_the_guest_physical_address_width(tmp_path, gpa, refused):
    """AMD APM vol. 2: guest physical addresses are at most 52 bits wide; a page
    ending above 2^52 is refused naming the directive and the limit."""
    from harness.igvm.builder import IgvmBuilder
    from harness.igvm.defs import PlatformType
    b = IgvmBuilder()
    b.platform(PlatformType.SEV_SNP)
    b.page(gpa, b"\x01")
    f = tmp_path / "high.igvm"
    f.write_bytes(b.build())
    rc, out, err, _ = _cli(tmp_path, "measure", f, "--platform", "sev-snp")
    if refused:
        assert rc == 1 and err.count("\n") == 0
        assert err.startswith("igvm-harness: directive 0: PAGE_DATA [")
        assert "the limit is 0x10000000000000 (52-bit guest physical addresses" in err
    else:
        assert rc == 0, err

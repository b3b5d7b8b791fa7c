"""The CI skip check (.ci/skips.py, .ci/skip-allow.toml): the reasons the
harness really words for the allowed classes pass, the reasons of a missing
set-up step do not, and a real pytest run's JUnit XML is read correctly."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ALLOW = REPO / ".ci" / "skip-allow.toml"


def _load(name: str, path: Path):
    """A module from a file that is not on sys.path (.ci/, a suite's conftest)."""
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


skips = _load("igvm_ci_skips", REPO / ".ci" / "skips.py")
ALLOWED = skips.load_allow(ALLOW)


def _allowed(reason: str) -> bool:
    return skips.classify(reason, ALLOWED) is not None


def test_every_entry_has_a_reason_and_compiles():
    assert len(ALLOWED) >= 5
    for a in ALLOWED:
        assert a.why and a.pattern.pattern


def test_reasons_the_harness_words_for_the_allowed_classes(qemu_caps, qemu_binary):
    from harness.matrix.cells import AbsentSyntax
    here = []
    if not Path("/dev/sev").exists():          # hardware not present, in the probe's words
        here.append(qemu_caps.missing("sev"))
        here.append(qemu_caps.missing("sev-snp"))
    if qemu_caps.missing("igvm-file"):          # the syntax this QEMU lacks, collapsed
        here.append(AbsentSyntax("sev-guest", qemu_caps.missing("igvm-file"), 269,
                                 ("sev",)).message)
    here += [
        "reached hardware boundary (tcg-fallback): QEMU exited 1: qemu-system-x86_64: "
        "accelerator does not support confidential guest sev-guest",
        "no vendor image given (--igvm FILE)",  # harness/plugin.py vendor_igvm
        "this host's KVM cannot run OVMF (emulation failure in OVMF SEC code): "
        "firmware cases run under TCG",
    ]
    here.append(_load("igvm_certify_conftest", REPO / "suites" / "certify" / "conftest.py").NO_IMAGE)
    for reason in here:
        assert reason and _allowed(reason), reason


@pytest.mark.parametrize("reason", [
    "no QEMU source downloaded in /root/.cache/igvm-harness (run `igvm-harness qemu build`, "
    "or set $IGVM_HARNESS_QEMU_SRC)",
    "no stock Debian QEMU at /usr/bin/qemu-system-x86_64: run ./setup.sh (installs qemu-system-x86)",
    "no QEMU with igvm-cfg found (no QEMU-under-test built in /x): run ./setup.sh",
    "QEMU 7.2.22 at /usr/bin/qemu-system-x86_64 lacks igvm-cfg",
    "firmware 'ovmf-amdsev' is not installed: run `igvm-harness firmware fetch`",
    "guest payloads unavailable: no as on PATH",
    "benchmark: run with --benchmark-only",
    "KVM not usable: /dev/kvm: permission denied",
])
def test_missing_set_up_is_not_allowed(reason):
    assert not _allowed(reason)


INNER = textwrap.dedent("""
    import pytest

    @pytest.mark.parametrize("n", range(3))
    def test_boundary(n):
        pytest.skip("reached hardware boundary (tcg-fallback): stopped")

    def test_no_sev():
        pytest.skip("no /dev/sev (host cannot run SEV guests)")

    def test_forgot_setup():
        pytest.skip("no stock Debian QEMU at /usr/bin/qemu-system-x86_64: run ./setup.sh")

    @pytest.mark.xfail(reason="known deviation: not a skip")
    def test_deviation():
        assert False

    def test_passes():
        pass
""")


def _junit(tmp_path: Path, body: str) -> Path:
    (tmp_path / "test_inner.py").write_text(body)
    junit = tmp_path / "junit.xml"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                    "-p", "no:xdist", "--rootdir", str(tmp_path), f"--junitxml={junit}",
                    str(tmp_path / "test_inner.py")], cwd=tmp_path, capture_output=True,
                   timeout=120)
    return junit


def test_junit_of_a_real_run(tmp_path):
    junit = _junit(tmp_path, INNER)
    reasons = skips.skip_reasons(junit)
    assert reasons == Counter({"reached hardware boundary (tcg-fallback): stopped": 3,
                               "no /dev/sev (host cannot run SEV guests)": 1,
                               "no stock Debian QEMU at /usr/bin/qemu-system-x86_64: "
                               "run ./setup.sh": 1})
    res = subprocess.run([sys.executable, str(REPO / ".ci" / "skips.py"), str(junit)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1, res.stdout + res.stderr
    out = res.stdout
    assert out.startswith("skips: 5 in 3 distinct reasons")
    assert "NOT ALLOWED (1 skips" in out
    assert out.index("NOT ALLOWED") < out.index("no stock Debian QEMU")
    assert "     3  reached hardware boundary" in out


def test_all_allowed_is_exit_0_and_bad_input_exit_2(tmp_path):
    junit = _junit(tmp_path, INNER.replace("def test_forgot_setup", "def _forgot_setup"))
    script = [sys.executable, str(REPO / ".ci" / "skips.py")]
    assert subprocess.run([*script, str(junit)], capture_output=True).returncode == 0
    bad = subprocess.run([*script, str(tmp_path / "absent.xml")], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("skips: ") and "Traceback" not in bad.stderr


def test_a_claimed_absence_is_checked(tmp_path):
    """An entry with only_if_absent admits its skip only while the path is missing."""
    allow = tmp_path / "allow.toml"
    present = tmp_path / "here"
    present.mkdir()
    allow.write_text(textwrap.dedent(f"""
        [[allow]]
        why = "vectors absent"
        pattern = '^vectors absent'
        only_if_absent = "{present}"
        [[allow]]
        why = "other absent"
        pattern = '^other absent'
        only_if_absent = "{tmp_path / 'missing'}"
    """))
    entries = skips.load_allow(allow)
    assert skips.classify("vectors absent: no x", entries) is None  # the path exists
    assert skips.classify("other absent: no y", entries) is not None


def test_the_crates_io_skip_holds_only_where_crates_io_is_unreachable(monkeypatch):
    """The reference oracle's skip (tests/reference/conftest.py, the reason
    harness.cargo.fetch words) is admitted only on a host that really cannot reach
    crates.io: CI reaches it, so there the oracle's tests must run."""
    from harness import cargo

    reason = "no reference oracle: " + str(cargo.Unavailable(
        "crates.io unreachable for igvm-oracle (cargo fetch: error: failed to get `igvm`)"))
    monkeypatch.setattr(skips, "_REACHABLE", {"https://index.crates.io/config.json": False})
    assert _allowed(reason)
    assert _allowed("no igvm crate library: no cargo (a Rust toolchain: rustup, or Debian's "
                    "cargo package)")
    monkeypatch.setattr(skips, "_REACHABLE", {"https://index.crates.io/config.json": True})
    assert not _allowed(reason)
    assert not _allowed("reference oracle not built (run `igvm-harness oracle build`; "
                        "./setup.sh does): /x is missing")

"""Probe against real QEMU binaries: the harness's build and any on PATH.

Expected values come from QEMU's source (qapi/qom.json, hw/i386/pc.c) and
from the host itself (os.access on /dev/kvm), not from probe output.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from harness.qemu import build, probe
from harness.qemu.source import upstream_tuple
from harness.qemu.pids import pid_alive  # a zombie counts as gone

BUILT = build.current_binary()
KVM_OK = os.access("/dev/kvm", os.R_OK | os.W_OK)

needs_built = pytest.mark.skipif(
    BUILT is None, reason=f"no QEMU-under-test with igvm-cfg built in {build.cache_root()} "
                          "(run `igvm-harness qemu build`)")

# qapi/qom.json (QEMU 10.2): SevCommonProperties + SevGuestProperties
SEV_GUEST_PROPS = {"sev-device", "cbitpos", "reduced-phys-bits", "kernel-hashes",
                   "dh-cert-file", "session-file", "policy", "handle", "legacy-vm-type"}
# qapi/qom.json: SevCommonProperties + SevSnpGuestProperties
SEV_SNP_PROPS = {"sev-device", "cbitpos", "reduced-phys-bits", "kernel-hashes", "policy",
                 "guest-visible-workarounds", "id-block", "id-auth", "author-key-enabled",
                 "host-data", "vcek-disabled"}


@needs_built
def test_built_qemu_has_igvm(tmp_path):
    caps = probe.probe(BUILT, cache=tmp_path, use_cache=False)
    assert caps.igvm_cfg_object, caps.missing("igvm-cfg")
    # hw/i386/pc.c: pc_machine_class_init adds the "igvm-cfg" link to both machines
    assert caps.machine_igvm_cfg == {"q35": True, "pc": True}
    assert caps.missing("igvm-cfg") is None
    assert caps.version and tuple(map(int, caps.version.split("."))) >= (10, 1)
    assert SEV_GUEST_PROPS <= set(caps.sev_types["sev-guest"])
    assert SEV_SNP_PROPS <= set(caps.sev_types["sev-snp-guest"])
    # upstream dropped the early proposal's igvm-file on sev-guest
    assert not caps.early_igvm_file
    assert caps.accels["tcg"].usable, caps.accels["tcg"].reason
    assert caps.accels["kvm"].usable == KVM_OK, caps.accels["kvm"].reason


def test_stock_debian_qemu(tmp_path, stock_qemu):
    """Debian's qemu-system-x86 (set-up installs it): the version the package
    manager records, and no igvm-cfg before 10.1."""
    caps = probe.probe(stock_qemu, cache=tmp_path, use_cache=False)
    out = subprocess.run([stock_qemu, "--version"], capture_output=True, text=True).stdout
    assert caps.version and caps.version in out
    pkg = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "qemu-system-x86"],
                         capture_output=True, text=True).stdout
    want = upstream_tuple(pkg)
    assert want and tuple(map(int, caps.version.split(".")))[:len(want)] == want, (pkg, caps.version)
    major_minor = tuple(map(int, caps.version.split(".")[:2]))
    if major_minor < (10, 1):  # no backends/igvm-cfg.c before 10.1
        assert not caps.igvm_cfg_object
        assert caps.missing("igvm-cfg") == (f"QEMU {caps.version} at "
                                            f"{stock_qemu} lacks igvm-cfg")
    assert caps.host.dev_kvm == KVM_OK
    assert caps.host.dev_sev == os.path.exists("/dev/sev")
    if not os.path.exists("/dev/sev"):
        assert caps.missing("sev") == "no /dev/sev (host cannot run SEV guests)"
        assert caps.sev_capabilities is None and "not queried" in caps.sev_capabilities_note
    json.dumps(caps.to_json())  # serialisable


def test_probe_cache_is_keyed_by_mtime(tmp_path, stock_qemu):
    copy = tmp_path / "qemu-copy"
    shutil.copy2(stock_qemu, copy)
    cache = tmp_path / "cache"
    a = probe.probe(copy, cache=cache)
    files = list((cache / "probe").glob("*.json"))
    assert len(files) == 1
    b = probe.probe(copy, cache=cache)
    assert b == a
    st = copy.stat()
    os.utime(copy, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    probe.probe(copy, cache=cache)
    assert len(list((cache / "probe").glob("*.json"))) == 2


def test_not_qemu_is_one_clear_error(tmp_path):
    fake = tmp_path / "qemu-system-x86_64"
    fake.write_text("#!/bin/sh\necho hello\n")
    fake.chmod(0o755)
    with pytest.raises(probe.HarnessError, match="is not QEMU"):
        probe.probe(fake, cache=tmp_path / "c")
    with pytest.raises(probe.HarnessError, match="does not exist"):
        probe.probe(tmp_path / "absent", cache=tmp_path / "c")


def test_cpuid_leaf_decoding_follows_the_apm():
    # AMD64 APM vol. 3, E.4.17 Fn8000_001F: EAX bit0 SME, bit1 SEV, bit3 SEV-ES,
    # bit4 SEV-SNP; EBX[5:0] C-bit position, EBX[11:6] physical address reduction;
    # ECX number of encrypted guests; EDX minimum SEV ASID.
    eax = (1 << 0) | (1 << 1) | (1 << 3) | (1 << 4)
    ebx = 51 | (1 << 6)
    d = probe.decode_sev_leaf((eax, ebx, 509, 100))
    assert d == {"sme": True, "sev": True, "sev_es": True, "sev_snp": True, "cbitpos": 51,
                 "phys_addr_reduction": 1, "num_encrypted_guests": 509, "min_sev_asid": 100}
    assert probe.decode_sev_leaf((0b10, 47, 0, 0))["sev_es"] is False


def test_missing_wording_for_a_synthetic_sev_host():
    # A mock of an SEV-capable host (none exists here), to check the wording only.
    host = probe.HostSev(dev_sev=True, dev_kvm=True,
                         kvm_amd={"sev": "Y", "sev_es": "Y", "sev_snp": "N"})
    caps = probe.Capabilities(
        qemu="/q", version="10.2.2", version_line="", objects=["sev-guest"],
        igvm_cfg_object=True, machine_igvm_cfg={"q35": True, "pc": False},
        sev_types={"sev-guest": ["policy"], "sev-snp-guest": None}, early_igvm_file=False,
        accels={"kvm": probe.Accel(True, True), "tcg": probe.Accel(False, False)}, host=host)
    assert caps.missing("sev") is None and caps.missing("sev-es") is None
    assert caps.missing("sev-snp") == "kvm_amd parameter sev_snp is 'N'"
    assert caps.missing("tcg") == "QEMU 10.2.2 at /q has no TCG accelerator"
    assert caps.missing("machine-igvm-cfg:pc") == "QEMU 10.2.2 at /q: machine pc lacks the igvm-cfg property"
    assert caps.missing("igvm-file").startswith("QEMU 10.2.2 at /q lacks the early syntax")
    assert probe.Capabilities.from_json(json.loads(json.dumps(caps.to_json()))) == caps
    with pytest.raises(probe.HarnessError, match="unknown capability"):
        caps.missing("warp-drive")


def test_cli_probe_json_parses(stock_qemu):
    q = str(BUILT or stock_qemu)
    res = subprocess.run([sys.executable, "-m", "harness.cli", "qemu", "probe", "--qemu", q,
                          "--json"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["qemu"] == os.path.abspath(q)
    assert set(data["accels"]) == {"kvm", "tcg"}
    assert data["host"]["dev_sev"] == os.path.exists("/dev/sev")


def test_cli_bad_input_is_one_line(tmp_path):
    for argv in (["qemu", "probe", "--qemu", str(tmp_path / "nope")],
                 ["qemu", "build", "--source", "fedora:42"],
                 ["qemu", "path", "--qemu", str(tmp_path / "nope")]):
        res = subprocess.run([sys.executable, "-m", "harness.cli", *argv], capture_output=True,
                             text=True, timeout=60)
        assert res.returncode == 2, (argv, res.stderr)
        assert res.stderr.startswith("igvm-harness: ") and res.stderr.count("\n") == 1, res.stderr
        assert "Traceback" not in res.stderr


def test_unexecutable_binary_is_one_clear_error(tmp_path):
    """An executable file the kernel cannot run (ENOEXEC: no ELF header, no
    shebang) is a one-line error, not an OSError traceback."""
    fake = tmp_path / "qemu-system-x86_64"
    fake.write_bytes(b"IGVM\x00\x01not a program")
    fake.chmod(0o755)
    with pytest.raises(probe.HarnessError, match=r"cannot run .*Exec format error"):
        probe.probe(fake, cache=tmp_path / "c")
    res = subprocess.run([sys.executable, "-m", "harness.cli", "qemu", "probe", "--qemu",
                          str(fake)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.startswith("igvm-harness: cannot run ") and res.stderr.count("\n") == 1


def test_timed_out_helper_leaves_no_process(tmp_path):
    """A wrapper that starts a child and hangs: on timeout the whole session
    goes, not just the wrapper (the child would otherwise be orphaned)."""
    pidfile = tmp_path / "child.pid"
    fake = tmp_path / "qemu-wrapper"
    fake.write_text(f"#!/bin/sh\nsleep 300 &\necho $! > {pidfile}\nwait\n")
    fake.chmod(0o755)
    res = probe._run(str(fake), ["--version"], timeout=1.0)
    assert res.returncode == -9 and res.stderr == "timed out"
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while pid_alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(child), "the wrapper's child outlived the probe"



"""Fixtures of the real-firmware suite: Debian's OVMF builds (harness.assets,
fetched by set-up), their IGVM wraps (harness.igvm.wrap_ovmf), the Linux
guest (Debian's kernel + the harness initrd) and boots watched for a console
marker (harness.qemu.runner.run ``until``).

Every test that uses an asset names it in the report: a JUnit ``asset``
property (package, version, SHA-256) per asset.  A missing asset skips with
harness.assets' own message (``... run `igvm-harness firmware fetch```).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from harness.guests.firmware import ANSWERS, SETTLED

#: Deadline to the settled boot manager under TCG: 2-6 s idle, bookworm's
#: shell waits 5 s for startup.nsh; a loaded 2-core machine is several
#: times slower.
FIRMWARE_TIMEOUT = 120.0
#: Kernel command line: COM1 console; efi=debug prints the EFI memory map
#: (arch/x86/platform/efi/efi.c efi_print_memmap); panic=-1 reboots at once
#: on a panic, which -no-reboot turns into QEMU's exit; cryptomgr.notests
#: skips the crypto API's self-tests of every algorithm the kernel
#: registers (crypto/algboss.c cryptomgr_schedule_test; the parameter is
#: crypto/testmgr.c's "notests"), about 1.2 of a Debian kernel's 5 s of
#: TCG boot (initcall_debug: crypto_algapi_init) and nothing these tests read.
LINUX_APPEND = "console=ttyS0 efi=debug panic=-1 cryptomgr.notests"


#: Builds that boot ``-kernel`` only against SEV kernel hashes: the AmdSev
#: build links BlobVerifierLibSevHashes (OvmfPkg/AmdSev/AmdSevX64.dsc), which
#: refuses a blob when the firmware's hashes table is empty
#: (BlobVerifierSevHashes.c VerifyBlob: EFI_ACCESS_DENIED); QEMU fills that
#: table only for an SEV guest with kernel-hashes=on (target/i386/sev.c
#: sev_add_kernel_loader_hashes), and not at all with IGVM.
VERIFIES_KERNEL = frozenset({"ovmf-amdsev"})


@dataclass
class Firmware:
    """One installed OVMF build and its wraps (cached per session)."""

    name: str
    info: object                  # harness.assets.AssetInfo
    image: object                 # harness.igvm.ovmf.OvmfImage
    wrap_dir: Path
    _wraps: dict = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.info.path

    @property
    def verifies_kernel(self) -> bool:
        return self.name in VERIFIES_KERNEL

    def wrap(self, platforms=("native",), vcpus: int = 1, **opts) -> Path:
        """The IGVM wrap for ``platforms`` (written once per session)."""
        from harness.igvm import wrap_ovmf
        key = (tuple(platforms), vcpus, tuple(sorted(opts.items())))
        if key not in self._wraps:
            data = wrap_ovmf.wrap(self.image, tuple(platforms), vcpus, **opts)
            tag = "-".join(platforms) + f"-{vcpus}vp" + "".join(f"-{k}={v}" for k, v in sorted(opts.items()))
            path = self.wrap_dir / f"{self.name}-{tag}.igvm"
            path.write_bytes(data)
            self._wraps[key] = path
        return self._wraps[key]


@dataclass
class LinuxGuest:
    kernel: object                # AssetInfo of the kernel
    busybox: object               # AssetInfo of busybox
    initrd: Path
    append: str = LINUX_APPEND

    def args(self) -> list[str]:
        return ["-kernel", str(self.kernel.path), "-initrd", str(self.initrd),
                "-append", self.append]

    def hashed_wrap(self, fw: "Firmware", smp: int = 1, cmdline: str | None = None,
                    platforms=("native",)) -> Path:
        """The wrap plus the SEV kernel hashes table of this kernel, initrd
        and command line (harness/igvm/sev_hashes.py), for builds that
        verify ``-kernel`` blobs."""
        from harness.igvm.sev_hashes import add_hash_table
        cmdline = self.append if cmdline is None else cmdline
        key = ("hashes", tuple(platforms), smp, cmdline)
        if key not in fw._wraps:
            data = add_hash_table(fw.wrap(platforms, smp).read_bytes(), fw.image,
                                  self.kernel.path.read_bytes(), self.initrd.read_bytes(),
                                  cmdline)
            path = fw.wrap_dir / f"{fw.name}-{'-'.join(platforms)}-{smp}vp-hashes-{len(fw._wraps)}.igvm"
            path.write_bytes(data)
            fw._wraps[key] = path
        return fw._wraps[key]

    def wrap_for(self, fw: "Firmware", platform: str = "native", smp: int = 1) -> Path:
        """The wrap a Linux boot of this guest uses: with the hashes table
        where the build verifies -kernel (so even a native boot is measured
        direct boot), plain otherwise."""
        if fw.verifies_kernel:
            return self.hashed_wrap(fw, smp, platforms=(platform,))
        return fw.wrap((platform,), smp)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "firmware(*names): run only on these OVMF assets"
                            " (default: every build harness.assets knows)")
    config.addinivalue_line("markers", "shares_boot(name): the test reads a boot record"
                            " (harness.qemu.records) other tests of the same name and OVMF"
                            " build read too: they run in one pytest-xdist worker")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``shares_boot(name)`` -> ``xdist_group("name:<OVMF build>")``: the
    checks that read one boot go to the worker that made it (before
    pytest-xdist turns the groups into scheduling units)."""
    for item in items:
        mark = item.get_closest_marker("shares_boot")
        if mark is None:
            continue
        params = getattr(getattr(item, "callspec", None), "params", {})
        item.add_marker(pytest.mark.xdist_group(f"{mark.args[0]}:{params.get('fw', '-')}"))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``fw`` runs once per OVMF build of harness.assets (installed or not:
    a missing one skips with the fetch hint), or per ``firmware(...)`` name."""
    if "fw" in metafunc.fixturenames and not any(
            "fw" in str(m.args[0] if m.args else m.kwargs.get("argnames", ""))
            for m in metafunc.definition.iter_markers("parametrize")):
        from harness import assets
        names = assets.firmware_names()
        mark = metafunc.definition.get_closest_marker("firmware")
        if mark is not None:
            names = tuple(n for n in names if n in mark.args)
        metafunc.parametrize("fw", names, indirect=True, scope="session")


def _asset(name: str):
    from harness import assets
    try:
        return assets.info(name)
    except assets.AssetMissing as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def fw(request: pytest.FixtureRequest, tmp_path_factory) -> Firmware:
    from harness.errors import HarnessError
    from harness.igvm import ovmf
    info = _asset(request.param)
    try:
        image = ovmf.load(info.path)
    except HarnessError as exc:
        pytest.fail(f"{info.describe()}: {exc}", pytrace=False)
    return Firmware(request.param, info, image, tmp_path_factory.mktemp(f"wraps-{request.param}"))


@pytest.fixture(scope="session")
def linux_guest() -> LinuxGuest:
    from harness.guests.initrd import build_initrd
    kernel, busybox = _asset("linux"), _asset("busybox")
    return LinuxGuest(kernel, busybox, build_initrd(busybox.path))


@pytest.fixture(scope="session")
def boot_disk(linux_guest):
    """``(loader AssetInfo, disk image)``: Debian's systemd-boot, kernel and the
    harness initrd on a FAT disk (harness/guests/boot_disk.py), with the
    ``-kernel`` boots' command line, so both paths hand the kernel the same options."""
    from harness.guests.boot_disk import build_boot_disk
    loader = _asset("systemd-boot")
    return loader, build_boot_disk(loader.path, linux_guest.kernel.path, linux_guest.initrd,
                                   linux_guest.append)


@pytest.fixture
def note(request: pytest.FixtureRequest) -> Callable[[str, object], None]:
    """``note(name, value)``: a user property of the test (JUnit XML
    property; what pytest's record_property does, without its warning
    under junit_family xunit2)."""
    return lambda name, value: request.node.user_properties.append((name, value))


@pytest.fixture(autouse=True)
def _name_assets(request: pytest.FixtureRequest, note) -> None:
    """Name every asset the test ran in its reports: JUnit ``asset``
    properties, and the evidence details of the JSON/HTML report
    (harness.report.pytest_collect reads ``igvm_check``)."""
    described = []
    for fixture in ("fw", "linux_guest"):
        if fixture not in request.fixturenames:
            continue
        value = request.getfixturevalue(fixture)
        infos = [value.info] if fixture == "fw" else [value.kernel, value.busybox]
        for info in infos:
            note("asset", info.describe())
            described.append(info.describe())
    if described:
        request.node.user_properties.append(
            ("igvm_check", {"evidence": {"details": {"assets": described}}}))


def _progress(config: pytest.Config, label: str):
    """Progress lines on the terminal for long boots (``-v``, not under
    xdist workers, whose output nobody sees)."""
    if hasattr(config, "workerinput") or config.option.verbose < 1:
        return None
    tr = config.pluginmanager.get_plugin("terminalreporter")
    cap = config.pluginmanager.get_plugin("capturemanager")
    if tr is None or cap is None:
        return None

    def note(t: float, line: str) -> None:
        with cap.global_and_fixture_disabled():
            tr.write_line(f"    [{label} {t:5.1f} s] {line}")
    return note


@pytest.fixture
def fw_boot(request: pytest.FixtureRequest, qemu_binary: str, new_run_dir,
            boot_records) -> Callable:
    """``fw_boot(igvm=PATH | bios=PATH, **kw) -> Outcome``: the record of one
    QEMU run watched for ``marker`` (default: the settled boot manager;
    the firmware's countdowns answered as a user would: ANSWERS;
    ``Outcome.matched`` / ``matched_at``, ``first_at(regex)`` for any other
    line).  A boot with the same command line, file and watch that another
    check of this session already made is not made again: its record is
    returned (harness.qemu.records) and its logs are attached to this test
    too.  Logs in the tmp_path of the test that ran it, like every harness
    boot."""
    from harness.plugin import _RUNS_KEY
    from harness.qemu.cmdline import QemuCommand

    def _boot(*, igvm=None, bios=None, accel: str = "tcg", smp=1, memory="256M",
              marker=SETTLED, stop: bool = True, fail=None, timeout: float = FIRMWARE_TIMEOUT,
              confidential=None, extra=(), label: str = "", answers=ANSWERS):
        cmd = QemuCommand(qemu_binary, accel=accel, memory=memory, smp=smp,
                          igvm=None if igvm is None else str(igvm),
                          bios=None if bios is None else str(bios),
                          confidential=confidential, extra=list(extra))
        out = boot_records.run(cmd, new_run_dir, timeout, until=marker, stop=stop, fail=fail,
                               progress=_progress(request.config, label or request.node.name),
                               answers=answers)
        runs = request.node.stash.setdefault(_RUNS_KEY, [])
        if out.run_dir is not None and out.run_dir not in runs:
            runs.append(out.run_dir)        # a shared record: its logs belong to this check too
        return out
    return _boot


def _settled(run) -> list[str]:
    """The boot-manager lines of ``run`` up to the settling line, asserting it settled."""
    import re

    from harness.guests.firmware import boot_manager_lines
    from harness.qemu.outcome import Status
    assert run.matched is not None, f"{run.summary()}\nconsole tail:\n{run.tail(8)}"
    assert run.status is Status.BOOTED, run.summary()
    lines = boot_manager_lines(run.console)
    last = next((i for i, l in enumerate(lines) if re.search(SETTLED, l)), None)
    assert last is not None, lines
    # Up to the settling line: QEMU is quit as soon as it is seen, so what
    # follows it (e.g. "Press any key ...") may or may not have been read.
    return lines[:last + 1]


@pytest.fixture
def settled() -> Callable:
    """``settled(run) -> lines``: a boot's boot-manager lines, which two boots of
    the same firmware must share (harness/guests/firmware.py cites them)."""
    return _settled


# --------------------------------------------------- KVM and OVMF (once)
_KVM_OVMF: dict[str, str | None] = {}


def kvm_ovmf_missing(qemu_binary: str, fw: Firmware, log_dir: Path) -> str | None:
    """Why this host's KVM cannot run OVMF, or None -- found by trying once
    per session: the native wrap under KVM must reach the boot manager."""
    if qemu_binary in _KVM_OVMF:
        return _KVM_OVMF[qemu_binary]
    from harness.qemu import runner
    from harness.qemu.cmdline import QemuCommand
    cmd = QemuCommand(qemu_binary, accel="kvm", memory="256M", igvm=str(fw.wrap()))
    out = runner.run(cmd, log_dir, 60.0, until=SETTLED)
    reason = None
    if out.matched is None:
        # One stable sentence (skips are grouped by text); the details
        # (firmware, RIP, register dump) stay in the probe's stderr.log.
        stderr = (log_dir / "stderr.log").read_text("utf-8", "replace")
        what = ("KVM internal error, emulation failure" if "emulation failure" in stderr
                else out.error or out.status.value)
        reason = (f"this host's KVM cannot run OVMF ({what} before the boot manager,"
                  " tried once per session); firmware cases run under TCG")
    _KVM_OVMF[qemu_binary] = reason
    return reason


@pytest.fixture
def fw_accel(accel: str, qemu_binary: str, fw: Firmware, tmp_path_factory) -> str:
    """The accelerator of a firmware boot: ``accel``, and for KVM only
    where this host's KVM runs OVMF (else skip, naming why)."""
    if accel == "kvm":
        why = kvm_ovmf_missing(qemu_binary, fw, tmp_path_factory.mktemp("kvm-ovmf-probe"))
        if why:
            pytest.skip(why)
    return accel


# ----------------------------------------------- confidential platforms
#: C-bit position and reduced physical bits under TCG, where nothing checks
#: them (the matrix uses the same: harness/matrix/recipes.py DEFAULT_CBIT).
TCG_CBIT, TCG_REDUCED = 51, 1


@pytest.fixture(scope="session")
def expect_table():
    """The expectation data (harness/expect/data): platforms' objects and
    hardware boundaries, the malformed-file cases."""
    from harness.expect.table import load
    return load()


def confidential_guest(table, platform: str, caps, hardware: bool, **properties):
    """The ``sev-guest`` / ``sev-snp-guest`` object of ``platform`` as the
    expectation data defines it; on SEV hardware with the host's C-bit
    (CPUID 0x8000001F EBX[5:0], [11:6]: target/i386/sev.c checks them)."""
    from harness.qemu.cmdline import ConfidentialGuest
    p = table.platforms[platform]
    props = dict(p.properties)
    policy = int(props.pop("policy"), 0) if "policy" in props else None
    cbit, reduced = TCG_CBIT, TCG_REDUCED
    cpuid = getattr(getattr(caps, "host", None), "cpuid", None) or {}
    if hardware and cpuid.get("cbitpos"):
        cbit, reduced = int(cpuid["cbitpos"]), int(cpuid.get("phys_addr_reduction") or 1)
    props.update(properties)
    return ConfidentialGuest(type=p.object_type, policy=policy, cbitpos=cbit,
                             reduced_phys_bits=reduced, properties=props)


@pytest.fixture
def cgs_for(expect_table, qemu_caps) -> Callable:
    """``cgs_for(platform, hardware, **properties) -> ConfidentialGuest``."""
    return lambda platform, hardware, **props: confidential_guest(
        expect_table, platform, qemu_caps, hardware, **props)


#: Deadline of a Linux boot through OVMF under TCG (25-40 s idle; a loaded
#: 2-core machine takes several times that).
LINUX_TIMEOUT = 360.0


@pytest.fixture
def linux_boot(fw_boot, linux_guest) -> Callable:
    """``linux_boot(igvm=... | bios=..., **kw) -> (Outcome, LinuxReport)``:
    Debian's kernel and the harness initrd through the firmware, until the
    initrd's ``IGVMT done`` and QEMU's exit (the guest powers off)."""
    from harness.guests import linux
    from harness.guests.firmware import LINUX_DONE, LINUX_PANIC
    from harness.qemu.outcome import Status

    def _boot(**kw):
        kw.setdefault("timeout", LINUX_TIMEOUT)
        out = fw_boot(marker=LINUX_DONE, stop=False, fail=LINUX_PANIC,
                      extra=linux_guest.args(), **kw)
        assert out.matched is not None, f"{out.summary()}\nconsole tail:\n{out.tail(15)}"
        assert out.status is Status.BOOTED and out.exit_code == 0, out.summary()
        rep = linux.parse(out.report)
        assert rep.kernel in linux_guest.kernel.file    # boot/vmlinuz-<release> of the package
        return out, rep
    return _boot

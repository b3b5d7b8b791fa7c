"""The boot check against the real QEMU under test (skips name what is missing)."""

from __future__ import annotations

import pytest

from harness.certify import profile
from harness.qemu import discover, probe
from harness.igvm.defs import PlatformType

from . import images


@pytest.fixture(scope="module")
def qemu():
    found, notes = discover.find(None)
    path = found.path if found else None
    if path is None:
        pytest.skip("no QEMU with IGVM: " + "; ".join(notes))
    caps = probe.probe(path)
    for cap in ("igvm-cfg", "tcg"):
        if caps.missing(cap):
            pytest.skip(caps.missing(cap))
    return path


def _boot(tmp_path, image, platform, qemu, accel="tcg", timeout=20, expect=None):
    target = profile.prepare(image, platform, qemu=qemu, accel=accel, boot_timeout=timeout,
                             workdir=tmp_path / "work", expect_console=expect)
    step = next(p for p in profile.plan(target) if p.id == f"{platform}.boot")
    check, _ = profile.run_check(target, step)
    return check


#: What OVMF's terminal driver sends on the way to the shell (edk2
#: TerminalDxe: ESC[2J clear, ESC[row;colH with two-digit fields, SGR
#: colours, cursor off/on), with the shell's banner and prompt
#: (ShellPkg/Application/Shell/Shell.c) and a stray BEL and backspace.
OVMF_SCREEN = (b"\x1b[2J\x1b[01;01H\x1b[=3h\x1b[2J\x1b[01;01H\x1b[0m\x1b[37m\x1b[40m"
               b"\x07\x08UEFI Interactive Shell v2.2\r\nEDK II\r\n\x1b[25;01H\x1b[?25l"
               b"\x1b[1m\x1b[33mShell> \x1b[0m\x1b[37m\x1b[40m\x1b[?25h")


def test_a_console_without_a_known_marker_is_no_boot(tmp_path, qemu):
    # The guest writes "OK\n" and ends QEMU (isa-debug-exit 0 -> exit status 1):
    # it ran, but printed nothing that says it booted.
    image = images.native_hello(tmp_path / "hello.igvm")
    check = _boot(tmp_path, image, "native", qemu)
    assert check.verdict == "fail", check.message
    assert "payload not recognised" in check.message and "last: 'OK'" in check.message
    assert check.evidence.details["outcome"]["exit_code"] == 1


def test_expect_console_says_what_booted_means(tmp_path, qemu):
    image = images.native_hello(tmp_path / "hello.igvm")
    check = _boot(tmp_path, image, "native", qemu, expect=r"^OK$")
    assert check.verdict == "pass", check.message
    assert check.evidence.console.startswith("OK")
    assert check.evidence.details["expect_console"]["regex"] == "^OK$"
    assert "-nodefaults" in check.evidence.command


def test_ovmf_console_ends_the_boot_at_the_shell(tmp_path, qemu):
    # The guest spins after the prompt, as a firmware waiting for a key:
    # the boot ends at the marker, not at the deadline.
    image = images.console_image(tmp_path / "ovmf.igvm", OVMF_SCREEN, ovmf_footer=True,
                                 spin=True)
    check = _boot(tmp_path, image, "native", qemu, timeout=60)
    assert check.verdict == "pass", check.message
    assert "OVMF found in the image" in check.message
    outcome = check.evidence.details["outcome"]
    assert outcome["status"] == "BOOTED" and outcome["matched"] in (
        "UEFI Interactive Shell v2", "Shell> ")


def test_an_ovmf_image_must_show_an_ovmf_marker(tmp_path, qemu):
    # OVMF found by its footer: the harness guests' line is not its marker
    text = b"IGVMT done status=0x0\r\n"
    ovmf = images.console_image(tmp_path / "o.igvm", text, ovmf_footer=True)
    check = _boot(tmp_path, ovmf, "native", qemu)
    assert check.verdict == "fail" and "OVMF found in the image" in check.message
    plain = images.console_image(tmp_path / "p.igvm", text)
    assert _boot(tmp_path, plain, "native", qemu).verdict == "pass"


def test_a_spinning_guest_without_a_marker_fails_at_the_deadline(tmp_path, qemu):
    image = images.console_image(tmp_path / "spin.igvm", b"\x1b[2Jstill loading",
                                 ovmf_footer=True, spin=True)
    check = _boot(tmp_path, image, "native", qemu, timeout=3)
    assert check.verdict == "fail"
    assert "within 3 s" in check.message and "last: 'still loading'" in check.message
    assert check.evidence.details["outcome"]["status"] == "HUNG"


def test_certify_writes_valid_reports_for_an_escape_sequence_console(tmp_path, qemu, capsys):
    """The whole command on a console full of escape sequences: exit 0 and
    three reports (JUnit XML used to end in an ExpatError traceback)."""
    import json
    import xml.dom.minidom

    from harness.cli import main

    image = images.console_image(tmp_path / "ovmf.igvm", OVMF_SCREEN, ovmf_footer=True)
    rc = main(["certify", str(image), "--platform", "native", "--accel", "tcg", "--qemu", qemu,
               "--output", str(tmp_path / "rep"), "-q"])
    out = capsys.readouterr().out
    assert rc == 0, out
    xml.dom.minidom.parse(str(next((tmp_path / "rep").glob("*.xml"))))
    doc = json.loads(next((tmp_path / "rep").glob("*.json")).read_text())
    [boot] = [c for c in doc["checks"] if c["id"] == "native.boot"]
    assert boot["verdict"] == "pass"
    assert boot["evidence"]["console"].startswith("UEFI Interactive Shell v2.2\nEDK II\n")
    assert "\x1b" not in next((tmp_path / "rep").glob("*.html")).read_text()


def test_panicking_image_fails_at_once(tmp_path, qemu):
    # A guest that reports a panic must fail the boot check, quickly (the
    # runner sees GUEST_PANICKED/STOP over QMP), not pass or time out.
    image = images.native_panic(tmp_path / "panic.igvm")
    check = _boot(tmp_path, image, "native", qemu)
    assert check.verdict == "fail", check.message
    assert "guest-panicked" in check.message
    assert check.evidence.details["outcome"]["status"] == "STOPPED"


def test_sev_es_without_hardware_stops_at_the_boundary(tmp_path, qemu):
    image = images.native_hello(tmp_path / "es.igvm", PlatformType.SEV_ES)
    check = _boot(tmp_path, image, "sev-es", qemu)
    if check.evidence.details.get("on_hardware"):
        pytest.skip("this host has SEV-ES: the boot runs to the end")
    # system/vl.c: TCG cannot make a confidential guest object ready.
    assert check.verdict == "boundary", check.message
    assert "accelerator does not support confidential guest" in check.message
    assert any("sev-guest" in arg for arg in check.evidence.command)


def test_broken_image_is_refused_by_qemu(tmp_path, qemu):
    # Without a confidential guest, QEMU takes a VP context for the boot CPU
    # only: "context can be set for BSP only" (target/i386/igvm.c:
    # qigvm_x86_set_vp_context, called from backends/igvm.c).
    from harness.igvm.builder import IgvmBuilder

    b = IgvmBuilder()
    b.platform(PlatformType.NATIVE)
    b.page(0xFFFFF000, images.reset_page())
    b.vp_context(0x1000, bytes(232), vp_index=1)
    image = tmp_path / "ap.igvm"
    b.write(image)
    check = _boot(tmp_path, image, "native", qemu)
    assert check.verdict == "fail"
    assert check.message.startswith("QEMU refused the image:")
    assert "context can be set for BSP only" in check.message


def test_sev_snp_without_kvm_stops_before_reading_the_file(tmp_path, qemu):
    # sev-snp-guest needs guest_memfd, i.e. KVM: under TCG QEMU stops while
    # creating guest memory (system/physmem.c: ram_block_add).
    image = images.native_hello(tmp_path / "snp.igvm", PlatformType.SEV_SNP)
    check = _boot(tmp_path, image, "sev-snp", qemu)
    if check.evidence.details.get("on_hardware"):
        pytest.skip("this host has SEV-SNP: the boot runs to the end")
    assert check.verdict == "boundary", check.message
    assert "KVM required" in check.message

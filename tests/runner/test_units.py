"""Pure parts of the runner layer: command lines, classification, the
guest protocol and its agreement with fixtures/guests/platform.inc."""

from __future__ import annotations

import re
import struct

import pytest

from harness.guests import protocol as p
from harness.guests.build import SOURCE_DIR
from harness.qemu.cmdline import ConfidentialGuest, QemuCommand
from harness.qemu.outcome import Status, classify, qemu_error_line


def _arg_after(argv, flag, contains):
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == flag and contains in argv[i + 1]]


def test_cmdline_cfg_syntax_links_machine_and_object():
    # docs/system/igvm.rst: -object igvm-cfg,id=..,file=.. and -machine ..,igvm-cfg=<id>
    argv = QemuCommand("qemu", igvm="/x/a,b.igvm", memory="1G", smp=4).argv()
    assert argv[:2] == ["qemu", "-nodefaults"]
    assert _arg_after(argv, "-machine", "q35") == ["q35,igvm-cfg=igvm0"]
    assert _arg_after(argv, "-object", "igvm-cfg") == ["igvm-cfg,id=igvm0,file=/x/a,,b.igvm"]
    assert argv[argv.index("-m") + 1] == "1G" and argv[argv.index("-smp") + 1] == "4"
    assert "-S" in argv and "-no-reboot" in argv
    assert _arg_after(argv, "-device", "isa-debug-exit") == ["isa-debug-exit,iobase=0x501"]


def test_cmdline_confidential_object_and_early_syntax():
    cgs = ConfidentialGuest("sev-snp-guest", id="sev0", policy=0x30000, cbitpos=51,
                            reduced_phys_bits=1)
    argv = QemuCommand("qemu", accel="kvm", igvm="f.igvm", confidential=cgs).argv()
    assert _arg_after(argv, "-machine", "q35") == [
        "q35,igvm-cfg=igvm0,confidential-guest-support=sev0"]
    assert _arg_after(argv, "-object", "sev-snp") == [
        "sev-snp-guest,id=sev0,policy=0x30000,cbitpos=51,reduced-phys-bits=1"]
    early = QemuCommand("qemu", igvm="f.igvm", igvm_syntax="sev-guest",
                        confidential=ConfidentialGuest(id="sev0")).argv()
    assert _arg_after(early, "-object", "sev-guest") == ["sev-guest,id=sev0,igvm-file=f.igvm"]
    assert not _arg_after(early, "-object", "igvm-cfg")
    with pytest.raises(ValueError):
        QemuCommand("qemu", igvm="f", igvm_syntax="sev-guest").argv()


@pytest.mark.parametrize("kw,status", [
    (dict(returncode=-9, timed_out=True, console="x", stderr=""), Status.HUNG),
    (dict(returncode=-6, timed_out=False, console="IGVMT boot", stderr=""), Status.CRASHED),
    (dict(returncode=1, timed_out=False, console="",
          stderr="qemu-system-x86_64: accelerator does not support confidential guest sev0\n"),
     Status.BOUNDARY),
    (dict(returncode=1, timed_out=False, console="",
          stderr="qemu-system-x86_64: Unable to parse IGVM file f: -1\n"), Status.ABORTED),
    (dict(returncode=1, timed_out=False, console="IGVMT done status=0x0\n", stderr=""),
     Status.BOOTED),
])
def test_classify(kw, status):
    assert classify(**kw)[0] is status


def test_classify_a_run_killed_at_its_marker_is_booted():
    # the runner ended QEMU (quit, or SIGKILL when QEMU did not go) because
    # the console showed ``until``
    assert classify(returncode=-9, timed_out=False, console="Shell> ", stderr="",
                    matched="Shell> ") == (Status.BOOTED, None)


def test_console_log_watches_across_reads_in_a_bounded_window(tmp_path):
    from harness.qemu.console import ConsoleLog

    log = ConsoleLog(tmp_path / "console.log", re.compile("Interactive Shell \u2713"))
    data = "UEFI Interactive Shell \u2713".encode()
    for i in range(len(data)):           # one byte per read: UTF-8 split mid-character
        assert log.matched is None
        log.write(data[i:i + 1])
    assert log.matched == "Interactive Shell \u2713"
    log.write(b"x" * (3 * ConsoleLog.WINDOW))  # matched once: no more searching
    log.close()
    assert (tmp_path / "console.log").read_bytes().startswith(data)
    big = ConsoleLog(tmp_path / "big.log", re.compile("never"))
    for _ in range(10):
        big.write(b"y" * ConsoleLog.WINDOW)
    assert len(big._window) <= 2 * ConsoleLog.WINDOW and big.matched is None
    big.close()


def test_console_log_fail_pattern_and_which_came_first(tmp_path):
    from harness.qemu.console import ConsoleLog

    # marker and failure read together: the earlier one counts
    log = ConsoleLog(tmp_path / "a.log", r"IGVMT done", fail=r"Kernel panic[^\r\n]*")
    log.write(b"Kernel panic - not syncing: x\r\nIGVMT done\r\n")
    assert log.failed_on == "Kernel panic - not syncing: x" and log.matched is None
    log.close()
    # the failure is watched past the marker (a run that goes on after it)
    log = ConsoleLog(tmp_path / "b.log", r"IGVMT done", fail=r"Kernel panic")
    log.write(b"IGVMT done\n")
    assert log.matched == "IGVMT done" and log.failed_on is None
    log.write(b"Kernel panic\n")
    assert log.failed_on == "Kernel panic" and log.matched_at <= log.failed_at
    log.close()


def test_console_log_searches_near_the_new_text_only(tmp_path):
    from harness.qemu.console import ConsoleLog

    # a line-anchored marker split across reads, far into a long console
    log = ConsoleLog(tmp_path / "c.log", re.compile(r"^Shell> $", re.MULTILINE))
    log.write(b"z" * (5 * ConsoleLog.REACH) + b"\nShe")
    assert log.matched is None
    log.write(b"ll> ")
    assert log.matched == "Shell> "
    log.close()
    # a match may start at most REACH characters before the new text
    log = ConsoleLog(tmp_path / "d.log", re.compile(r"a+b"))
    log.write(b"a" * (ConsoleLog.REACH + 10))
    log.write(b"b")
    assert log.matched == "a" * ConsoleLog.REACH + "b"
    log.close()


def test_console_log_last_line_is_plain_text(tmp_path):
    from harness.qemu.console import ConsoleLog

    log = ConsoleLog(tmp_path / "e.log", tail=True)
    log.write(b"\x1b[2J\x1b[01;01HBdsDxe: loading Boot0001\r\n\x1b[1m\x1b[33mShell> \x1b[0m\r\n\r\n")
    assert log.last_line() == "Shell>"
    log.close()
    quiet = ConsoleLog(tmp_path / "f.log")    # nothing watched: nothing decoded or kept
    quiet.write(b"text")
    assert quiet._window == "" and quiet.last_line() == ""
    quiet.close()
    assert (tmp_path / "f.log").read_bytes() == b"text"


def test_classify_a_run_ended_on_its_failure_line():
    status, error = classify(returncode=0, timed_out=False, console="Kernel panic",
                             stderr="", failed_on="\x1b[1mKernel panic\r")
    assert status is Status.BOOTED and error.endswith("'Kernel panic'")


def test_cmdline_panic_action_and_pvpanic():
    # qemu-options.hx: "-action panic=pause|shutdown|exit-failure|none" (default shutdown);
    # hw/misc/pvpanic-isa.c: ISA device "pvpanic", ioport property default 0x505.
    argv = QemuCommand("qemu").argv()
    assert _arg_after(argv, "-action", "panic") == ["panic=pause"]
    assert not _arg_after(argv, "-device", "pvpanic")
    argv = QemuCommand("qemu", pvpanic=True, panic_action=None).argv()
    assert _arg_after(argv, "-device", "pvpanic") == ["pvpanic"]
    assert "-action" not in argv


# MOCK (no SEV-ES/SNP hardware here): the stderr of QEMU 10.2 after a GHCB
# MSR termination request, i.e. KVM_SYSTEM_EVENT_SEV_TERM, which
# target/i386/kvm/kvm.c kvm_arch_handle_exit answers with -1, so that
# accel/kvm/kvm-all.c kvm_cpu_exec dumps the registers (cpu_dump_state) and
# calls vm_stop(RUN_STATE_INTERNAL_ERROR).  The real panic path is booted
# in test_runner.py.
SEV_TERM_STDERR = ("RAX=0000000000000100 RBX=0000000000000000 RCX=00000000c0010130 "
                   "RDX=0000000000000000\nRSI=0000000000000000 RDI=0000000000000000\n")


@pytest.mark.parametrize("state", ["internal-error", "guest-panicked"])
def test_classify_stop_states_are_stopped_not_hung(state):
    status, error = classify(returncode=0, timed_out=False, console="IGVMT boot",
                             stderr=SEV_TERM_STDERR, run_state=state)
    assert status is Status.STOPPED
    assert f"'{state}'" in error and "RAX=" in error


def test_classify_other_run_states_keep_old_rules():
    # 'paused' (qapi/run-state.json) is a stop someone asked for: not a final state
    assert classify(returncode=-9, timed_out=True, console="", stderr="",
                    run_state="paused")[0] is Status.HUNG


def test_error_line_skips_warnings():
    err = ("qemu-system-x86_64: warning: host doesn't support requested feature\n"
           "rom: file kvmvapic.bin        : error Failed to open file\n"
           "qemu-system-x86_64: -object igvm-cfg: Unable to parse IGVM file x: -2\n")
    assert "Unable to parse" in qemu_error_line(err)


def test_parse_line_and_report():
    rec = p.parse_line("junk IGVMT mmap i=0x1 gpa=0x100000 pages=12 type=0x0 name=abc\r")
    assert rec.kind == "mmap" and rec["i"] == 1 and rec["gpa"] == 0x100000
    assert rec["pages"] == 12 and rec["name"] == "abc"
    assert p.parse_line("SeaBIOS (version x)") is None
    rep = p.GuestReport.parse("IGVMT boot mode=64\nIGVMT e820 i=0x1 addr=0x10\n"
                              "IGVMT e820 i=0x0 addr=0x0\nIGVMT done status=0x3\n")
    assert rep.booted and rep.done and rep.status == 3
    assert [r["addr"] for r in rep.table("e820")] == [0, 0x10]


def test_qword_digest_by_hand():
    # q = [1, 2]: sum 3; h = rol(rol(0,5)^1, 5) ^ 2 = 32 ^ 2 = 34; two non-zero
    assert p.qword_digest(struct.pack("<QQ", 1, 2)) == (3, 34, 2)
    assert p.qword_digest(bytes(64)) == (0, 0, 0)
    top = 1 << 63   # rol by 5 wraps bit 63 to bit 4
    assert p.qword_digest(struct.pack("<QQ", top, 0))[1] == 1 << 4


def _inc_constants() -> dict[str, int]:
    text = (SOURCE_DIR / "platform.inc").read_text()
    return {m.group(1): int(m.group(2), 0)
            for m in re.finditer(r"^\s*\.set\s+(\w+),\s*(0x[0-9a-fA-F]+|\d+)", text, re.M)}


def test_protocol_mirrors_platform_inc():
    inc = _inc_constants()
    assert inc["CONFIG_GPA"] == p.CONFIG_GPA
    assert inc["CFG_TASKS"] == p.TASKS_OFFSET and inc["TASK_SIZE"] == p.TASK_SIZE
    assert inc["MAX_TASKS"] == p.MAX_TASKS
    assert inc["DEFAULT_SERIAL"] == p.DEFAULT_SERIAL and inc["DEFAULT_EXIT"] == p.DEFAULT_EXIT_PORT
    assert inc["IO_PORT"] == p.IoMode.PORT and inc["IO_GHCB_MSR"] == p.IoMode.GHCB_MSR
    for op in p.TaskOp:
        assert inc[f"OP_{op.name}"] == op.value, op
    page = p.ConfigPage(io_mode=p.IoMode.GHCB_MSR, exit_status=7, serial_port=0x2F8,
                        exit_port=0x600, tasks=[p.Task(p.TaskOp.SUM, 0x1000, 0x2000, 3)])
    raw = page.pack()
    assert len(raw) == 4096 and raw[:8] == b"IGVMTCFG"
    u32 = lambda off: struct.unpack_from("<I", raw, off)[0]  # noqa: E731
    u16 = lambda off: struct.unpack_from("<H", raw, off)[0]  # noqa: E731
    assert u32(inc["CFG_IO_MODE"]) == 1 and u32(inc["CFG_EXIT_STATUS"]) == 7
    assert u16(inc["CFG_SERIAL_PORT"]) == 0x2F8 and u16(inc["CFG_EXIT_PORT"]) == 0x600
    assert u32(inc["CFG_NTASKS"]) == 1
    assert struct.unpack_from("<IIQQQ", raw, inc["CFG_TASKS"]) == (5, 0, 0x1000, 0x2000, 3)

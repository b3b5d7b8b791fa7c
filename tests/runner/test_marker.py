"""harness.qemu.runner.run with ``until`` / ``fail`` / ``stop`` / ``progress``:
a run watched for a console marker, with the reset-vector guest as a
``-bios`` ROM (see conftest.py).  The guest
prints ``IGVMT boot ...`` and ``IGVMT done``; with the exit port moved off
isa-debug-exit it halts for ever afterwards, like firmware in its boot
manager."""

from __future__ import annotations

import os

from harness.guests.firmware import boot_manager_lines
from harness.guests.protocol import ConfigPage
from harness.qemu.cmdline import QemuCommand
from harness.qemu.outcome import Status
from harness.qemu.runner import live_runs, run, socket_base
from harness.terminal import plain


def _cmd(qemu, rom, extra=(), **kw):
    return QemuCommand(qemu, accel="tcg", bios=str(rom), extra=list(extra), **kw)


def _no_leftovers():
    assert live_runs() == []
    prefix = f"igvmt-{os.getpid()}-"
    assert not [e for e in os.listdir(socket_base()) if e.startswith(prefix)]


def test_marker_seen_then_qemu_quit(any_qemu, reset_rom, tmp_path, config_blob):
    halts = config_blob(ConfigPage(exit_port=0x80))
    notes = []
    out = run(_cmd(any_qemu, reset_rom, halts), tmp_path / "r", 60, until=r"IGVMT done",
              progress=lambda t, line: notes.append(line))
    assert out.matched == "IGVMT done"
    assert 0 < out.matched_at < out.duration < 60
    assert out.status is Status.BOOTED and out.exit_code == 0 and out.error is None  # quit
    assert out.report.booted
    assert notes and notes[-1] == "marker: IGVMT done"
    assert out.to_json()["matched_at"] == out.matched_at
    assert "'execute': 'quit'" in (tmp_path / "r" / "qmp.log").read_text()
    for name in ("cmdline.txt", "stderr.log", "console.log", "qmp.log", "outcome.json"):
        assert (tmp_path / "r" / name).is_file()
    _no_leftovers()


def test_marker_never_seen_is_hung_at_the_deadline(any_qemu, reset_rom, tmp_path, config_blob):
    out = run(_cmd(any_qemu, reset_rom, config_blob(ConfigPage(exit_port=0x80))),
              tmp_path / "r", 3, until=r"BdsDxe: never")
    assert out.matched is None and out.matched_at is None
    assert out.status is Status.HUNG
    _no_leftovers()


def test_stop_false_waits_for_the_exit(any_qemu, reset_rom, tmp_path):
    # the default config exits through isa-debug-exit right after "done"
    out = run(_cmd(any_qemu, reset_rom), tmp_path / "r", 60, until=r"IGVMT boot", stop=False)
    assert out.matched == "IGVMT boot"
    assert out.exit_code == 1 and out.report.done   # (0 << 1) | 1, the guest's
    _no_leftovers()


def test_stop_false_past_the_marker_still_hangs_at_the_deadline(any_qemu, reset_rom, tmp_path,
                                                                config_blob):
    # the marker was seen, but the run was to end with QEMU's exit: it never came
    out = run(_cmd(any_qemu, reset_rom, config_blob(ConfigPage(exit_port=0x80))),
              tmp_path / "r", 3, until=r"IGVMT boot", stop=False)
    assert out.matched == "IGVMT boot" and out.status is Status.HUNG
    _no_leftovers()


def test_fail_pattern_ends_the_run_early(any_qemu, reset_rom, tmp_path, config_blob):
    out = run(_cmd(any_qemu, reset_rom, config_blob(ConfigPage(exit_port=0x80))),
              tmp_path / "r", 60, until=r"never", fail=r"IGVMT done")
    assert out.matched is None and out.failed_on == "IGVMT done"
    assert out.status is Status.BOOTED and out.duration < 60
    assert out.exit_code == 0 and "IGVMT done" in out.error     # quit; the error names the line
    _no_leftovers()


def test_vm_stopped_for_good_ends_the_run(any_qemu, reset_rom, tmp_path, config_blob):
    # the guest "exits" with status 1 to the pvpanic port: QEMU pauses it
    # in run state guest-panicked (see test_runner.py)
    cmd = _cmd(any_qemu, reset_rom, config_blob(ConfigPage(exit_port=0x505, exit_status=1)),
               pvpanic=True)
    out = run(cmd, tmp_path / "r", 60, until=r"never")
    assert out.status is Status.STOPPED and out.run_state == "guest-panicked"
    assert out.duration < 60
    _no_leftovers()


def test_bad_command_line_is_aborted(any_qemu, reset_rom, tmp_path):
    out = run(_cmd(any_qemu, reset_rom, ["-no-such-option"]), tmp_path / "r", 30, until="x")
    assert out.matched is None and out.status is Status.ABORTED
    assert "no-such-option" in out.error
    _no_leftovers()


def test_plain_and_boot_manager_lines():
    # what OVMF writes: cursor moves, colours, CRLF (edk2 TerminalDxe)
    console = ("\x1b[2J\x1b[01;01H\x1b[=3hBdsDxe: loading Boot0001 \"EFI Internal Shell\" from Fv(x)\r\n"
               "\x1b[05;01HPress \x1b[1m\x1b[37m\x1b[40mESC\x1b[0m in 5 seconds\r\n"
               "\x1b[06;01H\x1b[1m\x1b[33m\x1b[40mShell> \x1b[0m\x1b[37m\x1b[40m")
    assert plain(console).startswith("BdsDxe: loading Boot0001")
    assert boot_manager_lines(console) == [
        'BdsDxe: loading Boot0001 "EFI Internal Shell" from Fv(x)', "Shell>"]

"""harness.qemu.marker.run_until: a run watched for a console marker, with
the reset-vector guest as a ``-bios`` ROM (see conftest.py).  The guest
prints ``IGVMT boot ...`` and ``IGVMT done``; with the exit port moved off
isa-debug-exit it halts for ever afterwards, like firmware in its boot
manager."""

from __future__ import annotations

import os


from harness.guests.firmware import boot_manager_lines
from harness.guests.protocol import ConfigPage
from harness.qemu.cmdline import QemuCommand
from harness.qemu.marker import plain, run_until
from harness.qemu.outcome import Status
from harness.qemu.runner import live_runs, socket_base


def _cmd(qemu, rom, extra=(), **kw):
    return QemuCommand(qemu, accel="tcg", bios=str(rom), extra=list(extra), **kw)


def _no_leftovers():
    assert live_runs() == []
    prefix = f"igvmt-{os.getpid()}-"
    assert not [e for e in os.listdir(socket_base()) if e.startswith(prefix)]


def test_marker_seen_then_qemu_quit(any_qemu, reset_rom, tmp_path, config_blob):
    halts = config_blob(ConfigPage(exit_port=0x80))
    notes = []
    run = run_until(_cmd(any_qemu, reset_rom, halts), tmp_path / "r", r"IGVMT done",
                    timeout=60, progress=lambda t, line: notes.append(line))
    assert run.seen and run.marker == "IGVMT done"
    assert 0 < run.elapsed < 60
    assert run.outcome.status is Status.BOOTED and run.outcome.exit_code == 0   # quit, not killed
    assert run.outcome.report.booted
    assert notes and notes[-1] == "marker: IGVMT done"
    assert "'execute': 'quit'" in (tmp_path / "r" / "qmp.log").read_text()
    for name in ("cmdline.txt", "stderr.log", "console.log", "qmp.log", "outcome.json"):
        assert (tmp_path / "r" / name).is_file()
    _no_leftovers()


def test_marker_never_seen_is_hung_at_the_deadline(any_qemu, reset_rom, tmp_path, config_blob):
    run = run_until(_cmd(any_qemu, reset_rom, config_blob(ConfigPage(exit_port=0x80))),
                    tmp_path / "r", r"BdsDxe: never", timeout=3)
    assert not run.seen and run.elapsed is None
    assert run.outcome.status is Status.HUNG
    _no_leftovers()


def test_stop_false_waits_for_the_exit(any_qemu, reset_rom, tmp_path):
    # the default config exits through isa-debug-exit right after "done"
    run = run_until(_cmd(any_qemu, reset_rom), tmp_path / "r", r"IGVMT boot", timeout=60,
                    stop=False)
    assert run.seen
    assert run.outcome.exit_code == 1 and run.outcome.report.done   # (0 << 1) | 1, the guest's
    _no_leftovers()


def test_fail_pattern_ends_the_run_early(any_qemu, reset_rom, tmp_path, config_blob):
    run = run_until(_cmd(any_qemu, reset_rom, config_blob(ConfigPage(exit_port=0x80))),
                    tmp_path / "r", r"never", fail=r"IGVMT done", timeout=60)
    assert not run.seen and run.failed_on == "IGVMT done"
    assert run.outcome.status is Status.BOOTED and run.outcome.duration < 60
    _no_leftovers()


def test_vm_stopped_for_good_ends_the_run(any_qemu, reset_rom, tmp_path, config_blob):
    # the guest "exits" with status 1 to the pvpanic port: QEMU pauses it
    # in run state guest-panicked (see test_runner.py)
    cmd = _cmd(any_qemu, reset_rom, config_blob(ConfigPage(exit_port=0x505, exit_status=1)),
               pvpanic=True)
    run = run_until(cmd, tmp_path / "r", r"never", timeout=60)
    assert run.outcome.status is Status.STOPPED and run.outcome.run_state == "guest-panicked"
    assert run.outcome.duration < 60
    _no_leftovers()


def test_bad_command_line_is_aborted(any_qemu, reset_rom, tmp_path):
    run = run_until(_cmd(any_qemu, reset_rom, ["-no-such-option"]), tmp_path / "r", "x",
                    timeout=30)
    assert not run.seen and run.outcome.status is Status.ABORTED
    assert "no-such-option" in run.outcome.error
    _no_leftovers()


def test_plain_and_boot_manager_lines():
    # what OVMF writes: cursor moves, colours, CRLF (edk2 TerminalDxe)
    console = ("\x1b[2J\x1b[01;01H\x1b[=3hBdsDxe: loading Boot0001 \"EFI Internal Shell\" from Fv(x)\r\n"
               "\x1b[05;01HPress \x1b[1m\x1b[37m\x1b[40mESC\x1b[0m in 5 seconds\r\n"
               "\x1b[06;01H\x1b[1m\x1b[33m\x1b[40mShell> \x1b[0m\x1b[37m\x1b[40m")
    assert plain(console.encode()).startswith("BdsDxe: loading Boot0001")
    assert boot_manager_lines(console) == [
        'BdsDxe: loading Boot0001 "EFI Internal Shell" from Fv(x)', "Shell>"]

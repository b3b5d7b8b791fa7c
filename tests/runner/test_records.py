"""Boot records (harness.qemu.records): a boot two checks need is run once,
with a real QEMU; what the record answers (``first_at``); what makes two
boots different boots.  And the console's answers to prompts
(harness.qemu.console ``answers``), which are part of a boot's identity."""

from __future__ import annotations

from harness.qemu import runner
from harness.qemu.cmdline import QemuCommand
from harness.qemu.console import ConsoleLog
from harness.qemu.outcome import Status
from harness.qemu.records import BootRecords, boot_key


def _dirs(tmp_path):
    made = []

    def new():
        d = tmp_path / f"boot-{len(made) + 1}"
        made.append(d)
        return d
    return new, made


def test_the_same_boot_is_run_once(any_qemu, reset_rom, tmp_path):
    seen = []
    observer = lambda out, fresh: seen.append(fresh)  # noqa: E731
    runner.add_observer(observer)
    try:
        records = BootRecords()
        new, made = _dirs(tmp_path)
        cmd = lambda: QemuCommand(any_qemu, accel="tcg", bios=str(reset_rom))  # noqa: E731
        first = records.run(cmd(), new, 20.0, until=r"IGVMT done")
        second = records.run(cmd(), new, 20.0, until=r"IGVMT done")
    finally:
        runner.remove_observer(observer)
    assert first.status is Status.BOOTED, first.summary()
    assert second is first and len(made) == 1
    assert (records.fresh, records.shared, len(records)) == (1, 1, 1)
    assert seen == [True, False]        # the timing table hears of the reuse as such


def test_another_command_line_is_another_boot(any_qemu, reset_rom, tmp_path):
    records = BootRecords()
    new, made = _dirs(tmp_path)
    a = records.run(QemuCommand(any_qemu, accel="tcg", bios=str(reset_rom)), new, 20.0)
    b = records.run(QemuCommand(any_qemu, accel="tcg", bios=str(reset_rom), memory="256M"),
                    new, 20.0)
    c = records.run(QemuCommand(any_qemu, accel="tcg", bios=str(reset_rom)), new, 20.0,
                    until=r"IGVMT done")
    assert len({id(a), id(b), id(c)}) == 3 and len(made) == 3
    assert records.shared == 0


def test_a_changed_file_at_the_same_path_is_another_boot(any_qemu, reset_rom, tmp_path):
    rom = tmp_path / "rom.bin"
    rom.write_bytes(reset_rom.read_bytes())
    cmd = QemuCommand(any_qemu, accel="tcg", bios=str(rom))
    before = boot_key(cmd, 20.0, None, None, True)
    data = bytearray(reset_rom.read_bytes())
    data[0] ^= 0xFF
    rom.write_bytes(bytes(data))
    assert boot_key(cmd, 20.0, None, None, True) != before
    # the socket and pipe paths the runner makes up per run are no part of it
    cmd.qmp_path, cmd.console_path = str(tmp_path / "qmp.sock"), str(tmp_path / "con")
    assert boot_key(cmd, 20.0, None, None, True) == boot_key(
        QemuCommand(any_qemu, accel="tcg", bios=str(rom)), 20.0, None, None, True)


def test_the_record_says_when_a_line_appeared(any_qemu, reset_rom, tmp_path):
    # started paused (a pre-launch hook): this guest is done in milliseconds,
    # and QEMU may exit before QMP was negotiated (then qmp_at is None)
    out = runner.run(QemuCommand(any_qemu, accel="tcg", bios=str(reset_rom)), tmp_path / "r",
                     timeout=20, prelaunch=lambda qr: None)
    assert out.status is Status.BOOTED, out.summary()
    boot, done = out.first_at(r"IGVMT boot"), out.first_at(r"IGVMT done")
    assert boot is not None and done is not None
    assert out.qmp_at is not None and 0 < out.qmp_at <= boot <= done <= out.duration
    assert out.first_at(r"no such line") is None
    assert out.guest_seconds == out.duration - out.qmp_at


def test_console_answers_a_prompt_once(tmp_path):
    log = ConsoleLog(tmp_path / "console.log", answers=((r"Press \w+ in \d+ s", b" "),))
    log.write(b"booting\r\nPress ")
    assert log.to_type == []
    log.write(b"ESC in 5 s to skip\r\n")         # the prompt split across reads
    assert log.to_type == [b" "]
    log.to_type.clear()
    log.write(b"Press ESC in 4 s to skip\r\n")   # asked again: answered once only
    assert log.to_type == []
    log.close()
    assert (tmp_path / "console.log").read_bytes().startswith(b"booting")

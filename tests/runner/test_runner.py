"""The runner against a real QEMU process: outcomes, logs, reaping.

Reset-state facts come from the Intel SDM vol. 3, table 9-1 (CS selector
F000H, CR0 = 60000010H after RESET); the exit-status rule from QEMU's
hw/misc/debugexit.c (exit((val << 1) | 1)).  Guest-panic facts from
QEMU 10.2: hw/misc/pvpanic-isa.c (ISA port 0x505), hw/misc/pvpanic.c
handle_event (bit 0 = PVPANIC_PANICKED -> qemu_system_guest_panicked),
system/runstate.c qemu_system_guest_panicked (GUEST_PANICKED with action
"pause" + vm_stop(RUN_STATE_GUEST_PANICKED) under -action panic=pause; action
"poweroff" + shutdown request with cause guest-panic under the default
"shutdown", system/runstate-action.c), qapi/run-state.json (STOP event,
run state "guest-panicked", shutdown reasons "host-qmp-quit", "guest-panic").
"""

from __future__ import annotations

import os
import re
import signal

import pytest

from harness.errors import HarnessError
from harness.guests.protocol import ConfigPage
from harness.qemu.cmdline import QemuCommand
from harness.qemu.outcome import Status
from harness.qemu.runner import QemuRun, live_runs, run, socket_base


def _own_socket_dirs() -> list[str]:
    prefix = f"igvmt-{os.getpid()}-"
    return [e for e in os.listdir(socket_base()) if e.startswith(prefix)]


def _cmd(qemu, rom, accel="tcg", extra=(), **kw):
    return QemuCommand(qemu, accel=accel, bios=str(rom), extra=list(extra), **kw)


@pytest.fixture(params=["tcg", "kvm"])
def rom_accel(request, any_qemu):
    if request.param == "kvm" and not os.access("/dev/kvm", os.R_OK | os.W_OK):
        pytest.skip("no usable /dev/kvm")
    return request.param


def test_boot_reports_reset_state_and_keeps_logs(any_qemu, reset_rom, tmp_path, rom_accel):
    out = run(_cmd(any_qemu, reset_rom, rom_accel), tmp_path / "r", timeout=20)
    assert out.status is Status.BOOTED, out.summary()
    boot = out.report.one("boot")
    assert boot["mode"] == 16
    assert boot["cs"] == 0xF000
    assert boot["cr0"] == 0x60000010
    assert out.report.done and out.report.status == 0
    assert out.exit_code == (0 << 1) | 1
    assert out.guest_status == 0
    for name in ("cmdline.txt", "stderr.log", "console.log", "qmp.log", "outcome.json"):
        assert (tmp_path / "r" / name).is_file(), name
    assert "IGVMT done" in (tmp_path / "r" / "console.log").read_text()
    assert (tmp_path / "r" / "qmp.log").is_file()    # transcript (maybe short: not paused)
    assert _own_socket_dirs() == []
    assert live_runs() == []


@pytest.mark.parametrize("status", [1, 0x2A, 0x7F])
def test_exit_status_follows_debugexit(any_qemu, reset_rom, tmp_path, config_blob, status):
    out = run(_cmd(any_qemu, reset_rom, extra=config_blob(ConfigPage(exit_status=status))),
              tmp_path / "r", timeout=20)
    assert out.report.status == status
    assert out.exit_code == (status << 1) | 1
    assert out.guest_status == status


def test_prelaunch_queries_see_paused_vm_and_smp(any_qemu, reset_rom, tmp_path):
    seen = {}

    def pre(qr):
        seen["status"] = qr.command("query-status")
        seen["cpus"] = qr.command("query-cpus-fast")

    out = run(_cmd(any_qemu, reset_rom, smp=3), tmp_path / "r", timeout=20, prelaunch=pre)
    assert out.status is Status.BOOTED
    assert seen["status"]["status"] == "prelaunch"
    assert len(seen["cpus"]) == 3
    transcript = (tmp_path / "r" / "qmp.log").read_text()
    assert "'QMP'" in transcript                      # the greeting
    assert transcript.index("query-cpus-fast") < transcript.index("'execute': 'cont'")


def test_bad_option_is_aborted_with_qemu_error_line(any_qemu, reset_rom, tmp_path):
    out = run(_cmd(any_qemu, reset_rom, extra=["-device", "no-such-device-igvmt"]),
              tmp_path / "r", timeout=20)
    assert out.status is Status.ABORTED
    assert out.exit_code == 1
    assert "no-such-device-igvmt" in out.error
    assert _own_socket_dirs() == []


def test_hung_guest_is_killed_with_console_tail(any_qemu, reset_rom, tmp_path, config_blob):
    # exit port 0x80 is not isa-debug-exit: the guest reports, then halts forever
    out = run(_cmd(any_qemu, reset_rom, extra=config_blob(ConfigPage(exit_port=0x80))),
              tmp_path / "r", timeout=2)
    assert out.status is Status.HUNG
    assert "IGVMT done" in out.error          # the console tail
    assert out.signal == signal.SIGKILL      # killed by the runner, not by QEMU
    assert live_runs() == []
    assert _own_socket_dirs() == []


def test_until_ends_the_run_at_the_console_marker(any_qemu, reset_rom, tmp_path, config_blob):
    # the same guest halts forever after its report; with ``until`` (here a
    # compiled pattern) the run ends at the marker: BOOTED (not HUNG at the
    # deadline), QEMU quit over QMP by the runner, the matched text kept
    out = run(_cmd(any_qemu, reset_rom, extra=config_blob(ConfigPage(exit_port=0x80))),
              tmp_path / "r", timeout=60, until=re.compile(r"IGVMT done status=\S+"))
    assert out.status is Status.BOOTED, out.summary()
    assert out.matched is not None and out.matched.startswith("IGVMT done status=")
    assert out.exit_code == 0 and out.signal is None and out.error is None
    assert "'execute': 'quit'" in (tmp_path / "r" / "qmp.log").read_text()
    assert out.to_json()["matched"] == out.matched
    assert live_runs() == [] and _own_socket_dirs() == []


def test_until_that_never_matches_changes_nothing(any_qemu, reset_rom, tmp_path):
    out = run(_cmd(any_qemu, reset_rom), tmp_path / "r", timeout=20,
              until=re.compile("never printed"))
    assert out.status is Status.BOOTED and out.matched is None
    assert out.exit_code == (0 << 1) | 1   # the guest ended QEMU itself


def test_sigkill_of_qemu_is_crashed(any_qemu, reset_rom, tmp_path, config_blob):
    qr = QemuRun(_cmd(any_qemu, reset_rom, extra=config_blob(ConfigPage(exit_port=0x80))),
                 tmp_path / "r", timeout=20)
    with qr:
        qr.cont()
        qr.expect("IGVMT done")
        os.kill(qr.proc.pid, signal.SIGKILL)
        out = qr.wait()
    assert out.status is Status.CRASHED
    assert out.signal == signal.SIGKILL
    assert "SIGKILL" in out.error
    assert live_runs() == []


def test_exception_in_prelaunch_reaps_qemu(any_qemu, reset_rom, tmp_path):
    pids = []

    def pre(qr):
        pids.append(qr.proc.pid)
        raise RuntimeError("test asked for it")

    with pytest.raises(RuntimeError):
        run(_cmd(any_qemu, reset_rom), tmp_path / "r", timeout=20, prelaunch=pre)
    with pytest.raises(ProcessLookupError):
        os.kill(pids[0], 0)
    assert live_runs() == []
    assert _own_socket_dirs() == []


def test_missing_binary_is_one_line_error(tmp_path):
    with pytest.raises(HarnessError, match="cannot start QEMU"):
        run(QemuCommand(str(tmp_path / "no-qemu")), tmp_path / "r", timeout=5)
    assert _own_socket_dirs() == []


# (accel, object type) -> where QEMU stops on a host without SEV, with the
# source of the message.
BOUNDARIES = [
    ("tcg", "sev-guest", "accelerator does not support confidential guest"),   # system/vl.c
    ("tcg", "sev-snp-guest", "KVM required"),                                   # system/physmem.c
    ("kvm", "sev-snp-guest", "not supported by KVM"),                     # target/i386/kvm/kvm.c
]


@pytest.mark.parametrize("accel,cgs_type,message", BOUNDARIES)
def test_confidential_guest_without_hardware_is_boundary(qemu_binary, qemu_caps, guest_images,
                                                         tmp_path, accel, cgs_type, message):
    from harness.fixtures.native import reset_vector_image
    from harness.qemu.cmdline import ConfidentialGuest
    if qemu_caps.missing(accel):
        pytest.skip(qemu_caps.missing(accel))
    if qemu_caps.has("sev-snp") or qemu_caps.has("sev"):
        pytest.skip("host has SEV: no boundary to reach")
    img = tmp_path / "reset.igvm"
    img.write_bytes(reset_vector_image(guest_images["reset16"]))
    cmd = QemuCommand(qemu_binary, accel=accel, igvm=str(img),
                      confidential=ConfidentialGuest(cgs_type, cbitpos=51, reduced_phys_bits=1))
    out = run(cmd, tmp_path / "r", timeout=20)
    assert out.status is Status.BOUNDARY, out.summary()
    assert message in out.error
    assert not out.report


def test_ghcb_io_mode_natively_resets_without_output(qemu_binary, guest_images, tmp_path):
    """The payload's GHCB seam on a native platform: output is dropped and
    the MSR-protocol exit (wrmsr 0xC0010130 + VMGEXIT) faults with no IDT,
    so the CPU triple-faults; -no-reboot makes QEMU exit 0.  The guest ran,
    so this is BOOTED with an empty report, not ABORTED."""
    from harness.fixtures.native import LongModeImage
    from harness.guests.protocol import IoMode
    img = LongModeImage(guest_images["payload64"])
    img.config.io_mode = IoMode.GHCB_MSR
    path = tmp_path / "ghcb.igvm"
    path.write_bytes(img.build())
    out = run(QemuCommand(qemu_binary, accel="tcg", igvm=str(path)), tmp_path / "r", timeout=20)
    assert out.status is Status.BOOTED, out.summary()
    assert out.exit_code == 0
    assert not out.report
    assert "reset" in out.error


def _panic_cmd(qemu, rom, config_blob, accel="tcg", **kw):
    # The guest "exits" with status 1 to port 0x505: that is the pvpanic
    # port, and 1 is PVPANIC_PANICKED.
    return _cmd(qemu, rom, accel, pvpanic=True,
                extra=config_blob(ConfigPage(exit_port=0x505, exit_status=1)), **kw)


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("hook", [True, False], ids=["prelaunch", "no-prelaunch"])
def test_guest_panic_is_stopped_at_once(any_qemu, reset_rom, tmp_path, config_blob,
                                        rom_accel, hook):
    timeout = 60
    out = run(_panic_cmd(any_qemu, reset_rom, config_blob, rom_accel), tmp_path / "r",
              timeout=timeout, prelaunch=(lambda qr: None) if hook else None)
    # with a panic device the run starts paused even without a hook, so
    # that no STOP can happen before QMP negotiation
    assert " -S" in (tmp_path / "r" / "cmdline.txt").read_text()
    assert out.status is Status.STOPPED, out.summary()
    assert out.run_state == "guest-panicked"
    assert "guest-panicked" in out.error
    assert out.report.done                    # the guest ran up to the panic
    assert out.exit_code == 0 and out.signal is None   # QEMU quit, not killed
    assert out.duration < timeout             # not the deadline
    names = [e["event"] for e in out.events]
    assert names[-1] == "SHUTDOWN" and out.events[-1]["data"]["reason"] == "host-qmp-quit"
    panic = next(e for e in out.events if e["event"] == "GUEST_PANICKED")
    assert panic["data"]["action"] == "pause"
    assert names.index("RESUME") < names.index("GUEST_PANICKED") < names.index("STOP")
    transcript = (tmp_path / "r" / "qmp.log").read_text()
    for event in out.events:                  # every event, with QEMU's timestamp
        assert f"'event': '{event['event']}'" in transcript
        assert "seconds" in event["timestamp"]
    assert "'status': 'guest-panicked'" in transcript      # the query-status reply
    saved = (tmp_path / "r" / "outcome.json").read_text()
    assert '"run_state": "guest-panicked"' in saved and '"STOPPED"' in saved
    assert live_runs() == []
    assert _own_socket_dirs() == []


def test_stopped_runs_leak_no_descriptors(any_qemu, reset_rom, tmp_path, config_blob):
    # The first run may create the process's asyncio loop (qemu.qmp.legacy);
    # after that, each run must give back every descriptor it opened.
    cmd = _panic_cmd(any_qemu, reset_rom, config_blob)
    run(cmd, tmp_path / "r0", timeout=60, prelaunch=lambda qr: None)
    fds = _open_fds()
    for i in (1, 2):
        out = run(cmd, tmp_path / f"r{i}", timeout=60, prelaunch=lambda qr: None)
        assert out.status is Status.STOPPED, out.summary()
    assert _open_fds() == fds


def test_guest_panic_with_qemu_default_action_shuts_down(any_qemu, reset_rom, tmp_path,
                                                          config_blob):
    """Without -action panic=pause QEMU powers off on a panic by itself:
    the runner does not interfere (not STOPPED, QEMU not quit)."""
    out = run(_panic_cmd(any_qemu, reset_rom, config_blob, panic_action=None),
              tmp_path / "r", timeout=60, prelaunch=lambda qr: None)
    assert out.status is Status.BOOTED, out.summary()
    assert out.run_state is None
    assert out.exit_code == 0
    panic = next(e for e in out.events if e["event"] == "GUEST_PANICKED")
    assert panic["data"]["action"] == "poweroff"
    shutdown = [e for e in out.events if e["event"] == "SHUTDOWN"]
    assert shutdown and shutdown[0]["data"]["reason"] == "guest-panic"
    assert live_runs() == []
    assert _own_socket_dirs() == []


def test_pause_on_request_is_not_stopped(any_qemu, reset_rom, tmp_path, config_blob):
    """A plain 'stop' (run state 'paused') is not final: the run goes on to
    the deadline and is HUNG, as before."""
    qr = QemuRun(_cmd(any_qemu, reset_rom, extra=config_blob(ConfigPage(exit_port=0x80))),
                 tmp_path / "r", timeout=3)
    with qr:
        qr.cont()
        qr.expect("IGVMT done")
        qr.command("stop")
        out = qr.wait()
    assert out.status is Status.HUNG, out.summary()
    assert out.run_state is None
    assert "STOP" in [e["event"] for e in out.events]
    assert live_runs() == []


def test_boot_disk_arguments_and_format():
    from harness.qemu.cmdline import BootDisk, disk_format
    assert BootDisk("/d/a,b.img", "qcow2").args() == [
        "-drive", "file=/d/a,,b.img,format=qcow2,if=none,id=disk0,snapshot=on",
        "-device", "ide-hd,drive=disk0,bus=ide.0"]
    assert "snapshot" not in BootDisk("x", snapshot=False).args()[1]
    assert disk_format(b"QFI\xfb\x00\x00\x00\x03") == "qcow2"   # block/qcow2.h QCOW_MAGIC
    assert disk_format(b"\xeb\x3c\x90I") == disk_format(b"") == "raw"


def test_snapshot_disk_overlay_lives_in_the_run_dir(any_qemu, reset_rom, tmp_path):
    """QEMU puts a snapshot=on overlay in $TMPDIR (block.c create_tmp_file) and
    unlinks it once open (block/file-posix.c raw_open_common); the runner's
    TMPDIR is the run directory, and the disk itself is not written."""
    from harness.qemu.cmdline import BootDisk
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(1 << 20))
    links: list[str] = []

    def pre(qr):
        fd_dir = f"/proc/{qr.proc.pid}/fd"
        for name in os.listdir(fd_dir):
            try:
                links.append(os.readlink(os.path.join(fd_dir, name)))
            except OSError:
                pass

    run_dir = tmp_path / "r"
    out = run(_cmd(any_qemu, reset_rom, disk=BootDisk(str(disk))), run_dir, timeout=20,
              prelaunch=pre)
    assert out.status is Status.BOOTED, out.summary()
    overlays = [link for link in links if "/vl." in link]
    assert overlays, links
    assert all(link.startswith(f"{run_dir.resolve()}/vl.") and link.endswith(" (deleted)")
               for link in overlays), overlays
    assert disk.read_bytes() == bytes(1 << 20)
    assert not list(run_dir.glob("vl.*"))


def test_qmp_negotiation_has_a_deadline():
    """QEMU 10.2 can leave ``qmp_capabilities`` unanswered for good (a guest
    that ends QEMU while the negotiation is in flight: runner._negotiate).
    That hang cannot be forced from outside, so the peer here is a stand-in
    (a socket that greets like QEMU and then says nothing): the negotiation
    must give up at its deadline instead of waiting for ever."""
    import json
    import socket
    import time

    from qemu.qmp.legacy import QEMUMonitorProtocol

    from harness.qemu.runner import _close_qmp, _negotiate
    ours, theirs = socket.socketpair()
    greeting = {"QMP": {"version": {"qemu": {"micro": 2, "minor": 2, "major": 10},
                                    "package": ""}, "capabilities": ["oob"]}}
    theirs.sendall(json.dumps(greeting).encode() + b"\r\n")
    qmp = QEMUMonitorProtocol(ours)
    t0 = time.monotonic()
    try:
        with pytest.raises(TimeoutError):
            _negotiate(qmp, 0.5)
        assert time.monotonic() - t0 < 5.0
        # it did ask: the stand-in received qmp_capabilities
        theirs.settimeout(1.0)
        assert b"qmp_capabilities" in theirs.recv(4096)
    finally:
        _close_qmp(qmp)
        ours.close()
        theirs.close()

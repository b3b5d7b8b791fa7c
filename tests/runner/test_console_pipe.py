"""COM1's transport keeps every byte however the harness reads it
(harness.qemu.runner.console_fifos).

Through the unix socket pair the runner used before, a reader that came
back only every 50 ms -- what a pytest worker on a busy machine does --
lost characters in every real Linux boot: 22 and 15 console lines with a
character or two missing in two boots (e.g. "Kernel ommand line:"; under
-n 3 on 2 cores, 7 of 15 firmware boots had such lines and a disk-boot
check failed on one).  Here the harness reads a real Linux boot through
OVMF-in-IGVM (Debian's firmware, kernel and the harness initrd) in the same
50 ms bites and must find every line the guest wrote, byte for byte: the
kernel's command line, each printk line's timestamp, and the initrd's
report, whose EFI memory map lines the init counted itself (``efimap
count=N``).
"""

from __future__ import annotations

import re
import time

import pytest

from harness.guests.firmware import LINUX_DONE

pytestmark = [pytest.mark.qemu, pytest.mark.slow]

APPEND = "console=ttyS0 efi=debug panic=-1 cryptomgr.notests igvmt.pipe=kept"
#: The reader's pause between two reads (a busy worker's scheduling).
NAP = 0.05


def _asset(name: str):
    from harness import assets
    try:
        return assets.info(name)
    except assets.AssetMissing as exc:
        pytest.skip(str(exc))


@pytest.mark.weight(20)
def test_a_reader_that_comes_back_late_loses_no_byte(qemu_binary, tmp_path):
    from harness.guests import linux
    from harness.guests.initrd import build_initrd
    from harness.igvm import ovmf, wrap_ovmf
    from harness.qemu.cmdline import QemuCommand
    from harness.qemu.outcome import Status
    from harness.qemu.runner import QemuRun

    fw, kernel, busybox = _asset("ovmf-generic"), _asset("linux"), _asset("busybox")
    wrap = tmp_path / "ovmf.igvm"
    wrap.write_bytes(wrap_ovmf.wrap(ovmf.load(fw.path), ("native",), 2))
    cmd = QemuCommand(qemu_binary, accel="tcg", memory="512M", smp=2, igvm=str(wrap),
                      extra=["-kernel", str(kernel.path), "-initrd",
                             str(build_initrd(busybox.path)), "-append", APPEND])
    with QemuRun(cmd, tmp_path / "run", timeout=300.0, until=LINUX_DONE, stop=False) as qr:
        qr.cont()
        while qr.proc.poll() is None and qr._remaining() > 0:
            qr._drain_console()                # one bite of what arrived ...
            time.sleep(NAP)                    # ... then away for a while
        out = qr.wait()
    assert out.status is Status.BOOTED and out.exit_code == 0, out.summary()
    line = re.search(r"Kernel command line: ([^\r\n]*)", out.console)
    assert line and line.group(1).split()[-len(APPEND.split()):] == APPEND.split(), \
        line.group(0) if line else out.tail(20)
    linux.parse(out.report)                      # every line of the report, parsed
    count = int(out.report.one("efimap")["count"])
    assert len(out.report.all("efimem")) == count > 10, (len(out.report.all("efimem")), count)
    # the kernel's printk lines all have their timestamp intact
    stamped = [l for l in out.console.splitlines() if l.startswith("[")]
    assert len(stamped) > 300
    assert all(re.match(r"\[ *\d+\.\d{6}\] ", l) for l in stamped), \
        [l for l in stamped if not re.match(r"\[ *\d+\.\d{6}\] ", l)][:5]

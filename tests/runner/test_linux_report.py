"""harness.guests.linux: the initrd's report parsed and compared with -smp/-m.

The reports here are written by hand in the init script's line format
(fixtures/guests/linux/init); each rule of ``mismatches`` gets a report that
breaks only it."""

from __future__ import annotations

import pytest

from harness.errors import HarnessError
from harness.guests import linux as L
from harness.guests.protocol import GuestReport

MiB = 1 << 20
MEM = 512 * MiB


def report(cpus="0-1", cpuinfo=2, memtotal_kb=None, regions=None, efi=1, second_map=True):
    regions = regions if regions is not None else [
        ("Conventional", 0, 0x9FFFF, 1),
        ("Loader_Code", 0x100000, 0x100000 + 64 * MiB - 1, 1),
        ("Boot_Data", 0x100000 + 64 * MiB, 0x100000 + 96 * MiB - 1, 1),
        ("Conventional", 0x100000 + 96 * MiB, MEM - 2 * MiB - 1, 1),
        ("Runtime_Data", MEM - 2 * MiB, MEM - 1, 1),
        ("Reserved", 0xE0000000, 0xEFFFFFFF, 0),            # MMCONFIG: UC only
    ]
    handed = sum(e - s + 1 for t, s, e, _ in regions if t in L.OS_OWNED_TYPES)
    if memtotal_kb is None:
        memtotal_kb = (handed - 80 * MiB) // 1024
    lines = ["IGVMT linux kernel=6.1.0-50-amd64 arch=x86_64",
             f"IGVMT cpus online={cpus} cpuinfo={cpuinfo}",
             f"IGVMT meminfo total_kb={memtotal_kb}", f"IGVMT efi booted={efi}"]
    rows = list(regions) + ([("Runtime_Data", MEM - 2 * MiB, MEM - 1, 1)] if second_map else [])
    for i, (t, s, e, wb) in enumerate(rows):
        n = i if i < len(regions) else i - len(regions)
        lines.append(f"IGVMT efimem i={i} n={n} type={t} start={s:#018x} end={e:#018x} wb={wb}")
    lines.append("IGVMT done status=0")
    return L.parse(GuestReport.parse("\n".join(lines)))


def test_consistent_report_has_no_mismatch():
    rep = report()
    assert rep.online_cpus == 2 and len(rep.efi_map) == 6      # second print-out dropped
    assert rep.ram_bytes == MEM - L.LEGACY_HOLE
    assert L.mismatches(rep, 2, MEM) == []


@pytest.mark.parametrize("text,n", [("0", 1), ("0-3", 4), ("0-1,4", 3), ("0,2-3,7", 4), ("", 0)])
def test_cpu_list(text, n):
    assert L.cpu_list_count(text) == n


@pytest.mark.parametrize("kw,smp,words", [
    (dict(cpus="0"), 2, "CPUs"),
    (dict(cpuinfo=1), 2, "CPUs"),
    (dict(efi=0), 2, "EFI"),
    (dict(memtotal_kb=MEM // 1024), 2, "MemTotal"),          # more than was handed over
    (dict(memtotal_kb=64 * 1024), 2, "MemTotal"),            # far less than the kernel keeps
])
def test_each_rule_can_fail(kw, smp, words):
    problems = L.mismatches(report(**kw), smp, MEM)
    assert len(problems) == 1 and words in problems[0], problems


def test_missing_ram_and_overlap_are_reported():
    short = [("Conventional", 0, 0x9FFFF, 1), ("Conventional", 0x100000, MEM - 4 * MiB - 1, 1)]
    assert any("RAM" in p for p in L.mismatches(report(regions=short), 2, MEM))
    overlap = [("Conventional", 0, 0x9FFFF, 1), ("Conventional", 0x100000, MEM - 1, 1),
               ("Boot_Data", MEM - MiB, MEM - 1, 1)]
    problems = L.mismatches(report(regions=overlap), 2, MEM)
    assert any("overlap" in p for p in problems)


def test_report_without_its_lines_is_one_error():
    with pytest.raises(HarnessError, match="lacks 'IGVMT meminfo', 'IGVMT efi'"):
        L.parse(GuestReport.parse("IGVMT linux kernel=x\nIGVMT cpus online=0 cpuinfo=1\n"
                                  "IGVMT done status=0"))

"""What the harness initrd reported about a Linux guest
(fixtures/guests/linux/init), in numbers a test compares with ``-smp`` and
``-m`` (:func:`mismatches`).

The EFI memory map is the one the kernel printed with ``efi=debug`` at boot
(arch/x86/platform/efi/efi.c efi_print_memmap); the kernel prints it again
after SetVirtualAddressMap, numbered from 0 again, so the first table is
the firmware's.  Memory types are the UEFI specification's (7.2,
EFI_MEMORY_TYPE) under the names the kernel prints
(drivers/firmware/efi/efi.c efi_md_typeattr_format, spaces as ``_``).
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.errors import HarnessError
from harness.guests.protocol import GuestReport

#: Memory the firmware handed over for the OS to own at ExitBootServices
#: (UEFI 2.10, table 7.6 "Memory Type Usage after ExitBootServices()").
OS_OWNED_TYPES = ("Loader_Code", "Loader_Data", "Boot_Code", "Boot_Data", "Conventional")
LOADER_TYPES = ("Loader_Code", "Loader_Data")
MiB = 1 << 20
#: 640 KiB .. 1 MiB: QEMU's e820 RAM entry covers it, OVMF does not describe it.
LEGACY_HOLE = MiB - (640 << 10)
#: Early kernel allocations beyond its image and struct pages (page tables,
#: per-CPU areas, log buffer, copies of firmware tables): 19-21 MiB seen
#: with Debian's 6.1 kernel at 512 MiB-1 GiB; the bound leaves room.
KERNEL_EARLY_ALLOC = 48 * MiB
#: sizeof(struct page) on x86_64 (include/linux/mm_types.h): 64 bytes per 4 KiB page.
STRUCT_PAGE = 64
#: More descriptors than this is not a map OVMF makes of a small VM.
MAX_REGIONS = 4096


@dataclass(frozen=True)
class EfiRegion:
    type: str
    start: int
    end: int          # inclusive, as the kernel prints it
    wb: bool          # EFI_MEMORY_WB: cacheable RAM (MMIO is UC only)

    @property
    def size(self) -> int:
        return self.end - self.start + 1


@dataclass
class LinuxReport:
    kernel: str
    efi_booted: bool
    online: str
    cpuinfo: int
    memtotal_kb: int
    efi_map: list[EfiRegion]

    @property
    def online_cpus(self) -> int:
        return cpu_list_count(self.online)

    def total(self, types=None, wb_only: bool = False) -> int:
        return sum(r.size for r in self.efi_map
                   if (types is None or r.type in types) and (r.wb or not wb_only))

    @property
    def ram_bytes(self) -> int:
        """All cacheable memory the firmware described (every type, WB)."""
        return self.total(wb_only=True)

    def overlaps(self) -> list[tuple[EfiRegion, EfiRegion]]:
        spans = sorted(self.efi_map, key=lambda r: r.start)
        return [(a, b) for a, b in zip(spans, spans[1:]) if b.start <= a.end]


def cpu_list_count(text) -> int:
    """CPUs in a kernel CPU list (``0``, ``0-3``, ``0-1,4``:
    Documentation/admin-guide/cputopology.rst)."""
    text = str(text).strip()
    if not text or text == "none":
        return 0
    n = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        n += (int(hi) - int(lo) + 1) if hi else 1
    return n


def parse(report: GuestReport) -> LinuxReport:
    """The initrd's report; a report without its lines is a HarnessError
    naming what is missing."""
    need = {k: report.first(k) for k in ("linux", "cpus", "meminfo", "efi", "done")}
    missing = [k for k, v in need.items() if v is None]
    if missing:
        raise HarnessError("the Linux guest's report lacks 'IGVMT "
                           + "', 'IGVMT ".join(missing) + "' lines")
    rows = report.table("efimem")
    if len(rows) > 2 * MAX_REGIONS:
        raise HarnessError(f"the guest reported {len(rows)} EFI memory descriptors")
    first: list[EfiRegion] = []
    for row in rows:
        if row.get("n") == 0 and first:
            break   # the second print-out (after SetVirtualAddressMap)
        first.append(EfiRegion(str(row["type"]), int(row["start"]), int(row["end"]),
                               bool(row.get("wb"))))
    return LinuxReport(kernel=str(need["linux"]["kernel"]), efi_booted=need["efi"]["booted"] == 1,
                       online=str(need["cpus"]["online"]), cpuinfo=int(need["cpus"]["cpuinfo"]),
                       memtotal_kb=int(need["meminfo"]["total_kb"]), efi_map=first)


def mismatches(rep: LinuxReport, smp: int, memory: int) -> list[str]:
    """How the report differs from ``-smp smp -m memory`` (bytes, below
    q35's 2 GiB low-memory split, so all RAM is one e820 entry below 4 GiB).

    * CPUs: exactly ``smp`` (online mask and /proc/cpuinfo);
    * EFI memory map: all of ``memory`` but the legacy range.  QEMU's e820
      table is one RAM entry [0, -m) (hw/i386/pc.c pc_memory_init:
      e820_add_entry); OVMF describes [0, 640 KiB) and [1 MiB, top)
      (OvmfPkg/Library/PlatformInitLib/MemDetect.c QemuInitializeRamBelow1gb;
      above 1 MiB from the e820 table or the IGVM memory map parameter,
      Igvm.c PlatformIgvmScanE820), each byte in one WB descriptor;
    * MemTotal: at most what the firmware handed over (:data:`OS_OWNED_TYPES`)
      and at least that minus what the kernel keeps: its image (it runs from
      the loader memory the EFI stub placed it in), one ``struct page`` per
      4 KiB page, and :data:`KERNEL_EARLY_ALLOC`.
    """
    out = []
    if not rep.efi_booted:
        out.append("the kernel did not boot through EFI (/sys/firmware/efi missing)")
    if rep.online_cpus != smp or rep.cpuinfo != smp:
        out.append(f"CPUs: online {rep.online!r}, /proc/cpuinfo {rep.cpuinfo}; -smp {smp}")
    if rep.overlaps():
        a, b = rep.overlaps()[0]
        out.append(f"EFI descriptors overlap: {a} and {b}")
    if rep.ram_bytes != memory - LEGACY_HOLE:
        out.append(f"EFI map describes {rep.ram_bytes:#x} bytes of RAM; -m less the legacy"
                   f" range is {memory - LEGACY_HOLE:#x}")
    handed = rep.total(OS_OWNED_TYPES)
    kept = rep.total(LOADER_TYPES) + memory // 4096 * STRUCT_PAGE + KERNEL_EARLY_ALLOC
    total = rep.memtotal_kb * 1024
    if not handed - kept <= total <= handed:
        out.append(f"MemTotal {rep.memtotal_kb} kB outside [{(handed - kept) >> 10},"
                   f" {handed >> 10}] kB")
    return out

"""Wrap an OVMF image into an IGVM file, the way QEMU's classic ``-bios`` launch lays it out.

What QEMU 10.2 does without IGVM, which the wrap reproduces as directives:

* the image is mapped so that it ends at 4 GiB and, for SEV guests, measured
  whole (hw/i386/pc_sysfw.c: x86_firmware_configure -> sev_encrypt_flash):
  one PAGE_DATA per 4 KiB page, in address order, for every platform.  Pages
  that are all zero are written as zero pages (no file data): QEMU measures an
  IGVM zero page exactly like a page of zero data on every SEV platform
  (target/i386/sev.c: cgs_set_guest_state sends CGS_PAGE_TYPE_ZERO through
  launch_update_data), so the digest does not change and the file is smaller;
* for SEV-SNP, after the firmware, every SEV metadata section in table order
  (target/i386/sev.c: snp_populate_metadata_pages): SNP_SECRETS as a SECRETS
  page, CPUID as a CPUID_DATA page, and SNP_SEC_MEM / SVSM_CAA /
  KERNEL_HASHES (no ``-kernel`` hashes) -- which the classic launch gives SNP
  page type ZERO (snp_metadata_desc_to_page_type) -- as IGVM zero pages
  (``metadata_pages="zero"``) or as UNMEASURED pages (``"unmeasured"``).
  **Neither matches the classic digest**: QEMU's IGVM path has no way to ask for
  page type ZERO; a page without data becomes NORMAL zeros (the SHA-384 of a zero
  page goes into the digest), an unmeasured page becomes UNMEASURED.  Both are
  pre-validated, which is what OVMF needs; ``igvm-harness measure --explain``
  lists the ranges;
* for SEV-ES and SEV-SNP, a VMSA per vCPU (target/i386/sev.c: the classic launch
  keeps the BSP's reset state and gives every AP the SEV-ES reset block's CS:IP,
  sev_es_set_ap_context).  The BSP VMSA holds QEMU's reset state (target/i386/cpu.c:
  x86_cpu_reset_hold) as sev_apply_cpu_context reads it back; AP VMSAs the same
  with CS base / IP from the reset block and the architectural FPU reset values;
* where the image carries IGVM metadata (edk2 X64/IgvmMetadata.nasm.inc), a
  parameter area at its GPA with the memory map and VP count at the offsets it
  names (QEMU fills both: backends/igvm.c qigvm_directive_memory_map, which
  writes from offset 0 of the area, and qigvm_directive_vp_count).  The area's
  pages are taken out of any SNP_SEC_MEM section that covers them, and the
  PARAMETER_INSERT is placed so that QEMU queues it in the same position the
  classic launch measures that page (QEMU applies an insert immediately while
  the run of pages before it is still pending: backends/igvm.c
  qigvm_directive_parameter_insert vs qigvm_process_mem_page).

Uses :mod:`harness.igvm.builder`; nothing here knows QEMU's binary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from harness.errors import HarnessError
from harness.igvm.builder import IgvmBuilder
from harness.igvm.defs import KVM_VMSA_GPA, PageDataType, PlatformType
from harness.igvm.ovmf import FOUR_GIB, PAGE_4K, OvmfImage, SevSectionType
from harness.igvm.vmsa import Segment, SevEsVmsa

PLATFORMS: dict[str, PlatformType] = {
    "native": PlatformType.NATIVE, "sev": PlatformType.SEV,
    "sev-es": PlatformType.SEV_ES, "sev-snp": PlatformType.SEV_SNP,
}
#: The most vCPUs QEMU 10.2 starts on q35 (hw/i386/pc_q35.c: max_cpus).
MAX_VCPUS = 4096
#: RDX at reset is the CPU signature (CPUID.1:EAX); QEMU copies RDX from the VMSA, so
#: the file fixes it.  Default: -cpu EPYC-v4, family 23 model 1 stepping 2
#: (target/i386/cpu.c builtin_x86_defs), the measurement layer's default vCPU type.
DEFAULT_CPU_SIGNATURE = 0x00800F12
SEV_FEAT_SNP_ACTIVE = 1

_REAL_DATA = Segment(0, 0x93, 0xFFFF, 0)  # P S W A: x86_cpu_reset_hold's data segments
_REAL_CODE_ATTR = 0x9B                    # P S CS R A (sev_es_set_ap_context, reset CS)


class MetadataPages(str, Enum):
    """How SNP_SEC_MEM / SVSM_CAA / KERNEL_HASHES sections are written."""

    ZERO = "zero"              # IGVM zero pages: measured by QEMU as NORMAL pages of zeros
    UNMEASURED = "unmeasured"  # PAGE_DATA with the UNMEASURED flag: SNP page type UNMEASURED


#: SEV metadata section type -> IGVM page data type (None = the metadata_pages choice).
_SECTION_PAGE_TYPE = {
    SevSectionType.SNP_SECRETS: PageDataType.SECRETS,
    SevSectionType.CPUID: PageDataType.CPUID_DATA,
}

#: Printed with every wrap: the two limits of QEMU 10.2 a user of the file meets.
AP_NOTE = ("QEMU 10.2 takes VP contexts for vCPUs other than the BSP only on SEV-ES and SEV-SNP "
           "(target/i386/sev.c: sev_set_cpu_context); natively it refuses them ('context can be set "
           "for BSP only', target/i386/igvm.c: qigvm_x86_set_vp_context, reached from backends/igvm.c: "
           "qigvm_directive_vp_context), so the native platform carries none, and a VMSA for vCPU N "
           "needs -smp > N ('out of bounds CPU index')")
ZERO_NOTE = ("SEV-SNP: QEMU's IGVM path cannot give a page SNP page type ZERO (backends/igvm.c: "
             "qigvm_type_to_cgs_type -> target/i386/sev.c: cgs_set_guest_state sends CGS_PAGE_TYPE_ZERO "
             "through launch_update_data as NORMAL zeros), so the SNP_SEC_MEM / SVSM_CAA / KERNEL_HASHES "
             "pages measure differently from the classic -bios launch; see `igvm-harness measure "
             "--explain`")


@dataclass
class WrapResult:
    data: bytes
    platforms: tuple[str, ...]
    vcpus: int
    notes: list[str] = field(default_factory=list)


def parse_platforms(text: str | tuple | list) -> tuple[str, ...]:
    names = [p.strip().lower() for p in (text.split(",") if isinstance(text, str) else text)]
    names = [p for p in names if p]
    bad = [p for p in names if p not in PLATFORMS]
    if bad or not names:
        raise HarnessError(f"unknown platform(s) {', '.join(bad) or '(none)'}; choose from "
                           + ", ".join(PLATFORMS))
    return tuple(dict.fromkeys(names))


def reset_vmsa(cpu_signature: int, sev_features: int, cs_base: int = 0xFFFF0000,
               ip: int = 0xFFF0) -> bytes:
    """A VMSA page holding QEMU's x86 reset state (x86_cpu_reset_hold) with CS base / IP."""
    v = SevEsVmsa(
        es=_REAL_DATA, ss=_REAL_DATA, ds=_REAL_DATA, fs=_REAL_DATA, gs=_REAL_DATA,
        cs=Segment(0xF000, _REAL_CODE_ATTR, 0xFFFF, cs_base),
        gdtr=Segment(0, 0, 0xFFFF, 0), idtr=Segment(0, 0, 0xFFFF, 0),
        ldtr=Segment(0, 0x82, 0xFFFF, 0), tr=Segment(0, 0x8B, 0xFFFF, 0),
        cr0=0x60000010, dr6=0xFFFF0FF0, dr7=0x400, rflags=0x2, rip=ip, rdx=cpu_signature,
        g_pat=0x0007040600070406, xcr0=1, x87_fcw=0x37F, mxcsr=0x1F80, sev_features=sev_features)
    return v.to_bytes()


def _check(fw: OvmfImage, platforms: tuple[str, ...], vcpus: int) -> None:
    name = fw.name
    if not 1 <= vcpus <= MAX_VCPUS:
        raise HarnessError(f"--vcpus must be 1 to {MAX_VCPUS} (QEMU's q35 limit)")
    if fw.size % PAGE_4K:
        raise HarnessError(f"{name}: {fw.size} bytes is not a whole number of 4 KiB pages; "
                           "it cannot be written as IGVM pages", 1)
    es = [p for p in platforms if p in ("sev-es", "sev-snp")]
    if es and vcpus > 1 and fw.reset_block is None:
        raise HarnessError(f"{name}: no SEV-ES AP reset block in the footer table, so the APs of "
                           f"{'/'.join(es)} have no start address (QEMU refuses it too: "
                           "sev_es_find_reset_vector)", 1)
    if "sev-snp" in platforms:
        kinds = {s.type for s in fw.snp_sections()}
        missing = [t.name for t in (SevSectionType.SNP_SECRETS, SevSectionType.CPUID) if t not in kinds]
        if missing:
            raise HarnessError(f"{name}: no {' or '.join(missing)} section in the SEV metadata; this "
                               "firmware cannot run SEV-SNP (QEMU: 'Failed to locate SEV metadata "
                               "header' / the guest finds no secrets or CPUID page)", 1)
        _check_sections(fw)


def _check_sections(fw: OvmfImage) -> None:
    spans = sorted((s.gpa, s.end, s.name) for s in fw.snp_sections())
    for (a0, a1, an), (b0, b1, bn) in zip(spans, spans[1:]):
        if b0 < a1:
            raise HarnessError(f"{fw.name}: SEV metadata sections {an} {a0:#x}..{a1:#x} and {bn} "
                               f"{b0:#x}..{b1:#x} overlap", 1)
    for s0, s1, sn in spans:
        if s1 > fw.base_gpa and s0 < FOUR_GIB:
            raise HarnessError(f"{fw.name}: SEV metadata section {sn} {s0:#x}..{s1:#x} overlaps the "
                               f"firmware at {fw.base_gpa:#x}..4 GiB", 1)


def _param_area(fw: OvmfImage):
    meta = fw.igvm_metadata
    return None if meta is None else meta.param_area


def wrap(fw: OvmfImage, platforms=tuple(PLATFORMS), vcpus: int = 1, *,
         metadata_pages: str | MetadataPages = MetadataPages.ZERO,
         cpu_signature: int = DEFAULT_CPU_SIGNATURE, parameters: bool = True) -> bytes:
    """The IGVM file (bytes); see :func:`wrap_file` for the notes."""
    return wrap_file(fw, platforms, vcpus, metadata_pages=metadata_pages,
                     cpu_signature=cpu_signature, parameters=parameters).data


def wrap_file(fw: OvmfImage, platforms=tuple(PLATFORMS), vcpus: int = 1, *,
              metadata_pages: str | MetadataPages = MetadataPages.ZERO,
              cpu_signature: int = DEFAULT_CPU_SIGNATURE, parameters: bool = True) -> WrapResult:
    platforms = parse_platforms(platforms)
    mode = MetadataPages(metadata_pages)
    if not 0 <= cpu_signature < 1 << 32:
        raise HarnessError(f"CPU signature {cpu_signature:#x} is not a 32-bit CPUID.1:EAX value")
    _check(fw, platforms, vcpus)
    b = IgvmBuilder()
    masks = {p: b.platform(PLATFORMS[p]) for p in platforms}
    every = b.all_masks
    notes: list[str] = []

    area = _param_area(fw) if parameters else None
    area_index = None
    if area is not None:
        meta = fw.igvm_metadata
        if area.start < FOUR_GIB and area.start + area.size > fw.base_gpa:
            raise HarnessError(f"{fw.name}: IGVM parameter area {area.start:#x}+{area.size:#x} overlaps "
                               "the firmware", 1)
        for s in fw.snp_sections() if "sev-snp" in platforms else ():
            if s.type in _SECTION_PAGE_TYPE and s.gpa < area.start + area.size and area.start < s.end:
                raise HarnessError(f"{fw.name}: IGVM parameter area {area.start:#x} overlaps the "
                                   f"{s.name} page", 1)
        area_index = b.parameter_area(area.size)
        if meta.memory_map is not None:
            b.memory_map(area_index, meta.memory_map.start)
        if meta.vp_count is not None:
            b.vp_count(area_index, meta.vp_count.start)
        notes.append(f"IGVM parameter area at {area.start:#x} ({area.size:#x} bytes): "
                     + ", ".join(n for n, s in (("memory map", meta.memory_map), ("VP count", meta.vp_count))
                                 if s is not None) + " (unmeasured)")

    # 1. Firmware pages, ending at 4 GiB, for every platform.
    view = memoryview(fw.data)
    zero = bytes(PAGE_4K)
    base = fw.base_gpa
    for off in range(0, fw.size, PAGE_4K):
        page = view[off:off + PAGE_4K]
        b.page(base + off, None if page == zero else page, mask=every)

    inserted = False

    def insert() -> None:
        nonlocal inserted
        b.parameter_insert(area.start, area_index, mask=every)
        inserted = True

    # 2. SNP metadata pages, in table order (snp_populate_metadata_pages).
    if "sev-snp" in platforms:
        snp = masks["sev-snp"]
        area_pages = set() if area is None else set(range(area.start, area.start + area.size, PAGE_4K))
        pending_insert = False  # the area's place was passed: insert after the next page
        for s in fw.snp_sections():
            ptype = _SECTION_PAGE_TYPE.get(s.type)
            for gpa in range(s.gpa, s.end, PAGE_4K):
                if gpa in area_pages:
                    pending_insert = True
                    continue
                if ptype is not None:
                    b.page(gpa, None, mask=snp, data_type=ptype)
                else:
                    b.page(gpa, None, mask=snp, unmeasured=mode is MetadataPages.UNMEASURED)
                if pending_insert and not inserted:
                    insert()  # the run before the area is queued now; this page's run is pending
        notes.append(ZERO_NOTE + f" (this file: {mode.value} pages)")
    if area is not None and not inserted:
        insert()

    # 3. VMSAs for SEV-ES and SEV-SNP.
    rb = fw.reset_block
    for p in ("sev-es", "sev-snp"):
        if p not in platforms:
            continue
        feats = SEV_FEAT_SNP_ACTIVE if p == "sev-snp" else 0
        for cpu in range(vcpus):
            if cpu == 0:
                page = reset_vmsa(cpu_signature, feats)
            else:
                page = reset_vmsa(cpu_signature, feats, rb.cs_base, rb.ip)
            b.vp_context(KVM_VMSA_GPA, page, mask=masks[p], vp_index=cpu)
    if any(p in platforms for p in ("sev-es", "sev-snp")):
        notes.append(f"VMSAs: vCPU 0 at the reset vector 0xfffffff0"
                     + (f", vCPUs 1-{vcpus - 1} at the SEV-ES AP reset block {rb.address:#x}"
                        if vcpus > 1 else ""))
    if vcpus > 1 or "native" in platforms:
        notes.append(AP_NOTE)
    if "sev" in platforms:
        notes.append("SEV (without ES) has no VP context: QEMU refuses one (cgs_set_guest_state, "
                     "'attempt to configure initial VMSA, but SEV-ES is not supported'); the BSP "
                     "starts from its reset state")
    return WrapResult(b.build(), platforms, vcpus, notes)


__all__ = ["DEFAULT_CPU_SIGNATURE", "MetadataPages", "PLATFORMS", "WrapResult", "parse_platforms",
           "reset_vmsa", "wrap", "wrap_file"]

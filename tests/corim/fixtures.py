"""Small SEV-SNP IGVM files for the CoRIM tests, made by the project's builder.

Deterministic bytes (the builder's layout is fixed), so the igvm crate's
outputs for them can be kept as vectors (``vectors/``): one file with every
kind of page the crate's SNP model and QEMU's launch treat differently --
data pages, a zero page, SECRETS and CPUID pages, a parameter area with its
insert, and a VMSA (sev-snp-measure's reset save area, an independent
builder) -- plus the GUEST_POLICY the crate needs to measure SNP.
"""

from __future__ import annotations

from harness.igvm.builder import IgvmBuilder
from harness.igvm.defs import KVM_VMSA_GPA, PageDataType, PlatformType

SIG = 0x800F12  # -cpu EPYC-v4, the measurement layer's default vCPU signature


def pattern(n: int, seed: int) -> bytes:
    return bytes((i * 7 + seed) & 0xFF for i in range(n))


def snp_vmsa() -> bytes:
    from sevsnpmeasure.vmm_types import VMMType
    from sevsnpmeasure.vmsa import VMSA
    return bytes(VMSA.build_save_area(0xFFFFFFF0, 0x1, SIG, VMMType.QEMU))


def small_snp_file() -> bytes:
    b = IgvmBuilder()
    b.platform(PlatformType.SEV_SNP)
    b.guest_policy(0x30000)
    b.pages(0x100000, pattern(3 * 4096, 5))
    b.page(0x104000, None)                                  # no file data: zeros
    b.page(0x105000, None, data_type=PageDataType.SECRETS)
    b.page(0x106000, None, data_type=PageDataType.CPUID_DATA)
    area = b.parameter_area(4096)
    b.vp_count(area)
    b.parameter_insert(0x107000, area)
    b.vp_context(KVM_VMSA_GPA, snp_vmsa())
    return b.build()

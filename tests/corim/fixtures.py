"""Small IGVM files for the CoRIM tests, made by the project's builder.

``small_snp_file``: every kind of page the igvm crate's SNP model and QEMU's
launch treat differently -- data pages, a zero page, SECRETS and CPUID
pages, a parameter area with its insert, and a VMSA (sev-snp-measure's
reset save area, an independent builder) -- plus the GUEST_POLICY the crate
needs to measure SNP.  QEMU measures the parameter insert before the pages
still pending, the crate in file order: their digests differ.

``coinciding_snp_file``: the same kinds of page without a parameter area, in
the order QEMU measures them, and the VMSA KVM builds: the crate's digest is
QEMU's launch digest.

``digest_variety``: files whose launch digests all differ (SNP on two
compatibility masks, TDX, VBS), for comparing CoRIMs over several digests.
"""

from __future__ import annotations

from harness.igvm.builder import IgvmBuilder
from harness.igvm.defs import KVM_VMSA_GPA, PageDataType, PlatformType

SIG = 0x800F12  # -cpu EPYC-v4, the measurement layer's default vCPU signature
SNP_POLICY = 0x30000


def pattern(n: int, seed: int) -> bytes:
    return bytes((i * 7 + seed) & 0xFF for i in range(n))


def snp_vmsa() -> bytes:
    from sevsnpmeasure.vmm_types import VMMType
    from sevsnpmeasure.vmsa import VMSA
    return bytes(VMSA.build_save_area(0xFFFFFFF0, 0x1, SIG, VMMType.QEMU))


def small_snp_file() -> bytes:
    b = IgvmBuilder()
    b.platform(PlatformType.SEV_SNP)
    b.guest_policy(SNP_POLICY)
    b.pages(0x100000, pattern(3 * 4096, 5))
    b.page(0x104000, None)                                  # no file data: zeros
    b.page(0x105000, None, data_type=PageDataType.SECRETS)
    b.page(0x106000, None, data_type=PageDataType.CPUID_DATA)
    area = b.parameter_area(4096)
    b.vp_count(area)
    b.parameter_insert(0x107000, area)
    b.vp_context(KVM_VMSA_GPA, snp_vmsa())
    return b.build()


def coinciding_snp_file(seed: int = 9) -> bytes:
    b = IgvmBuilder()
    b.platform(PlatformType.SEV_SNP)
    b.guest_policy(SNP_POLICY)
    b.pages(0x100000, pattern(3 * 4096, seed))
    b.page(0x104000, None)
    b.page(0x105000, None, data_type=PageDataType.SECRETS)
    b.page(0x106000, None, data_type=PageDataType.CPUID_DATA)
    b.vp_context(KVM_VMSA_GPA, snp_vmsa())
    return b.build()


def _pages_only(platform: PlatformType, seed: int, pages: int, mask: int | None = None,
                policy: bool = False) -> bytes:
    b = IgvmBuilder()
    if mask is not None and mask != 1:
        b.platform(PlatformType.NATIVE, mask=1)
    b.platform(platform, mask=mask)
    if policy:
        b.guest_policy(SNP_POLICY, mask=mask)
    b.pages(0x200000, pattern(pages * 4096, seed), mask=mask)
    return b.build()


def digest_variety() -> dict[str, tuple[bytes, str]]:
    """name -> (file, harness platform name of the profile environment to build for)."""
    return {
        "snp-small": (small_snp_file(), "sev-snp"),
        "snp-coinciding": (coinciding_snp_file(), "sev-snp"),
        "snp-pages-1": (_pages_only(PlatformType.SEV_SNP, 1, 1, policy=True), "sev-snp"),
        "snp-pages-5": (_pages_only(PlatformType.SEV_SNP, 2, 5, policy=True), "sev-snp"),
        "snp-mask-2": (_pages_only(PlatformType.SEV_SNP, 3, 2, mask=2, policy=True), "sev-snp"),
        "tdx": (_pages_only(PlatformType.TDX, 4, 2), "tdx"),
        "vbs": (_pages_only(PlatformType.VSM_ISOLATION, 5, 2), "vsm"),
    }

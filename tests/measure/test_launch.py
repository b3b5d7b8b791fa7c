"""IGVM file -> launch digest, against digests computed here from first principles.

Each expected digest is computed in the test with hashlib (SEV/SEV-ES) or
sev-snp-measure's GCTX and VMSA builder (SNP), following the order QEMU
10.2 feeds the firmware (rules restated from backends/igvm.c and
target/i386/sev.c in each test's docstring); the code under test is never
its own oracle.
"""

from __future__ import annotations

import hashlib

import pytest

from harness.errors import HarnessError
from harness.igvm.builder import IgvmBuilder
from harness.igvm.defs import KVM_VMSA_GPA, PageDataType, PlatformType
from harness.measure.kvm_vmsa import HostProfile, VmType
from harness.measure.launch import predict
from tests.measure.conftest import b64, load_vector

ssm = pytest.importorskip("sevsnpmeasure.gctx", reason="sev-snp-measure (PyPI) not installed")
from sevsnpmeasure.vmsa import VMSA  # noqa: E402
from sevsnpmeasure.vmm_types import VMMType  # noqa: E402

SIG = 0x800F12  # EPYC-v4, the HostProfile default
PAGE = 0x1000


def pattern(n: int, seed: int = 1) -> bytes:
    return bytes((i * 7 + seed) & 0xFF for i in range(n))


def ssm_reset(features: int, sig: int = SIG) -> bytes:
    return bytes(VMSA.build_save_area(0xFFFFFFF0, features, sig, VMMType.QEMU))


def builder(*platforms):
    b = IgvmBuilder()
    masks = {p: b.platform(p) for p in platforms}
    return b, masks


# --------------------------------------------------------------------- SEV
def test_sev_digest_pages_zero_pages_unmeasured_and_inserts():
    """SEV: SHA-256 of measured pages in directive order, data zero-padded, zero
    pages as 4096 zeros; UNMEASURED pages and parameter inserts add nothing."""
    b, mk = builder(PlatformType.SEV)
    data = pattern(5000)
    b.pages(0x100000, data)
    b.page(0x300000, None)                      # zero page
    b.page(0x400000, pattern(10), unmeasured=True)
    idx = b.parameter_area(PAGE)
    b.vp_count(idx, 0)
    b.parameter_insert(0x500000, idx)
    b.page(0x600000, pattern(100, 3))
    expected = hashlib.sha256(data + bytes(2 * PAGE - 5000) + bytes(PAGE)
                              + pattern(100, 3) + bytes(PAGE - 100)).hexdigest()
    p = predict(b.model(), "sev", 1)
    assert p.hexdigest == expected
    assert p.measured_bytes == 4 * PAGE


def test_trap_zero_pages_measured_as_zeros_not_skipped():
    """QEMU (qigvm_process_mem_region + cgs_set_guest_state) hands ZERO regions to
    LAUNCH_UPDATE_DATA: 4096 zero bytes per page are measured.  coconut-svsm's
    igvmmeasure (tools/igvmmeasure/src/igvm_measure.rs, measure_page_4k:
    ``digest_es.update(data)`` with empty data) adds nothing for them."""
    b, _ = builder(PlatformType.SEV_ES)
    b.page(0x100000, pattern(PAGE))
    b.page(0x200000, None)
    host = HostProfile(vm_type=VmType.INIT2)
    p = predict(b.model(), "sev-es", 1, host)
    qemu = hashlib.sha256(pattern(PAGE) + bytes(PAGE) + ssm_reset(0)).hexdigest()
    igvmmeasure_style = hashlib.sha256(pattern(PAGE) + ssm_reset(0)).hexdigest()
    assert p.hexdigest == qemu != igvmmeasure_style


def test_sev_es_reset_vmsas_init2_match_sev_snp_measure():
    b, _ = builder(PlatformType.SEV_ES)
    b.pages(0xFFFF0000, pattern(0x10000, 9))
    host = HostProfile(vm_type=VmType.INIT2, cpu_sig=0xA00F11)
    p = predict(b.model(), "sev-es", 3, host)
    assert p.hexdigest == hashlib.sha256(pattern(0x10000, 9) + ssm_reset(0, 0xA00F11) * 3).hexdigest()
    assert p.vmsa_sources == ["reset"] * 3


def test_sev_es_igvm_file_reproduces_sevctl_sev_es_measurement():
    """sevctl's SEV-ES case (OVMF + 4 vCPUs, legacy KVM) as an IGVM file: firmware
    pages below 4 GiB, vCPU 0 at reset, vCPUs 1-3 with the OVMF AP context as VP
    contexts.  The digest and the LAUNCH_MEASURE MAC must match the vectors."""
    v = load_vector("sevctl_measurement_build_kat.json")
    case = next(c for c in v["cases"] if c.get("vmsa_cpu0"))
    fw = b64(v["data_b64"]["firmware"])
    vmsa1 = b64(v["data_b64"]["vmsa1.bin"])
    b, _ = builder(PlatformType.SEV_ES)
    b.pages((1 << 32) - len(fw), fw)
    # vmsa1.bin is KVM's output; as QEMU input it must carry only fields QEMU
    # synchronises: KVM-set bits (EFER.SVME, CR4.MCE) are harmless to keep.
    for cpu in (1, 2, 3):
        b.vp_context(KVM_VMSA_GPA, vmsa1, vp_index=cpu)
    host = HostProfile(vm_type=VmType.LEGACY, cpu_sig=0xA00F11)
    p = predict(b.model(), "sev-es", case["num_cpus"], host, policy=case["policy"])
    assert p.hexdigest == case["expected_launch_digest_hex"]
    assert p.vmsa_sources == ["reset", "igvm", "igvm", "igvm"]
    from harness.measure.measure_sev import LaunchMeasurement, check_launch_measure
    blob = LaunchMeasurement.from_base64(case["expected_b64"])
    assert check_launch_measure(b64(v["data_b64"]["tik1.bin"]), case["api_major"], case["api_minor"],
                                case["build_id"], case["policy"], p.digest, blob)


def test_sev_es_legacy_refuses_sev_features_in_vmsa():
    """Legacy VM type: supported_sev_features is 0 (sev_init_supported_features), so
    check_vmsa_supported refuses a VMSA with sev_features (e.g. DebugSwap)."""
    b, _ = builder(PlatformType.SEV_ES)
    b.page(0x100000, pattern(16))
    b.vp_context(KVM_VMSA_GPA, ssm_reset(0x20))
    with pytest.raises(HarnessError, match="legacy"):
        predict(b.model(), "sev-es", 1)
    p = predict(b.model(), "sev-es", 1, HostProfile(vm_type=VmType.INIT2))
    assert p.sev_features == 0x20
    assert p.hexdigest == hashlib.sha256(pattern(16) + bytes(PAGE - 16) + ssm_reset(0x20)).hexdigest()


# --------------------------------------------------------------------- SNP
def test_snp_chain_with_zero_unmeasured_secrets_cpuid_and_vmsas():
    """SNP: NORMAL pages; IGVM zero pages as NORMAL pages of zeros (ZERO regions go
    through launch_update_data); UNMEASURED, SECRETS, CPUID typed pages; then one VMSA
    per vCPU at GPA 0xFFFFFFFFF000, reset state with sev_features SNP_ACTIVE."""
    b, _ = builder(PlatformType.SEV_SNP)
    b.pages(0x100000, pattern(2 * PAGE))
    b.zero_pages(0x200000, 2)
    b.page(0x300000, None, unmeasured=True)
    b.page(0x400000, None, data_type=PageDataType.SECRETS)
    b.page(0x401000, None, data_type=PageDataType.CPUID_DATA)
    g = ssm.GCTX()
    g.update_normal_pages(0x100000, pattern(2 * PAGE))
    g.update_normal_pages(0x200000, bytes(2 * PAGE))
    g.update_unmeasured_pages(0x300000, PAGE)
    g.update_secrets_page(0x400000)
    g.update_cpuid_page(0x401000)
    for _ in range(2):
        g.update_vmsa_page(ssm_reset(0x1))
    p = predict(b.model(), "sev-snp", 2)
    assert p.hexdigest == g.hex_ld()
    assert p.sev_features == 0x1


def test_trap_snp_parameter_insert_queued_before_preceding_run():
    """backends/igvm.c flushes a page run only when a non-continuing page arrives or at
    the end; qigvm_directive_parameter_insert calls set_guest_state at once.  SNP
    queues launch updates in call order, so the insert precedes the pages before it."""
    b, _ = builder(PlatformType.SEV_SNP)
    idx = b.parameter_area(PAGE)
    b.pages(0x100000, pattern(2 * PAGE))
    b.parameter_insert(0x800000, idx)
    qemu = ssm.GCTX()
    qemu.update_unmeasured_pages(0x800000, PAGE)
    qemu.update_normal_pages(0x100000, pattern(2 * PAGE))
    qemu.update_vmsa_page(ssm_reset(0x1))
    file_order = ssm.GCTX()
    file_order.update_normal_pages(0x100000, pattern(2 * PAGE))
    file_order.update_unmeasured_pages(0x800000, PAGE)
    file_order.update_vmsa_page(ssm_reset(0x1))
    p = predict(b.model(), "sev-snp", 1)
    assert p.hexdigest == qemu.hex_ld() != file_order.hex_ld()


def test_snp_2mib_page_is_512_page_updates():
    b, _ = builder(PlatformType.SEV_SNP)
    b.page(0x200000, pattern(PAGE), large=True)
    g = ssm.GCTX()
    g.update_normal_pages(0x200000, pattern(PAGE) + bytes(0x200000 - PAGE))
    g.update_vmsa_page(ssm_reset(0x1))
    assert predict(b.model(), "sev-snp", 1).hexdigest == g.hex_ld()


def test_snp_vp_context_equal_to_reset_state_measures_like_reset():
    """A VP context holding exactly the QEMU reset VMSA passes QEMU and KVM unchanged."""
    b, _ = builder(PlatformType.SEV_SNP)
    b.page(0x100000, pattern(64))
    b.vp_context(KVM_VMSA_GPA, ssm_reset(0x21), vp_index=0)
    g = ssm.GCTX()
    g.update_normal_pages(0x100000, pattern(64) + bytes(PAGE - 64))
    g.update_vmsa_page(ssm_reset(0x21))
    g.update_vmsa_page(ssm_reset(0x21))  # vCPU 1: reset state, sev_features from vCPU 0
    p = predict(b.model(), "sev-snp", 2)
    assert p.hexdigest == g.hex_ld()
    assert p.vmsa_sources == ["igvm", "reset"]


def test_snp_id_block_ld_compared():
    b, _ = builder(PlatformType.SEV_SNP)
    b.page(0x100000, pattern(64))
    g = ssm.GCTX()
    g.update_normal_pages(0x100000, pattern(64) + bytes(PAGE - 64))
    g.update_vmsa_page(ssm_reset(0x1))
    b.snp_id_block(ld=g.ld())
    b.guest_policy(0x30000)
    p = predict(b.model(), "sev-snp", 1)
    assert p.as_dict()["id_block_matches"] is True
    assert p.policy == 0x30000


def test_shared_flag_does_not_stop_measurement():
    """QEMU ignores IGVM_PAGE_DATA_FLAGS shared: the page is measured like any other."""
    b, _ = builder(PlatformType.SEV)
    b.page(0x100000, pattern(8), shared=True)
    assert predict(b.model(), "sev", 1).hexdigest == hashlib.sha256(pattern(8) + bytes(PAGE - 8)).hexdigest()


# ------------------------------------------------------------- refusals
def _file_with(platform, build):
    b, _ = builder(platform)
    b.page(0x100000, pattern(16))
    build(b)
    return b.model()


@pytest.mark.parametrize("platform,build,vcpus,match", [
    (PlatformType.SEV, lambda b: b.vp_context(KVM_VMSA_GPA, ssm_reset(0)), 1, "VP context cannot run on SEV"),
    (PlatformType.SEV_ES, lambda b: b.page(0x200000, None, data_type=PageDataType.SECRETS), 1, "SECRETS"),
    (PlatformType.SEV, lambda b: b.page(0x200000, None, data_type=PageDataType.CPUID_XF), 1, "CPUID"),
    (PlatformType.SEV_ES, lambda b: b.vp_context(0x1000, ssm_reset(0)), 1, "GPA"),
    (PlatformType.SEV_ES, lambda b: b.vp_context(KVM_VMSA_GPA, ssm_reset(0), vp_index=2), 2, "out of bounds"),
    (PlatformType.SEV_SNP, lambda b: b.vp_context(KVM_VMSA_GPA, ssm_reset(0)), 1, "SNP_ACTIVE"),
    (PlatformType.SEV_ES, lambda b: b.vp_context(KVM_VMSA_GPA, ssm_reset(1)), 1, "SNP_ACTIVE"),
    (PlatformType.SEV_SNP, lambda b: b.error_range(0x0, PAGE), 1, "Unknown header type"),
    (PlatformType.SEV_SNP, lambda b: (b.snp_id_block(), b.snp_id_block()), 1, "second SNP ID block"),
])
def test_refusals(platform, build, vcpus, match):
    with pytest.raises(HarnessError, match=match) as exc:
        predict(_file_with(platform, build), {PlatformType.SEV: "sev", PlatformType.SEV_ES: "sev-es",
                                             PlatformType.SEV_SNP: "sev-snp"}[platform], vcpus)
    assert exc.value.exit_code == 1
    assert "\n" not in str(exc.value)


def test_refuses_platform_not_in_file():
    b, _ = builder(PlatformType.SEV_SNP)
    b.page(0x100000, pattern(16))
    with pytest.raises(HarnessError, match="no SEV_ES platform"):
        predict(b.model(), "sev-es", 1)
    with pytest.raises(HarnessError, match="has no launch measurement"):
        predict(b.model(), "tdx", 1)


def test_refuses_policy_platform_mismatch():
    b, _ = builder(PlatformType.SEV, PlatformType.SEV_ES)
    b.page(0x100000, pattern(16))
    with pytest.raises(HarnessError, match="ES bit"):
        predict(b.model(), "sev-es", 1, policy=0x1)
    with pytest.raises(HarnessError, match="ES bit"):
        predict(b.model(), "sev", 1, policy=0x5)


def test_page_of_other_platform_breaks_the_run():
    """A skipped directive for another platform ends the run (indices must be consecutive);
    for SEV the digest is unchanged, but the number of launch updates grows."""
    b, mk = builder(PlatformType.SEV, PlatformType.SEV_SNP)
    b.page(0x100000, pattern(16), mask=mk[PlatformType.SEV])
    b.page(0x900000, pattern(16), mask=mk[PlatformType.SEV_SNP])
    b.page(0x101000, pattern(16), mask=mk[PlatformType.SEV])
    p = predict(b.model(), "sev", 1)
    assert p.updates == 2
    assert p.hexdigest == hashlib.sha256((pattern(16) + bytes(PAGE - 16)) * 2).hexdigest()


def test_sev_ovmf_as_igvm_matches_sev_snp_measure_vector():
    """sev-snp-measure's SEV case without -kernel (OvmfX64 fixture): the launch digest is
    SHA-256 of the firmware; the same bytes as IGVM pages below 4 GiB give the same digest."""
    v = load_vector("ssm_launch_digest_kat.json")
    cases = [c for c in v["cases"] if c["mode"] == "sev" and c["kernel"] is None]
    assert cases
    for c in cases:
        fw = b64(v["fixtures_b64"][c["ovmf"]])
        b, _ = builder(PlatformType.SEV)
        b.pages((1 << 32) - len(fw), fw)
        assert predict(b.model(), "sev", c["vcpus"]).hexdigest == c["expected_ld"]


def test_short_vp_context_refused():
    b, _ = builder(PlatformType.SEV_ES)
    b.page(0x100000, pattern(16))
    b.vp_context(KVM_VMSA_GPA, bytes(0x600))
    with pytest.raises(HarnessError, match="shorter than QEMU's sev_es_save_area"):
        predict(b.model(), "sev-es", 1, HostProfile(vm_type=VmType.INIT2))

"""SEV digest/HMAC and SNP page-chain primitives against independent oracles.

Oracles: virtee/sev and virtee/sevctl known answers (../shared/vectors) and the
PyPI sev-snp-measure GCTX class.
"""

from __future__ import annotations

import hashlib
import random

import pytest

from harness.errors import HarnessError
from harness.measure.measure_sev import LaunchMeasurement, SevDigest, check_launch_measure, \
    launch_measure_mac
from harness.measure.measure_snp import SnpLaunchDigest, SnpPageType, VMSA_GPA
from tests.measure.conftest import b64, load_vector, vector_cases

gctx = pytest.importorskip("sevsnpmeasure.gctx", reason="sev-snp-measure (PyPI) not installed")


# ------------------------------------------------------------------ SEV HMAC
def test_launch_measure_hmac_virtee_sev_kat():
    v = load_vector("sev_launch_measure_hmac_kat.json")
    for c in v["cases"]:
        mac = launch_measure_mac(bytes.fromhex(c["tik"]), c["api_major"], c["api_minor"], c["build"],
                                 c["policy"], bytes.fromhex(c["launch_digest"]), bytes.fromhex(c["mnonce"]))
        assert mac.hex() == c["expected_measure"]


# The "-kernel" case measures QEMU's kernel-hashes table inside OVMF, which an IGVM
# launch never has; it is left out of the table.
@pytest.mark.parametrize("case", vector_cases("sevctl_measurement_build_kat.json",
                                              keep=lambda c: "kernel" not in c))
def test_sevctl_measurement_build(case):
    """sevctl 'measurement build' table: digest + HMAC + blob format."""
    v = load_vector("sevctl_measurement_build_kat.json")
    data = v["data_b64"]
    tik = b64(data["tik1.bin"])
    expected = LaunchMeasurement.from_base64(case["expected_b64"])
    if "launch_digest_b64" in case:
        digest = b64(case["launch_digest_b64"])
    else:
        h = SevDigest()
        h.update(b64(data["firmware"]))
        if case.get("vmsa_cpu0"):
            h.update(b64(data["vmsa0.bin"]))
            for _ in range(case["num_cpus"] - 1):
                h.update(b64(data["vmsa1.bin"]))
            assert h.hexdigest() == case["expected_launch_digest_hex"]
        digest = h.digest()
    ok = check_launch_measure(tik, case["api_major"], case["api_minor"], case["build_id"], case["policy"],
                              digest, expected)
    assert ok
    # one flipped digest bit must fail the check
    bad = bytes([digest[0] ^ 1]) + digest[1:]
    assert not check_launch_measure(tik, case["api_major"], case["api_minor"], case["build_id"],
                                    case["policy"], bad, expected)
    assert expected.to_base64() == case["expected_b64"]


def test_launch_measurement_rejects_bad_blob():
    with pytest.raises(HarnessError, match="48"):
        LaunchMeasurement.from_base64("AAAA")
    with pytest.raises(HarnessError, match="base64"):
        LaunchMeasurement.from_base64("not base64!")


def test_sev_digest_zero_padding_equals_explicit_zeros():
    h1, h2 = SevDigest(), SevDigest()
    h1.update_padded(b"abc", 0x1000)
    h1.update_zeros(0x300000)
    h2.update(b"abc" + bytes(0x1000 - 3) + bytes(0x300000))
    assert h1.digest() == h2.digest() == hashlib.sha256(b"abc" + bytes(0x300FFD)).digest()
    with pytest.raises(HarnessError):
        h1.update_padded(bytes(0x1001), 0x1000)


# ------------------------------------------------------------------ SNP chain
def _pages(seed: int, n: int) -> bytes:
    rnd = random.Random(seed)
    return bytes(rnd.getrandbits(8) for _ in range(n * 0x1000))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_snp_chain_matches_sev_snp_measure_gctx(seed):
    """Random sequences of every page type: our chain == sevsnpmeasure.gctx.GCTX."""
    rnd = random.Random(seed)
    ours, ref = SnpLaunchDigest(), gctx.GCTX()
    for _ in range(12):
        gpa = rnd.randrange(0, 1 << 40) & ~0xFFF
        op = rnd.choice(["normal", "zero", "unmeasured", "secrets", "cpuid", "vmsa"])
        if op == "normal":
            data = _pages(rnd.random(), rnd.randint(1, 3))
            ours.normal_pages(gpa, data)
            ref.update_normal_pages(gpa, data)
        elif op == "zero":
            ours.typed_pages(SnpPageType.ZERO, gpa, 0x2000)
            ref.update_zero_pages(gpa, 0x2000)
        elif op == "unmeasured":
            ours.typed_pages(SnpPageType.UNMEASURED, gpa, 0x1000)
            ref.update_unmeasured_pages(gpa, 0x1000)
        elif op == "secrets":
            ours.typed_pages(SnpPageType.SECRETS, gpa, 0x1000)
            ref.update_secrets_page(gpa)
        elif op == "cpuid":
            ours.typed_pages(SnpPageType.CPUID, gpa, 0x1000)
            ref.update_cpuid_page(gpa)
        else:
            page = bytearray(_pages(rnd.random(), 1))
            page[0x2F0:0x300] = bytes(16)  # GCTX hashes the page as given
            ours.vmsa_page(bytes(page))
            ref.update_vmsa_page(bytes(page))
        assert ours.ld == ref.ld()


def test_snp_vmsa_tsc_fields_are_not_measured():
    """GUEST_TSC_SCALE/OFFSET (0x2F0..0x2FF) do not change the digest; a byte next to them does."""
    page = bytearray(0x1000)
    a, b, c = SnpLaunchDigest(), SnpLaunchDigest(), SnpLaunchDigest()
    a.vmsa_page(bytes(page))
    page[0x2F0:0x300] = b"\xAA" * 16
    b.vmsa_page(bytes(page))
    page[0x300] = 1
    c.vmsa_page(bytes(page))
    assert a.ld == b.ld != c.ld


def test_generated_gctx_examples():
    v = load_vector("generated_snp_gctx_examples.json")
    data = {k: b64(x) for k, x in v["data_b64"].items()}
    ex = v["examples"]
    ld = SnpLaunchDigest()
    for step in ex[0]["steps"]:
        if step["op"] == "update_normal_pages":
            ld.normal_pages(int(step["gpa"], 16), data[step["data"]])
        else:
            ld.vmsa_page(data[step["data"]], VMSA_GPA)
    assert ld.hexdigest() == ex[0]["expected_ld"]
    ld = SnpLaunchDigest()
    ops = {"update_zero_pages": SnpPageType.ZERO, "update_unmeasured_pages": SnpPageType.UNMEASURED,
           "update_secrets_page": SnpPageType.SECRETS, "update_cpuid_page": SnpPageType.CPUID}
    for step in ex[1]["steps"]:
        ld.typed_pages(ops[step["op"]], int(step["gpa"], 16), int(step.get("len", "0x1000"), 16))
    assert ld.hexdigest() == ex[1]["expected_ld"]
    # which GPA the generator used is not recorded; find it among the obvious ones
    found = {}
    for gpa in (0x0, 0x100000, 0x200000, 0x1000):
        z, n = SnpLaunchDigest(), SnpLaunchDigest()
        z.normal_zero_pages(gpa, 0x1000)
        n.typed_pages(SnpPageType.ZERO, gpa, 0x1000)
        if z.hexdigest() == ex[2]["normal_zero_page_ld"]:
            found["normal"] = gpa
        if n.hexdigest() == ex[2]["native_zero_type_ld"]:
            found["zero"] = gpa
    assert found.get("normal") is not None and found.get("normal") == found.get("zero")


def test_ovmf_pages_digest_matches_sev_snp_measure_vector():
    """The LD after the AmdSev OVMF fixture (as NORMAL pages below 4 GiB) == the recorded one."""
    v = load_vector("ssm_launch_digest_kat.json")
    ovmf = b64(v["fixtures_b64"]["ovmf_AmdSev_suffix.bin"])
    assert len(ovmf) % 0x1000 == 0
    ld = SnpLaunchDigest()
    ld.normal_pages((1 << 32) - len(ovmf), ovmf)
    assert ld.hexdigest() == v["snp_ovmf_hash_ovmf_AmdSev_suffix"]


def test_parallel_contents_equal_serial_and_gctx():
    """Long NORMAL runs hash page contents on worker threads; the chain must not change."""
    from harness.measure import measure_snp
    n = 2 * measure_snp._BATCH + 7
    data = _pages(42, 8)
    pages = [memoryview(data)[(i % 8) * 0x1000:((i % 8) + 1) * 0x1000] for i in range(n)]
    pages[5] = None  # a zero page inside the run
    pages[9] = b"short"  # zero-padded
    ref = gctx.GCTX()
    for i, p in enumerate(pages):
        page = bytes(0x1000) if p is None else bytes(p) + bytes(0x1000 - len(p))
        ref.update_normal_pages(0x100000 + i * 0x1000, page)
    for workers in (1, 2):
        ld = SnpLaunchDigest()
        ld.normal_page_list(0x100000, pages, 0x1000, workers=workers)
        assert ld.ld == ref.ld() and ld.pages == n


@pytest.mark.parametrize("workers", [2, 3, 5])
def test_parallel_chain_any_worker_count(workers):
    """More threads than batches, and a run that is not a whole number of
    batches: the fold still sees every page once, in order."""
    from harness.measure import measure_snp
    n = 3 * measure_snp._BATCH + 1
    data = _pages(7, n)
    ref = gctx.GCTX()
    ref.update_normal_pages(0x200000, data)
    ld = SnpLaunchDigest()
    ld.normal_page_list(0x200000, [memoryview(data)[i * 0x1000:(i + 1) * 0x1000] for i in range(n)],
                        0x1000, workers=workers)
    assert ld.ld == ref.ld() and ld.pages == n
    whole = SnpLaunchDigest()
    whole.normal_pages(0x200000, data)  # the bytes API takes the same path
    assert whole.ld == ref.ld()


def test_parallel_chain_error_in_a_helper_thread_reaches_the_caller():
    """A unit hashlib refuses (not a buffer) raises on the caller's thread, and
    no helper thread is left behind."""
    import threading
    from harness.measure import measure_snp
    n = 4 * measure_snp._BATCH
    pages = [bytes(0x1000)] * n
    pages[-3] = 12345  # hashlib: TypeError, on whichever thread hashes that batch
    before = threading.active_count()
    with pytest.raises(TypeError):
        SnpLaunchDigest().normal_page_list(0, pages, 0x1000, workers=2)
    assert threading.active_count() == before

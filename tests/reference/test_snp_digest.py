"""SEV-SNP launch digests: the igvm crate's against the harness's, on every SNP fixture and the OVMF wraps.

For each file the crate measures (tools/igvm-oracle ``snp-digest``:
``measurement::generate_snp_measurement``):

1. the harness's replay of the crate's model (``harness.measure.crate_model``:
   its own parser and SHA-384 chain) gives the crate's digest, or the same
   refusal (MissingGuestPolicy, UnsupportedPageSize, ...): the harness reads
   pages, types, GPAs and VMSAs as the reference does;
2. where QEMU launches the file (``harness.measure.launch.predict``, the
   digest the harness predicts for QEMU 10.2 + KVM), every step on which
   QEMU's launch differs from the crate's model is attributed to a named
   difference (``crate_model.DIFFERENCES``: the VMSAs KVM builds, the order
   QEMU gives parameter inserts, shared and 2 MiB pages, the missing
   policy), each with the QEMU source line and the specification text;
   nothing is left unexplained, and the digests differ (QEMU+KVM measure
   KVM's VMSAs at 0xFFFFFFFFF000, the crate the file's).

The QEMU source lines cited in DIFFERENCES are checked against the QEMU
source set-up downloaded (test_cited_qemu_lines).
"""

from __future__ import annotations

from collections import Counter

import pytest

from harness.errors import HarnessError
from harness.igvm import model as m
from harness.igvm.builder import IgvmBuilder
from harness.igvm.defs import PlatformType
from harness.igvm.parser import parse
from harness.measure import crate_model as cm
from harness.reference import oracle
from tests.reference import inputs
from tests.reference.conftest import record_counts

SNP_POLICY = 0x30000  # QEMU's default sev-snp-guest policy (target/i386/sev.c DEFAULT_SEV_SNP_POLICY)


def _declares_snp(data: bytes) -> bool:
    try:
        return parse(data).platform(PlatformType.SEV_SNP) is not None
    except HarnessError:
        return False


def with_snp_policy(data: bytes, policy: int = SNP_POLICY) -> bytes:
    """The same file with a GUEST_POLICY for its SNP platform (the crate measures only then;
    the policy is not part of either digest)."""
    f = parse(data)
    b = IgvmBuilder()
    for h in f.platforms:
        b.add(h)
    mask = f.platform(PlatformType.SEV_SNP).compatibility_mask
    b.add(m.GuestPolicy(policy, mask))
    for h in f.initializations:
        b.add(h)
    for d in f.directives:
        b.add(d)
    return b.build()


def ovmf_wraps() -> dict[str, bytes]:
    """Debian's OVMF.amdsev wrapped for SEV-SNP (1 and 2 vCPUs), as is and with a policy."""
    from harness import assets
    from harness.igvm import ovmf, wrap_ovmf

    try:
        fw = ovmf.load(str(assets.path("ovmf-amdsev")))
    except HarnessError as exc:
        pytest.fail(f"no OVMF from set-up: {exc}", pytrace=False)
    out = {}
    for vcpus in (1, 2):
        data = wrap_ovmf.wrap(fw, ("sev-snp",), vcpus)
        out[f"ovmf-amdsev/{vcpus}"] = data
        out[f"ovmf-amdsev/{vcpus}+policy"] = with_snp_policy(data)
    return out


def snp_inputs() -> dict[str, bytes]:
    out = {n: d for n, d in inputs.fixtures().items() if _declares_snp(d)}
    # the builder bases without a policy get one too, so that the crate measures them
    out.update({f"{n}+policy": with_snp_policy(d) for n, d in list(out.items())
                if n.startswith(("base:", "seed:snp", "matrix:")) and "+" not in n})
    return out


def _vcpus(name: str) -> int:
    return 2 if name.startswith("ovmf-amdsev/2") else 1


def check(blobs: dict[str, bytes]) -> tuple[dict, list[str]]:
    answers = oracle.snp_digest_bytes(blobs)
    c: Counter = Counter(inputs=len(blobs))
    problems = []
    for name, data in blobs.items():
        a = answers[name]
        err = a.get("error", "")
        if "panic" in a or a.get("read_error"):
            problems.append(f"{name}: no answer from the crate: {a}")
            continue
        if err.startswith("bound:"):
            # the crate walks a parameter area page by page with no bound of its own;
            # the oracle refuses first, and so must the harness's replay
            c["past the oracle's bound"] += 1
            try:
                cm.crate_steps(parse(data))
                problems.append(f"{name}: the oracle refuses ({err}), the replay does not")
            except HarnessError:
                pass
            continue
        if err.startswith(("parse:", "no SEV-SNP platform")):
            c["not parsed / no SNP platform (crate)"] += 1
            continue
        f = parse(data)
        x = cm.explain(f, _vcpus(name), oracle_digest=a)
        if "digest" in a:
            c["crate measured"] += 1
            if x["crate_model"] == a["digest"]:
                c["replay == crate"] += 1
            else:
                problems.append(f"{name}: replay {x['crate_model'] or x.get('crate_model_error')}"
                                f" != crate {a['digest']}")
        else:
            c["crate refused"] += 1
            variant = err.rsplit("(", 1)[-1].rstrip(")")
            if variant not in (x.get("crate_model_error") or ""):
                problems.append(f"{name}: crate refuses ({err}), replay: "
                                f"{x['crate_model'] or x.get('crate_model_error')}")
            else:
                c["replay refuses alike"] += 1
        if x["qemu"] is None:
            c["QEMU refuses the file"] += 1
            continue
        c["QEMU launches"] += 1
        for u in x["unexplained"]:
            problems.append(f"{name}: unexplained: {u}")
        ids = [d["id"] for d in x["differences"]]
        for i in ids:
            c[f"difference {i}"] += 1
        if "digest" in a:
            if "vmsa" not in ids or x["qemu"] == a["digest"]:
                problems.append(f"{name}: QEMU {x['qemu']} vs crate {a['digest']} with {ids}")
            else:
                c["QEMU != crate, explained"] += 1
    return dict(c), problems


def test_snp_fixtures(oracle_binary):
    counts, problems = check(snp_inputs())
    record_counts("SNP digests, fixtures", counts)
    assert counts.get("replay == crate", 0) >= 20
    assert counts.get("QEMU != crate, explained", 0) >= 5
    assert not problems, "\n".join(problems[:40])


def test_ovmf_wraps(oracle_binary):
    counts, problems = check(ovmf_wraps())
    record_counts("SNP digests, OVMF wraps", counts)
    # as wrapped (no GUEST_POLICY) the crate refuses; with one it measures
    assert counts.get("crate refused") == 2 and counts.get("replay == crate") == 2
    assert counts.get("QEMU != crate, explained") == 2 and counts.get("difference policy") == 2
    assert not problems, "\n".join(problems[:40])


# --------------------------------------------------------------- each difference, small

def _snp_file(build) -> bytes:
    b = IgvmBuilder()
    b.platform(PlatformType.SEV_SNP)
    b.guest_policy(SNP_POLICY)
    build(b)
    return b.build()


def _crate_digest(data: bytes) -> str:
    a = oracle.snp_digest_bytes({"f": data})["f"]
    assert "digest" in a, a
    return a["digest"]


def test_shared_pages_are_left_out_by_the_crate_and_measured_by_qemu(oracle_binary):
    """igvm_defs IgvmPageDataFlags.shared: 'not part of the launch measurement'; QEMU
    (backends/igvm.c:239) never reads the flag."""
    with_shared = _snp_file(lambda b: (b.page(0x1000, b"A" * 4096),
                                       b.page(0x2000, b"B" * 4096, shared=True)))
    without = _snp_file(lambda b: b.page(0x1000, b"A" * 4096))
    assert _crate_digest(with_shared) == _crate_digest(without)
    x = cm.explain(parse(with_shared), 1)
    assert [d["id"] for d in x["differences"]] == ["vmsa", "shared"] and not x["unexplained"]


def test_parameter_insert_order(oracle_binary):
    """QEMU applies a PARAMETER_INSERT before the page run still pending
    (backends/igvm.c:363/514); the crate measures in file order, as the IGVM text asks."""
    def build(b):
        b.pages(0x100000, b"P" * 0x2000)
        area = b.parameter_area(0x1000)
        b.vp_count(area, 0)
        b.parameter_insert(0x200000, area)
    data = _snp_file(build)
    x = cm.explain(parse(data), 1)
    assert x["crate_model"] == _crate_digest(data)
    assert [d["id"] for d in x["differences"]] == ["vmsa", "order"] and not x["unexplained"]


def test_a_page_without_data_is_normal_zeros_in_both(oracle_binary):
    """Agreement, not a difference: both measure NORMAL with SHA-384 of a zero page
    (QEMU: backends/igvm.c:247 ZERO -> target/i386/sev.c:2536 launch_update_data ->
    KVM_SEV_SNP_PAGE_TYPE_NORMAL), never the firmware's PAGE_TYPE_ZERO."""
    data = _snp_file(lambda b: b.zero_pages(0x3000, 2))
    x = cm.explain(parse(data), 1)
    assert x["crate_model"] == _crate_digest(data)
    assert [d["id"] for d in x["differences"]] == ["vmsa"] and not x["unexplained"]
    # the chain with NORMAL zero pages is the crate's; with PAGE_TYPE_ZERO it would not be
    zero_typed = cm.chain([cm.Step(3, gpa, bytes(48), 0) for gpa in (0x3000, 0x4000)])
    assert zero_typed.hex() != x["crate_model"]


def test_cited_qemu_lines(qemu_source):
    """Every ``path:line`` in DIFFERENCES points at the code it names in QEMU's source."""
    import re

    expect = {"backends/igvm.c:446": "CGS_PAGE_TYPE_VMSA", "target/i386/sev.c:2552": "sev_set_cpu_context",
              "backends/igvm.c:363": "qigvm_process_mem_page", "backends/igvm.c:514": "set_guest_state",
              "backends/igvm.c:239": "qigvm_type_to_cgs_type", "backends/igvm.c:345": "qigvm_type_to_cgs_type",
              "backends/igvm.c:298": "is_2mb_page ? 0x200000", "target/i386/sev.c:191": "DEFAULT_SEV_SNP_POLICY",
              "backends/igvm.c:247": "CGS_PAGE_TYPE_ZERO", "target/i386/sev.c:2536": "CGS_PAGE_TYPE_ZERO",
              "target/i386/sev.c:1446": "sev_snp_launch_update_data"}
    text = " ".join(d.qemu_source + " " + d.qemu for d in cm.DIFFERENCES) + " ".join(cm.AGREEMENTS)
    cited = set(re.findall(r"((?:backends|target/i386)/[\w./-]+\.c):(\d+)", text))
    assert {f"{p}:{n}" for p, n in cited} <= set(expect), cited
    for ref, needle in expect.items():
        path, line = ref.rsplit(":", 1)
        lines = (qemu_source.tree / path).read_text(errors="replace").splitlines()
        near = "\n".join(lines[int(line) - 4:int(line) + 3])  # the line, 3 either side
        assert needle in near, f"{ref} does not show {needle!r}:\n{near}"

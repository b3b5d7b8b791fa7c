"""wrap-ovmf: the IGVM file of an OVMF image, checked against the image's own tables."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness.errors import HarnessError
from harness.igvm import model as m
from harness.igvm import ovmf, wrap_ovmf
from harness.igvm.defs import KVM_VMSA_GPA, PageDataFlags, PageDataType, PlatformType
from harness.igvm.parser import parse, scan
from harness.igvm.qemu_lint import lint
from harness.igvm.vmsa import SevEsVmsa
from tests.ovmf_images import RESET_ADDR, SECTIONS, debian_ovmf, synthetic_ovmf

PAGE = 0x1000
ALL = ("native", "sev", "sev-es", "sev-snp")


def _mask(f: m.IgvmFile, ptype: PlatformType) -> int:
    return f.platform(ptype).compatibility_mask


def _pages(f, mask):
    return [d for d in f.directives if isinstance(d, m.PageData) and d.compatibility_mask & mask]


@pytest.fixture(scope="module")
def synthetic():
    return ovmf.read(synthetic_ovmf(), "syn.fd")


@pytest.fixture(scope="module")
def wrapped(synthetic):
    return wrap_ovmf.wrap(synthetic, ALL, vcpus=2)


def test_valid_and_qemu_lint_clean(wrapped):
    f, violations = scan(wrapped, strict=True)
    assert violations == []
    for p in ALL:
        errors = [x for x in lint(wrapped, platform=p) if x.severity == "error"]
        assert errors == [], p


@pytest.mark.parametrize("platform", ALL)
def test_firmware_pages_end_at_4gib(wrapped, synthetic, platform):
    f = parse(wrapped)
    mask = _mask(f, wrap_ovmf.PLATFORMS[platform])
    fw = [d for d in _pages(f, mask) if d.gpa >= synthetic.base_gpa]
    image = synthetic_ovmf()
    assert [d.gpa for d in fw] == list(range((1 << 32) - len(image), 1 << 32, PAGE))
    for d in fw:
        off = d.gpa - ((1 << 32) - len(image))
        chunk = image[off:off + PAGE]
        if any(chunk):
            assert bytes(d.data) == chunk
        else:
            assert d.data is None or not any(d.data)
        assert d.data_type == PageDataType.NORMAL and not d.flags


def test_snp_metadata_pages(wrapped):
    f = parse(wrapped)
    snp = _mask(f, PlatformType.SEV_SNP)
    below = {d.gpa: d for d in _pages(f, snp) if d.gpa < 0xFF000000}
    assert below[0x80D000].data_type == PageDataType.SECRETS
    assert below[0x80E000].data_type == PageDataType.CPUID_DATA
    want = {g for b, s, t in SECTIONS if t not in (2, 3) for g in range(b, b + s, PAGE)} - {0x812000}
    zero = {g for g, d in below.items() if d.data_type == PageDataType.NORMAL}
    assert zero == want
    assert all(below[g].data is None and not below[g].flags for g in zero)
    # no metadata page for the other platforms
    for p in (PlatformType.NATIVE, PlatformType.SEV, PlatformType.SEV_ES):
        assert all(d.gpa >= 0xFF000000 for d in _pages(f, _mask(f, p)))
    inserts = [d for d in f.directives if isinstance(d, m.ParameterInsert)]
    assert [i.gpa for i in inserts] == [0x812000]
    params = {type(d).__name__: d.byte_offset for d in f.directives if isinstance(d, m.Parameter)}
    assert sorted(params.values()) == [0, 0xC0]


def test_unmeasured_option(synthetic):
    f = parse(wrap_ovmf.wrap(synthetic, ("sev-snp",), metadata_pages="unmeasured"))
    sec = [d for d in f.directives if isinstance(d, m.PageData) and d.gpa in range(0x800000, 0x809000)]
    assert len(sec) == 9 and all(d.flags & PageDataFlags.UNMEASURED for d in sec)


def test_snp_launch_order_matches_the_metadata_table(wrapped):
    """QEMU's update queue for the wrap (pages.plan_launch replays backends/igvm.c) visits the
    metadata pages in table order, the parameter area in the SNP_SEC_MEM run's place."""
    from harness.measure.pages import plan_launch
    plan = plan_launch(parse(wrapped), "sev-snp", 2)
    gpas = [u.gpa + i * u.page_size for u in plan.updates for i in range(len(u.pages))]
    fw = list(range((1 << 32) - 0x40000, 1 << 32, PAGE))
    meta = [g for b, s, t in SECTIONS for g in range(b, b + s, PAGE)]
    assert gpas == fw + meta


@pytest.mark.parametrize("area", [0x811000, 0x82F000, 0x808000])
def test_snp_launch_order_with_the_area_at_a_section_edge(area):
    """First / last page of a section: the insert still lands in the area's place."""
    from harness.measure.pages import plan_launch
    fw = ovmf.read(synthetic_ovmf(igvm_sections=[(area, 0x1000, 0x100), (0, 0xC0, 0x101)]))
    plan = plan_launch(parse(wrap_ovmf.wrap(fw, ("sev-snp",))), "sev-snp", 1)
    gpas = [u.gpa + i * u.page_size for u in plan.updates for i in range(len(u.pages))]
    meta = [g for b, s, t in SECTIONS for g in range(b, b + s, PAGE)]
    assert gpas[-len(meta):] == meta
    assert [u.gpa for u in plan.updates if u.source == "parameter_insert"] == [area]


@pytest.mark.parametrize("platform,features", [("sev-es", 0), ("sev-snp", 1)])
def test_vmsas_from_reset_state_and_reset_block(wrapped, platform, features):
    f = parse(wrapped)
    mask = _mask(f, wrap_ovmf.PLATFORMS[platform])
    ctx = [d for d in f.directives if isinstance(d, m.VpContext) and d.compatibility_mask & mask]
    assert [c.vp_index for c in ctx] == [0, 1] and {c.gpa for c in ctx} == {KVM_VMSA_GPA}
    bsp, ap = (SevEsVmsa.from_bytes(c.data) for c in ctx)
    # x86 reset state (AMD APM vol. 2, table 14-1; QEMU x86_cpu_reset_hold): CS:IP F000:FFF0, base FFFF0000
    assert (bsp.cs.selector, bsp.cs.base, bsp.rip) == (0xF000, 0xFFFF0000, 0xFFF0)
    assert (ap.cs.base, ap.rip) == (RESET_ADDR & 0xFFFF0000, RESET_ADDR & 0xFFFF)
    for v in (bsp, ap):
        assert v.sev_features == features and v.qemu_unsupported_fields() == []
        assert (v.cr0, v.dr6, v.dr7, v.xcr0, v.x87_fcw, v.mxcsr) == (0x60000010, 0xFFFF0FF0, 0x400, 1, 0x37F, 0x1F80)
    for p in (PlatformType.NATIVE, PlatformType.SEV):
        assert not [d for d in f.directives if isinstance(d, m.VpContext) and d.compatibility_mask & _mask(f, p)]


def test_refusals(synthetic):
    bare = ovmf.read(synthetic_ovmf(sev=False, igvm=False, reset=0), "bare.fd")
    with pytest.raises(HarnessError, match="no SNP_SECRETS or CPUID section"):
        wrap_ovmf.wrap(bare, ("sev-snp",))
    with pytest.raises(HarnessError, match="no SEV-ES AP reset block"):
        wrap_ovmf.wrap(bare, ("sev-es",), vcpus=2)
    with pytest.raises(HarnessError, match="vcpus"):
        wrap_ovmf.wrap(synthetic, ("native",), vcpus=0)
    with pytest.raises(HarnessError, match="unknown platform"):
        wrap_ovmf.wrap(synthetic, ("tdx",))
    # a native wrap of the bare image is fine
    assert scan(wrap_ovmf.wrap(bare, ("native", "sev")))[1] == []


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "harness.cli", *map(str, args)],
                          capture_output=True, text=True)


def test_cli_split_and_errors(tmp_path):
    fw = tmp_path / "fw.fd"
    fw.write_bytes(synthetic_ovmf())
    r = _cli("wrap-ovmf", fw, "--split", "--vcpus", "2", "-o", tmp_path / "out.igvm")
    assert r.returncode == 0, r.stderr
    assert "other than the BSP" in r.stdout
    for p in ALL:
        out = tmp_path / f"out-{p}.igvm"
        f, violations = scan(out.read_bytes())
        assert violations == [] and [x.platform_type for x in f.platforms] == [wrap_ovmf.PLATFORMS[p]]
    junk = tmp_path / "junk.fd"
    junk.write_bytes(bytes(0x10000))
    r = _cli("wrap-ovmf", junk, "-o", tmp_path / "junk.igvm")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "not an OVMF image" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if "junk" in p.name) == ["junk.fd"]


@pytest.mark.parametrize("asset", ["ovmf-amdsev", "ovmf-generic", "ovmf-bookworm"])
def test_debian_wraps_validate(asset):
    fw = ovmf.load(debian_ovmf(asset))
    data = wrap_ovmf.wrap(fw, ALL, vcpus=4)
    assert scan(data, strict=True)[1] == []
    for p in ALL:
        assert [x for x in lint(data, platform=p) if x.severity == "error"] == [], p


def test_cli_vars_wraps_the_store_below_the_code(tmp_path):
    """--vars: store then code, as QEMU maps pflash unit 1 below unit 0
    (hw/i386/pc_sysfw.c pc_system_flash_map); the synthetic image cut in two
    at a page boundary must wrap exactly like the whole image."""
    whole = synthetic_ovmf()
    cut = len(whole) // 2 & ~(PAGE - 1)
    (tmp_path / "vars.fd").write_bytes(whole[:cut])
    (tmp_path / "code.fd").write_bytes(whole[cut:])
    (tmp_path / "whole.fd").write_bytes(whole)
    r = _cli("wrap-ovmf", tmp_path / "code.fd", "--vars", tmp_path / "vars.fd", "--quiet",
             "-o", tmp_path / "split.igvm")
    assert r.returncode == 0, r.stderr
    r = _cli("wrap-ovmf", tmp_path / "whole.fd", "--quiet", "-o", tmp_path / "whole.igvm")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "split.igvm").read_bytes() == (tmp_path / "whole.igvm").read_bytes()


@pytest.mark.parametrize("store, why", [(b"x" * 100, "not a multiple of 4096"),
                                        (bytes(17 << 20), "larger than any x86 firmware")],
                         ids=["100-bytes", "17-MiB"])   # (a 17 MiB id overflows exec's environment)
def test_cli_vars_refusals_are_one_line(tmp_path, store, why):
    (tmp_path / "code.fd").write_bytes(synthetic_ovmf())
    (tmp_path / "vars.fd").write_bytes(store)
    r = _cli("wrap-ovmf", tmp_path / "code.fd", "--vars", tmp_path / "vars.fd",
             "-o", tmp_path / "out.igvm")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and why in r.stderr, r.stderr
    assert not (tmp_path / "out.igvm").exists()

"""Round trip: files the builder writes parse to a model that serializes to
the identical bytes; page data comes back as zero-copy views."""

import pytest

from harness.errors import HarnessError
from harness.igvm import model as m
from harness.igvm.builder import IgvmBuilder, serialize
from harness.igvm.defs import KVM_VMSA_GPA, PageDataType, PlatformType
from harness.igvm.parser import load, parse
from harness.igvm.rules import IgvmFormatError


def rich_builder(revision=1):
    b = IgvmBuilder(revision=revision)
    snp = b.platform(PlatformType.SEV_SNP)
    es = b.platform(PlatformType.SEV_ES)
    native = b.platform(PlatformType.NATIVE)
    b.guest_policy(0x30000, mask=snp)
    b.pages(0x100000, bytes(range(256)) * 40)           # 10 KiB -> 3 pages
    b.page(0x200000, large=True, mask=native)            # 2 MiB zero page
    b.page(0x300000, b"secret", mask=snp, data_type=PageDataType.SECRETS)
    b.page(0x301000, mask=snp, data_type=PageDataType.CPUID_DATA)
    b.page(0x302000, mask=snp, data_type=PageDataType.CPUID_XF)
    b.page(0x303000, b"u", unmeasured=True)
    b.page(0x304000, b"s", shared=True, mask=native)
    idx = b.parameter_area(0x2000)
    b.vp_count(idx, 0)
    b.memory_map(idx, 16)
    b.environment_info(idx, 8)
    b.parameter_insert(0x400000, idx)
    b.required_memory(0x500000, 0x10000)
    b.vp_context(KVM_VMSA_GPA, bytes([0x11]) * 4096, mask=snp)
    b.vp_context(KVM_VMSA_GPA, bytes([0x22]) * 4096, mask=es, vp_index=0)
    b.vp_context(0, bytes(range(200)), mask=native)
    b.snp_id_block(mask=snp, ld=bytes(range(48)), guest_svn=7)
    b.error_range(0x600000, 0x1000, mask=snp)
    return b


@pytest.mark.parametrize("revision", [1, 2])
def test_builder_output_round_trips_byte_identical(revision):
    data = rich_builder(revision).build()
    f = parse(data)
    assert f.revision == revision
    assert serialize(f) == data


def test_model_equals_builder_model():
    b = rich_builder()
    data = b.build()
    f = parse(data)
    assert len(f.platforms) == 3 and len(f.initializations) == 1
    want = b.model().directives
    assert len(f.directives) == len(want)
    pages = [d for d in f.directives if isinstance(d, m.PageData)]
    # data comes back padded to a page; zero pages come back without data
    assert bytes(pages[0].data) == bytes(range(256)) * 16
    assert pages[3].data is None and pages[3].size == 0x200000
    assert bytes(pages[4].data)[:6] == b"secret" and not any(bytes(pages[4].data)[6:])


def test_page_data_is_zero_copy():
    data = rich_builder().build()
    f = parse(data)
    page = f.page_data()[0]
    assert isinstance(page.data, memoryview)
    assert page.data.obj is data


def test_load_maps_the_file(tmp_path):
    data = rich_builder().build()
    path = tmp_path / "x.igvm"
    path.write_bytes(data)
    f = load(path)
    assert serialize(f) == data
    assert f.mask_for(PlatformType.SEV_ES) == 2


def test_load_errors_are_one_line(tmp_path):
    with pytest.raises(HarnessError) as e:
        load(tmp_path / "missing.igvm")
    assert "missing.igvm" in str(e.value) and "\n" not in str(e.value)
    bad = tmp_path / "bad.igvm"
    bad.write_bytes(b"")
    with pytest.raises(IgvmFormatError) as e:
        load(bad)
    assert str(e.value).startswith(f"{bad}: invalid IGVM: file-too-small:")
    assert e.value.exit_code == 1
    with pytest.raises(HarnessError):
        load(tmp_path)


def test_checksum_error_message_names_both_values():
    data = bytearray(rich_builder().build())
    data[20] ^= 0xFF
    with pytest.raises(IgvmFormatError) as e:
        parse(bytes(data), source="vendor.igvm")
    msg = str(e.value)
    assert msg.startswith("vendor.igvm: invalid IGVM: checksum-mismatch: header says 0x")
    assert "computed 0x" in msg


def test_parse_unchecked_keeps_unknown_types_raw():
    b = IgvmBuilder()
    b.platform(PlatformType.SEV_SNP)
    b.raw_header(0x80000400, b"12345678")
    data = b.build()
    with pytest.raises(IgvmFormatError):
        parse(data)
    f = parse(data, check=False)
    raw = f.directives[0]
    assert isinstance(raw, m.RawHeader) and raw.optional and raw.body == b"12345678"
    assert serialize(f) == data

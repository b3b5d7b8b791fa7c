"""A golden byte vector for every variable-header type.

Each body below is written by hand with struct.pack from the structure
definitions in microsoft/igvm igvm_defs/src/lib.rs (field order and widths
commented), never produced by the builder.  Each case is wrapped into a
whole file by ``assemble`` (also written from the spec: fixed header,
8-byte aligned TLV headers, CRC32 over fixed + variable headers).  The
tests check both directions: serialize(model) == hand bytes, and
parse(hand bytes) == model.
"""

import struct
import zlib

import pytest

from harness.igvm import model as m
from harness.igvm.builder import serialize
from harness.igvm.parser import parse, scan

SNP_PLATFORM = (0x1, struct.pack("<IBBHQ", 1, 0, 2, 1, 0))      # mask 1, SEV_SNP v1
NATIVE_PLATFORM = (0x1, struct.pack("<IBBHQ", 1, 0, 0, 1, 0))   # mask 1, NATIVE v1
VSM_PLATFORM = (0x1, struct.pack("<IBBHQ", 1, 2, 1, 1, 0))      # mask 1, VSM, highest_vtl 2
CCA_PLATFORM = (0x1, struct.pack("<IBBHQ", 1, 0, 6, 1, 0))      # mask 1, CCA v1


def _fixed_size(version):
    return 24 if version == 1 else 32


def data_start(headers, version=1):
    """File offset of the first file-data byte for these (type, body) headers."""
    return _fixed_size(version) + sum(8 + (len(b) + 7) // 8 * 8 for _, b in headers)


def assemble(headers, file_data=b"", version=1, arch=0):
    vh = b"".join(struct.pack("<II", t, len(b)) + b + bytes((-len(b)) % 8) for t, b in headers)
    if not file_data:
        file_data = bytes(8)  # the reference parser needs a non-empty data section
    fixed_size = _fixed_size(version)
    total = fixed_size + len(vh) + len(file_data)

    def fixed(crc):
        words = [0x4D564749, version, fixed_size, len(vh), total, crc]
        if version == 2:
            words += [arch, 4096]
        return struct.pack(f"<{len(words)}I", *words)

    return fixed(zlib.crc32(fixed(0) + vh)) + vh + file_data


def _platform_model(body):
    mask, vtl, ptype, ver, sgb = struct.unpack("<IBBHQ", body)
    return m.SupportedPlatform(mask, ptype, ver, vtl, sgb)


VMSA = bytes((i * 7) & 0xFF for i in range(4096))
NATIVE_CTX = struct.pack("<29Q", *range(1, 30)) + bytes(4096 - 232)  # 232-byte context + zeros
# VbsVpContextHeader {register_count: u32} + one VbsVpContextRegister
# {vtl u8, register_name u32, mbz [u8;11], value [u8;16]} (32 bytes)
VBS_CTX = struct.pack("<I", 1) + struct.pack("<BI11s16s", 0, 0x00020000, bytes(11), bytes(16))


def _cases():
    c = []
    # -- 0x1 SUPPORTED_PLATFORM: u32 mask, u8 highest_vtl, u8 platform_type,
    #    u16 platform_version, u64 shared_gpa_boundary
    body = struct.pack("<IBBHQ", 4, 0, 3, 1, 0x8000000000)  # TDX, mask 4
    c.append(("supported_platform", [SNP_PLATFORM, (0x1, struct.pack("<IBBHQ", 2, 0, 5, 1, 0)),
                                     (0x1, body)],
              None, 1, 0, [
                  m.SupportedPlatform(1, 2, 1, 0, 0), m.SupportedPlatform(2, 5, 1, 0, 0),
                  m.SupportedPlatform(4, 3, 1, 0, 0x8000000000)]))
    # -- 0x101 GUEST_POLICY: u64 policy, u32 mask, u32 reserved
    c.append(("guest_policy", [SNP_PLATFORM, (0x101, struct.pack("<QII", 0x30000, 1, 0))],
              None, 1, 0, [m.GuestPolicy(0x30000, 1)]))
    # -- 0x102 RELOCATABLE_REGION: u32 mask, u16 vp_index, u8 vtl, u8 flags,
    #    u64 alignment, u64 region gpa, u64 region size, u64 min gpa, u64 max gpa
    #    (needs a VBS VP context for VP 0 / VTL 0: NoMatchingVpContext)
    reloc = struct.pack("<IHBB5Q", 1, 0, 0, 0x3, 0x200000, 0x200000, 0x100000, 0x200000,
                        0x40000000)
    vsm_hdrs = [VSM_PLATFORM, (0x102, reloc), (0x304, None)]
    fo = data_start([(t, b or bytes(20)) for t, b in vsm_hdrs])
    vsm_hdrs[2] = (0x304, struct.pack("<QIIHH", 0, 1, fo, 0, 0))  # gpa, mask, file_offset, vp, rsvd
    c.append(("relocatable_region", vsm_hdrs, VBS_CTX, 1, 0, [
        m.RelocatableRegion(1, 0, 0, 3, 0x200000, 0x200000, 0x100000, 0x200000, 0x40000000),
        m.VpContext(0, 1, 0, VBS_CTX)]))
    # -- 0x103 PAGE_TABLE_RELOCATION: u32 mask, u16 vp_index, u8 vtl, u8 reserved,
    #    u64 gpa, u64 size, u64 used_size
    pt = struct.pack("<IHBB3Q", 1, 0, 0, 0, 0x10000, 0x4000, 0x2000)
    hdrs = [VSM_PLATFORM, (0x103, pt), (0x304, bytes(20))]
    hdrs[2] = (0x304, struct.pack("<QIIHH", 0, 1, data_start(hdrs), 0, 0))
    c.append(("page_table_relocation", hdrs, VBS_CTX, 1, 0, [
        m.PageTableRelocation(1, 0, 0, 0x10000, 0x4000, 0x2000), m.VpContext(0, 1, 0, VBS_CTX)]))
    # -- 0x106 CCA_POLICY (v2, AARCH64): u32 mask, u32 reserved, u64 required
    #    zeroes, u64 required ones, u8 hash_algorithm, u8 lfa_policy, [u8; 6]
    c.append(("cca_policy", [CCA_PLATFORM,
                             (0x106, struct.pack("<IIQQBB6s", 1, 0, 0x2, 0x1, 2, 1, bytes(6)))],
              None, 2, 1, [m.CcaPolicy(1, 0x2, 0x1, 2, 1)]))
    # -- 0x301 PARAMETER_AREA: u64 number_of_bytes, u32 index, u32 file_offset
    # -- 0x303 PARAMETER_INSERT: u64 gpa, u32 mask, u32 index
    # -- 0x307..0x313 IGVM_VHS_PARAMETER: u32 index, u32 byte_offset
    params = [(0x307, 0), (0x308, 8), (0x309, 16), (0x30A, 24), (0x30C, 32), (0x30E, 40),
              (0x30F, 48), (0x310, 56), (0x312, 64), (0x313, 72)]
    hdrs = [SNP_PLATFORM, (0x301, struct.pack("<QII", 0x2000, 0, 0))]
    hdrs += [(t, struct.pack("<II", 0, off)) for t, off in params]
    hdrs.append((0x303, struct.pack("<QII", 0x300000, 1, 0)))
    classes = [m.VpCountParameter, m.Srat, m.Madt, m.MmioRanges, m.MemoryMap, m.CommandLine,
               m.Slit, m.Pptt, m.DeviceTree, m.EnvironmentInfo]
    c.append(("parameters", hdrs, None, 1, 0,
              [m.ParameterArea(0x2000, 0)] + [cls(0, off) for cls, (_, off) in zip(classes, params)]
              + [m.ParameterInsert(0x300000, 1, 0)]))
    # parameter area with initial contents from file data
    hdrs = [SNP_PLATFORM, (0x301, None), (0x303, struct.pack("<QII", 0x300000, 1, 5))]
    fo = data_start([(t, b or bytes(16)) for t, b in hdrs])
    hdrs[1] = (0x301, struct.pack("<QII", 0x1000, 5, fo))
    initial = b"params" + bytes(4090)
    c.append(("parameter_area_data", hdrs, initial, 1, 0,
              [m.ParameterArea(0x1000, 5, initial), m.ParameterInsert(0x300000, 1, 5)]))
    # -- 0x302 PAGE_DATA: u64 gpa, u32 mask, u32 file_offset, u32 flags,
    #    u16 data_type, u16 reserved.  flags: bit0 2MB, bit1 unmeasured, bit2 shared
    hdrs = [SNP_PLATFORM, (0x302, None), (0x302, struct.pack("<QIIIHH", 0x200000, 1, 0, 1, 0, 0)),
            (0x302, None), (0x302, None), (0x302, None)]
    fo = data_start([(t, b or bytes(24)) for t, b in hdrs])
    page = b"\x90" * 4096
    hdrs[1] = (0x302, struct.pack("<QIIIHH", 0x1000, 1, fo, 0, 0, 0))          # NORMAL with data
    hdrs[3] = (0x302, struct.pack("<QIIIHH", 0x2000, 1, fo, 2, 0, 0))          # unmeasured, shared data
    hdrs[4] = (0x302, struct.pack("<QIIIHH", 0x3000, 1, 0, 0, 1, 0))           # SECRETS zero page
    hdrs[5] = (0x302, struct.pack("<QIIIHH", 0x4000, 1, 0, 0, 3, 0))           # CPUID_XF
    c.append(("page_data", hdrs, page, 1, 0, [
        m.PageData(0x1000, 1, 0, 0, page), m.PageData(0x200000, 1, 1, 0, None),
        m.PageData(0x2000, 1, 2, 0, page), m.PageData(0x3000, 1, 0, 1, None),
        m.PageData(0x4000, 1, 0, 3, None)]))
    # -- 0x304 VP_CONTEXT (20 bytes + 4 padding): u64 gpa, u32 mask,
    #    u32 file_offset, u16 vp_index, u16 reserved.  SEV-SNP: a 4 KiB VMSA.
    hdrs = [SNP_PLATFORM, (0x304, bytes(20))]
    hdrs[1] = (0x304, struct.pack("<QIIHH", 0xFFFFFFFFF000, 1, data_start(hdrs), 0, 0))
    c.append(("vp_context_snp", hdrs, VMSA, 1, 0, [m.VpContext(0xFFFFFFFFF000, 1, 0, VMSA)]))
    hdrs = [NATIVE_PLATFORM, (0x304, bytes(20))]
    hdrs[1] = (0x304, struct.pack("<QIIHH", 0, 1, data_start(hdrs, 2), 0, 0))
    c.append(("vp_context_native", hdrs, NATIVE_CTX, 2, 0, [m.VpContext(0, 1, 0, NATIVE_CTX)]))
    # -- 0x305 REQUIRED_MEMORY: u64 gpa, u32 mask, u32 number_of_bytes,
    #    u32 flags (bit0 vtl2_protectable), u32 reserved
    c.append(("required_memory", [SNP_PLATFORM,
                                  (0x305, struct.pack("<QIIII", 0x800000, 1, 0x10000, 1, 0))],
              None, 1, 0, [m.RequiredMemory(0x800000, 1, 0x10000, 1)]))
    # -- 0x30B SNP_ID_BLOCK: u32 mask, u8 author_key_enabled, [u8;3] reserved,
    #    ld[48], family_id[16], image_id[16], u32 version, u32 guest_svn,
    #    u32 id_key_algorithm, u32 author_key_algorithm, signature {r[72], s[72]},
    #    public key {u32 curve, u32 reserved, qx[72], qy[72]}, author signature,
    #    author public key -- 696 bytes
    ld = bytes(range(48))
    idb = (struct.pack("<IB3s48s16s16s4I", 1, 0, bytes(3), ld, b"F" * 16, b"I" * 16, 1, 3, 1, 0)
           + b"r" * 72 + b"s" * 72 + struct.pack("<II", 2, 0) + b"x" * 72 + b"y" * 72
           + bytes(144) + bytes(152))
    assert len(idb) == 696
    c.append(("snp_id_block", [SNP_PLATFORM, (0x30B, idb)], None, 1, 0, [
        m.SnpIdBlock(1, 0, bytes(3), ld, b"F" * 16, b"I" * 16, 1, 3, 1, 0, b"r" * 72, b"s" * 72,
                     2, 0, b"x" * 72, b"y" * 72)]))
    # -- 0x30D ERROR_RANGE: u64 gpa, u32 mask, u32 size_bytes
    c.append(("error_range", [SNP_PLATFORM, (0x30D, struct.pack("<QII", 0x5000, 1, 0x1000))],
              None, 1, 0, [m.ErrorRange(0x5000, 1, 0x1000)]))
    # -- 0x311 VBS_MEASUREMENT: 8 x u32, digest[64], signature[256], public_key[512]
    vbs = struct.pack("<8I", 1, 1, 2, 3, 4, 5, 1, 1) + b"d" * 64 + b"s" * 256 + b"k" * 512
    assert len(vbs) == 864
    c.append(("vbs_measurement", [VSM_PLATFORM, (0x311, vbs)], None, 1, 0, [
        m.VbsMeasurement(1, 1, 2, 3, 4, 5, 1, 1, b"d" * 64, b"s" * 256, b"k" * 512)]))
    return c


CASES = _cases()


def _model(case):
    name, hdrs, data, version, arch, expected = case
    f = m.IgvmFile(revision=version, architecture=arch)
    for t, body in hdrs:
        if t == 0x1 and not any(isinstance(h, m.SupportedPlatform) for h in expected):
            f.platforms.append(_platform_model(body))
    for h in expected:
        {0: f.platforms, 1: f.initializations, 2: f.directives}[h.section].append(h)
    return f


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_serialize_matches_hand_written_bytes(case):
    name, hdrs, data, version, arch, expected = case
    assert serialize(_model(case)) == assemble(hdrs, data or b"", version, arch)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_parse_hand_written_bytes(case):
    name, hdrs, data, version, arch, expected = case
    raw = assemble(hdrs, data or b"", version, arch)
    f, violations = scan(raw, strict=True)
    assert violations == []
    got = [h for h in f.headers() if not (isinstance(h, m.SupportedPlatform)
                                          and not isinstance(expected[0], m.SupportedPlatform))]
    assert got == expected


def test_every_header_type_has_a_golden_vector():
    """Every type of the specification appears above (0x104/0x105 CoRIM and
    0x306 are covered as rejected types in test_rules)."""
    from harness.igvm.defs import HeaderType
    covered = set()
    for _, hdrs, *_ in CASES:
        covered |= {t for t, _ in hdrs}
    missing = {int(t) for t in HeaderType} - covered - {0x0, 0x104, 0x105, 0x306}
    assert not missing, sorted(hex(t) for t in missing)


def test_structure_sizes_match_specification():
    """Sizes of the repr(C) structures, summed by hand from igvm_defs."""
    from harness.igvm import defs
    expected = {
        "IGVM_FIXED_HEADER": 24, "IGVM_FIXED_HEADER_V2": 32, "IGVM_VHS_VARIABLE_HEADER": 8,
        "IGVM_VHS_SUPPORTED_PLATFORM": 16, "IGVM_VHS_GUEST_POLICY": 16,
        "IGVM_VHS_RELOCATABLE_REGION": 48, "IGVM_VHS_PAGE_TABLE_RELOCATION": 32,
        "IGVM_VHS_CORIM_DATA": 16, "IGVM_VHS_CCA_POLICY": 32, "IGVM_VHS_PARAMETER_AREA": 16,
        "IGVM_VHS_PAGE_DATA": 24, "IGVM_VHS_PARAMETER_INSERT": 16, "IGVM_VHS_VP_CONTEXT": 20,
        "IGVM_VHS_REQUIRED_MEMORY": 24, "IGVM_VHS_PARAMETER": 8, "IGVM_VHS_ERROR_RANGE": 16,
        "IGVM_VHS_SNP_ID_BLOCK": 696, "IGVM_VHS_VBS_MEASUREMENT": 864,
        "IGVM_VHS_MEMORY_MAP_ENTRY": 24, "IGVM_VHS_MEMORY_RANGE": 16,
        "VbsVpContextRegister": 32,
    }
    layouts = {v.name: v for v in vars(defs).values() if isinstance(v, defs.Layout)}
    for name, size in expected.items():
        assert layouts[name].size == size, name


def test_corim_headers_encode_and_are_rejected_like_the_c_library():
    """0x104 CORIM_DOCUMENT / 0x105 CORIM_SIGNATURE: IGVM_VHS_CORIM_DATA
    {u32 mask, u32 file_offset, u32 size_bytes, u32 reserved} pointing at the
    payload.  The igvm C library is built without the reference parser's
    'corim' feature, so both are unknown header types there (and here)."""
    doc, sig = b"\xd9\x01\xf5corim", b"\xd2cose-sign1"
    hdrs = [SNP_PLATFORM, (0x104, bytes(16)), (0x105, bytes(16))]
    start = data_start(hdrs)
    hdrs[1] = (0x104, struct.pack("<4I", 1, start, len(doc), 0))
    hdrs[2] = (0x105, struct.pack("<4I", 1, start + len(doc), len(sig), 0))
    raw = assemble(hdrs, doc + sig)
    f = m.IgvmFile(platforms=[_platform_model(SNP_PLATFORM[1])],
                   initializations=[m.CorimDocument(1, doc), m.CorimSignature(1, sig)])
    assert serialize(f) == raw
    _, violations = scan(raw)
    assert [(v.rule, v.header_index) for v in violations] == [
        ("unknown-header-type", 1), ("unknown-header-type", 2)]


@pytest.mark.parametrize("t", [0x306, 0x107, 0x250, 0x314, 0x80000302, 0x80000001])
def test_reserved_and_optional_types_are_rejected(t):
    """0x306 was SHARED_BOUNDARY_GPA ('do not use'); 0x107, 0x314 are past the
    defined types of their ranges; 0x250 is in no range; the optional bit
    (1 << 31) takes a type out of every range, and the reference parser
    rejects such headers instead of skipping them."""
    raw = assemble([SNP_PLATFORM, (t, bytes(8)),
                    (0x302, struct.pack("<QIIIHH", 0, 1, 0, 0, 0, 0))])
    _, violations = scan(raw)
    assert [v.rule for v in violations] == ["unknown-header-type"]
    f = parse(raw, check=False)
    raw_header = list(f.headers())[1]
    assert isinstance(raw_header, m.RawHeader) and raw_header.type == t
    assert serialize(f) == raw

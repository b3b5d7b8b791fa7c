"""Property tests (hypothesis): any mutation of a valid file yields
violations or a valid file, never an exception; valid results parse;
built files always round-trip."""

import struct

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from harness.igvm.builder import IgvmBuilder, serialize
from harness.igvm.defs import KVM_VMSA_GPA, PageDataType, PlatformType
from harness.igvm.mutate import EXTRA_MUTATORS, MUTATORS, NAMED_MUTATORS, MutationError, compose
from harness.igvm.parser import parse
from harness.igvm.qemu_lint import lint
from harness.igvm.rules import RULES, IgvmFormatError
from harness.igvm.validate import validate

from tests.format.test_roundtrip import rich_builder

BASE = rich_builder().build()
SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _check(data: bytes) -> None:
    for strict in (False, True):
        violations = validate(data, strict=strict)
        assert all(v.rule in RULES for v in violations)
    violations = validate(data)
    if violations:
        with pytest.raises(IgvmFormatError):
            parse(data)
    else:
        f = parse(data)
        lint(f)  # the lint never raises on a valid file either


@st.composite
def damaged(draw):
    data = bytearray(BASE)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "u32", "cut", "insert", "delete"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "u32" and len(data) >= 4:
            pos = min(pos, len(data) - 4) & ~3
            struct.pack_into("<I", data, pos, draw(st.integers(0, 0xFFFFFFFF)))
        elif kind == "cut":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[pos:pos + draw(st.integers(1, 16))]
    return bytes(data)


@SETTINGS
@given(damaged())
def test_random_damage_never_raises(data):
    _check(data)


@st.composite
def header_damage(draw):
    """Damage restricted to the variable headers, checksum fixed up, so the
    scan goes past the fixed header."""
    data = bytearray(BASE)
    vho, vhs = struct.unpack_from("<II", data, 8)
    for _ in range(draw(st.integers(1, 3))):
        pos = draw(st.integers(vho, vho + vhs - 4)) & ~3
        struct.pack_into("<I", data, pos, draw(st.sampled_from(
            [0, 1, 2, 0xFFF, 0x1000, 0x301, 0x302, 0x304, 0x80000000, 0xFFFFFFFF,
             draw(st.integers(0, 0xFFFFFFFF))])))
    from harness.igvm.mutate import _refresh
    return _refresh(data)


@SETTINGS
@given(header_damage())
def test_header_damage_never_raises(data):
    _check(data)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(sorted(MUTATORS) + sorted(EXTRA_MUTATORS) + sorted(NAMED_MUTATORS)), min_size=1,
                max_size=3))
def test_composed_mutators_never_raise_in_validate(names):
    data = BASE
    for name in names:
        try:
            data = compose(name)(data)
        except (IgvmFormatError, MutationError):
            break  # a later mutator cannot read (or find what it needs in) what an earlier one broke
    _check(data)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 0xFFFFF), st.binary(max_size=64),
                          st.sampled_from(list(PageDataType)), st.booleans()),
                max_size=12),
       st.sampled_from([1, 2]))
def test_built_files_validate_and_round_trip(pages, revision):
    b = IgvmBuilder(revision=revision)
    snp = b.platform(PlatformType.SEV_SNP)
    b.platform(PlatformType.NATIVE)
    for pfn, data, dtype, unmeasured in pages:
        b.page(pfn << 12, data or None, data_type=dtype, unmeasured=unmeasured)
    b.vp_context(KVM_VMSA_GPA, bytes(4096), mask=snp)
    out = b.build()
    assert validate(out, strict=True) == []
    assert serialize(parse(out)) == out

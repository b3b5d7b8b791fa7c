"""One test per validator rule: its mutator makes the rule fire, on several
valid base files; the reference-parser rules also make parse() fail."""

import pytest

from harness.igvm.builder import IgvmBuilder
from harness.igvm.defs import KVM_VMSA_GPA, PlatformType
from harness.igvm.mutate import EXTRA_MUTATORS, MUTATORS, NAMED_MUTATORS, compose
from harness.igvm.parser import parse
from harness.igvm.rules import RULES, STRICT_RULES, IgvmFormatError
from harness.igvm.validate import validate

from tests.format.test_roundtrip import rich_builder


def _snp_only():
    b = IgvmBuilder()
    b.platform(PlatformType.SEV_SNP)
    b.page(0x1000, b"\xCC" * 16)
    return b.build()


def _native_v2_no_directives():
    b = IgvmBuilder(revision=2)
    b.platform(PlatformType.NATIVE)
    return b.build()


BASES = {
    "snp-one-page": _snp_only(),
    "rich": rich_builder().build(),
    "native-v2-empty": _native_v2_no_directives(),
}


@pytest.mark.parametrize("name", sorted(BASES))
def test_bases_are_valid(name):
    assert validate(BASES[name], strict=True) == []


def test_every_rule_has_a_mutator():
    assert set(MUTATORS) == set(RULES)


@pytest.mark.parametrize("base", sorted(BASES))
@pytest.mark.parametrize("rule", sorted(RULES))
def test_mutator_triggers_its_rule(rule, base):
    bad = MUTATORS[rule](BASES[base])
    strict = rule in STRICT_RULES
    found = {v.rule for v in validate(bad, strict=strict)}
    assert rule in found, found
    if strict:
        # the reference parser accepts it; only the strict reading rejects
        assert rule not in {v.rule for v in validate(bad)}
    else:
        with pytest.raises(IgvmFormatError):
            parse(bad)


@pytest.mark.parametrize("name", sorted(EXTRA_MUTATORS))
def test_generic_damage_is_reported(name):
    bad = EXTRA_MUTATORS[name](BASES["rich"])
    assert validate(bad)


def test_composed_mutators_report_both():
    bad = compose("reserved-nonzero", "gpa-unaligned")(BASES["rich"])
    found = {v.rule for v in validate(bad)}
    assert {"reserved-nonzero", "gpa-unaligned"} <= found


def test_violation_locates_the_header():
    b = IgvmBuilder()
    mask = b.platform(PlatformType.SEV_SNP)
    b.page(0x1000)
    b.page(0x2001)                       # header index 2
    data = b.build()
    [v] = validate(data)
    assert v.rule == "gpa-unaligned" and v.header_index == 2
    # fixed 24 + platform (8+16) + first page (8+24)
    assert v.offset == 24 + 24 + 32


def test_platform_filter_skips_other_platforms():
    # a parameter used by the NATIVE platform only... parameters have no mask,
    # so use a VP context for an undeclared area instead: the filter drops the
    # SNP-only insert of an undeclared area.
    b = IgvmBuilder()
    snp = b.platform(PlatformType.SEV_SNP)
    b.platform(PlatformType.NATIVE)
    b.parameter_insert(0x1000, 9, mask=snp)
    data = b.build()
    assert [v.rule for v in validate(data)] == ["parameter-area-undeclared"]
    assert validate(data, platform=PlatformType.NATIVE) == []


def test_tdx_vp_context_is_rejected():
    # igvm_defs: "For architectures such as Intel TDX ... this structure is invalid"
    b = IgvmBuilder()
    tdx = b.platform(PlatformType.TDX)
    b.vp_context(KVM_VMSA_GPA, bytes(4096), mask=tdx)
    assert [v.rule for v in validate(b.build())] == ["vp-context-platform"]


@pytest.mark.parametrize("base", sorted(BASES))
@pytest.mark.parametrize("name", sorted(NAMED_MUTATORS))
def test_named_faults_of_the_issue(name, base):
    rule, mutate = NAMED_MUTATORS[name]
    assert rule in {v.rule for v in validate(mutate(BASES[base]))}

"""Differential test: libigvm (C) against the Python validator.

Every mutator of the format library (``harness.igvm.mutate.MUTATORS``,
one per validator rule) is applied to a few valid files from
``harness.igvm.builder.IgvmBuilder``.  The C library, through the
``igvm-check`` CLI built from this tree, must refuse a mutated file exactly
when ``harness.igvm.validate.validate`` reports a (non-strict) violation,
and when it refuses, its IGVMAPI_* code must be the one the reference C
library gives for one of the violated rules.

The rule -> error-code table below is derived from the reference, not from
either implementation: each rule's source (``harness.igvm.rules``) names
the reference parser's error, and igvm_c's ``translate_error``
(microsoft/igvm igvm/src/c_api.rs) maps that error to its IGVMAPI code;
BinaryHeaderError variants become the code of the section the header is in
(INVALID_BINARY_{PLATFORM,INITIALIZATION,DIRECTIVE}_HEADER).

Documented exceptions (``KNOWN_DIFFERENCES``) are cases where the two
implementations deliberately differ; each carries its reason.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

try:
    from harness.igvm.builder import IgvmBuilder
    from harness.igvm.defs import HeaderType, PlatformType
    from harness.igvm.mutate import MUTATORS, MutationError
    from harness.igvm.rules import RULES
    from harness.igvm.validate import validate
except ImportError:  # pragma: no cover - the format library lands separately
    pytest.skip("format library mutators not available", allow_module_level=True)

# IGVMAPI codes and the rule -> code table: harness.reference.codes (facts of
# igvm 0.5's c_api.rs and lib.rs), shared with the three-way tests of tests/reference.
from harness.reference.codes import expected_codes  # noqa: E402

# (base file, mutator) pairs where the outcomes deliberately differ.
KNOWN_DIFFERENCES: dict[tuple[str, str], str] = {
    # none so far: add ("base", "rule-id"): "reason" entries when a case is
    # understood and accepted (see libigvm/README.md).
}


# ------------------------------------------------------------------ bases

def _native_context() -> bytes:
    ctx = bytearray(232)
    ctx[128:136] = (0xFFF0).to_bytes(8, "little")  # rip (IgvmNativeVpContextX64)
    ctx[200:208] = (0x10).to_bytes(8, "little")    # cr0
    return bytes(ctx)


def base_native() -> bytes:
    b = IgvmBuilder()
    b.platform(PlatformType.NATIVE)
    b.page(0xFFFFF000, b"\xf4" * 16)
    b.zero_pages(0x100000, 3)
    area = b.parameter_area(0x1000)
    b.vp_count(area, 0)
    b.memory_map(area, 16)
    b.parameter_insert(0x8000, area)
    b.vp_context(0, _native_context())
    return b.build()


def base_snp() -> bytes:
    b = IgvmBuilder()
    b.platform(PlatformType.SEV_SNP, shared_gpa_boundary=1 << 51)
    b.guest_policy(0x30000)
    b.pages(0x800000, bytes(range(256)) * 20)
    b.page(0x9000, None, data_type=1)  # secrets page
    b.vp_context(0xFFFFFFFFF000, bytes(4096))
    b.required_memory(0x1000000, 0x200000)
    return b.build()


def base_multi() -> bytes:
    b = IgvmBuilder()
    b.platform(PlatformType.NATIVE)
    sev = b.platform(PlatformType.SEV)
    es = b.platform(PlatformType.SEV_ES)
    snp = b.platform(PlatformType.SEV_SNP)
    b.guest_policy(0x1, mask=sev | es)
    b.guest_policy(0x30000, mask=snp)
    b.pages(0x100000, b"IGVM" * 2048)
    area = b.parameter_area(0x2000)
    b.environment_info(area, 0)
    b.parameter(HeaderType.COMMAND_LINE, area, 0x100)
    b.parameter_insert(0x200000, area)
    b.vp_context(0, _native_context(), mask=1)
    b.vp_context(0xFFFFF000, bytes(4096), mask=snp)
    return b.build()


BASES = {"native": base_native, "snp": base_snp, "multi": base_multi}


def _run_check(tool: Path, files: list[Path]) -> dict[str, int]:
    proc = subprocess.run([str(tool), *map(str, files)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode in (0, 1), proc.stderr
    codes = {}
    for line in proc.stdout.splitlines():
        code, _name, rest = line.split(" ", 2)
        codes[rest.split(": ", 1)[0]] = int(code)
    assert len(codes) == len(files), proc.stdout
    return codes


def _violations(data: bytes) -> list:
    return [v for v in validate(data) if not RULES[v.rule].strict]


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory, igvm_check: Path) -> dict[str, bytes]:
    """The valid base files; both implementations must accept them."""
    out = {name: make() for name, make in BASES.items()}
    d = tmp_path_factory.mktemp("bases")
    paths = []
    for name, data in out.items():
        assert _violations(data) == [], f"builder file {name} is invalid for the validator"
        (d / name).write_bytes(data)
        paths.append(d / name)
    codes = _run_check(igvm_check, paths)
    assert all(c == 0 for c in codes.values()), codes
    return out


def test_every_mutation_refused_exactly_when_the_validator_refuses(
        bases: dict[str, bytes], igvm_check: Path, tmp_path: Path) -> None:
    cases: dict[str, tuple[str, str, list]] = {}
    for base_name, data in bases.items():
        for rule_id, mutate in MUTATORS.items():
            try:
                mutated = mutate(data)
            except MutationError:
                continue  # the mutator does not apply to this base
            path = tmp_path / f"{base_name}--{rule_id}.igvm"
            path.write_bytes(mutated)
            cases[str(path)] = (base_name, rule_id, _violations(mutated))
    assert len(cases) >= len(MUTATORS), "most mutators should apply to some base"
    codes = _run_check(igvm_check, [Path(p) for p in cases])

    disagreements = []
    wrong_codes = []
    for path, (base_name, rule_id, violations) in cases.items():
        if (base_name, rule_id) in KNOWN_DIFFERENCES:
            continue
        c_refuses = codes[path] != 0
        py_refuses = bool(violations)
        if c_refuses != py_refuses:
            disagreements.append(
                f"{base_name}/{rule_id}: C {codes[path]}, validator "
                f"{[v.rule for v in violations] or 'accepts'}")
            continue
        if c_refuses:
            allowed = set().union(*(expected_codes(v.rule) for v in violations))
            if allowed and codes[path] not in allowed:
                wrong_codes.append(f"{base_name}/{rule_id}: C {codes[path]}, expected one of "
                                   f"{sorted(allowed)} for {[v.rule for v in violations]}")
    assert not disagreements, "\n".join(disagreements)
    assert not wrong_codes, "\n".join(wrong_codes)


def test_every_rule_has_an_expected_code() -> None:
    """Each non-strict rule's source names a reference error this test can map."""
    unmapped = [r.id for r in RULES.values() if not r.strict and not expected_codes(r.id)]
    assert not unmapped


def test_known_differences_name_real_mutators() -> None:
    for (base_name, rule_id), reason in KNOWN_DIFFERENCES.items():
        assert base_name in BASES and rule_id in MUTATORS and reason

"""Three implementations of the IGVM format on the same inputs: verdict and error class.

* the reference: the igvm crate from crates.io (tools/igvm-oracle: its C
  API's IGVMAPI code, and its parser's verdict with no isolation filter);
* the harness's own C library (libigvm/, ``igvm-check``): the same API and codes;
* the harness's Python validator (``harness.igvm.validate``, non-strict
  rules: the ones the reference parser enforces), whose rule ids map onto
  the codes through each rule's source (``harness.reference.codes``).

On every fixture (builder bases, every mutator's output, the matrix's
files), on seeded random corruptions and on the fuzz regression corpus:

1. the own library gives exactly the crate's code (0 when both accept);
2. the validator refuses exactly when the crate refuses;
3. when they refuse, the crate's code is one the validator's violated rules
   name (the error class agrees).

Where the crate panics (its C API then aborts the process: QEMU linked with
it dies with SIGABRT; tests/reference/test_crate_panics.py) the own library
and the validator must refuse; such inputs are counted as "crate panics".
Differences are collected, not stopped at; :data:`KNOWN` holds the
understood ones with their reason (none so far).  The counts are printed at
the end of the run and written to reports/reference/counts.json.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness.igvm.rules import RULES
from harness.igvm.validate import validate
from harness.reference import codes, oracle
from tests.reference import inputs
from tests.reference.conftest import record_counts

#: (input name, check) -> why the implementations may differ there (none so far).
KNOWN: dict[tuple[str, str], str] = {}
#: Error classes of the crate (its Error's Debug text) where the Python validator
#: deliberately does less, with the reason (harness/igvm/rules.py, "looser"); the own
#: C library still gives the crate's code.
KNOWN_CLASSES: dict[str, str] = {
    "UnsupportedX64Register": "the validator does not check VBS register names against the "
                              "reference's X86Register table (harness/igvm/rules.py: looser)",
    "UnsupportedAArch64Register": "the validator does not check VBS register names against the "
                                  "reference's AArch64Register table (harness/igvm/rules.py: looser)",
}
#: The oracle is built with the crate's corim feature (its measurement module needs it);
#: the library QEMU links and the own one are not, so CoRIM headers parse only there.
CORIM_TYPES = (0x104, 0x105)
CHUNK = 400  # igvm-check arguments per process


def _own_codes(tool: Path, paths: list[Path]) -> list[int]:
    out: dict[str, int] = {}
    for i in range(0, len(paths), CHUNK):
        part = paths[i:i + CHUNK]
        res = subprocess.run([str(tool), *map(str, part)], capture_output=True, text=True,
                             timeout=300)
        assert res.returncode in (0, 1), res.stderr[-2000:]
        for line in res.stdout.splitlines():
            code, _name, rest = line.split(" ", 2)
            out[rest.split(": ", 1)[0]] = int(code)
    return [out[str(p)] for p in paths]


def _has_corim_headers(data: bytes) -> bool:
    """Any variable header of type 0x104/0x105 (optional bit or not), by a bounded raw walk
    of the variable header section: valid file or not."""
    import struct

    if len(data) < 16:
        return False
    vho, vhs = struct.unpack_from("<II", data, 8)
    pos, end = vho, min(len(data), vho + vhs)
    while pos + 8 <= end:
        typ, length = struct.unpack_from("<II", data, pos)
        if typ & 0x7FFFFFFF in CORIM_TYPES:
            return True
        pos += 8 + ((length + 7) & ~7)
    return False


def _violations(data: bytes) -> list[str]:
    return [v.rule for v in validate(data) if not RULES[v.rule].strict]


def compare_three(blobs: dict[str, bytes], tool: Path, tmp: Path) -> tuple[dict, list[str]]:
    """Counts and the list of unexplained differences over ``blobs``."""
    names = list(blobs)
    paths = []
    for i, n in enumerate(names):
        p = tmp / f"{i:06d}.igvm"
        p.write_bytes(blobs[n])
        paths.append(p)
    crate = oracle.parse(paths)
    own = _own_codes(tool, paths)
    problems: list[str] = []
    c = {"inputs": len(names), "crate accepts": 0, "crate refuses": 0, "crate panics": 0,
         "own == crate": 0, "validator agrees": 0, "error class agrees": 0, "known": 0,
         "known: CoRIM headers": 0}
    for n, answer, own_code in zip(names, crate, own):
        code = answer.get("c_api")
        if "panic" in answer.get("any", {}):
            # the reference panics (its C API aborts: QEMU dies with SIGABRT, see
            # test_crate_panics.py); the own library and the validator must refuse
            c["crate panics"] += 1
            if own_code == 0 or not _violations(blobs[n]):
                problems.append(f"{n}: the crate panics ({answer['any']['panic']}) but own "
                                f"{codes.name(own_code)} / validator {_violations(blobs[n])}")
            continue
        if answer.get("read_error") or not isinstance(code, int):
            problems.append(f"{n}: the oracle gave no verdict: {answer}")
            continue
        ok = code == 0
        assert ok == answer["any"]["ok"], f"{n}: the crate's C API and parser disagree: {answer}"
        c["crate accepts" if ok else "crate refuses"] += 1
        rules = _violations(blobs[n])
        checks = {
            "own-code": (own_code == code,
                         f"own {codes.name(own_code)}, crate {codes.name(code)} "
                         f"({answer['any'].get('debug', 'accepts')})"),
            "verdict": (bool(rules) != ok,
                        f"validator {rules or 'accepts'}, crate {codes.name(code)} "
                        f"({answer['any'].get('debug', 'accepts')})"),
        }
        if rules and not ok:
            allowed = set().union(*(codes.expected_codes(r) for r in rules))
            checks["error-class"] = (not allowed or code in allowed,
                                     f"crate {codes.name(code)} ({answer['any'].get('debug')}), "
                                     f"validator {rules} -> {sorted(codes.name(x) for x in allowed)}")
        debug = answer["any"].get("debug", "")
        for check, (good, text) in checks.items():
            if good:
                c[{"own-code": "own == crate", "verdict": "validator agrees",
                   "error-class": "error class agrees"}[check]] += 1
            elif (n, check) in KNOWN:
                c["known"] += 1
            elif check != "own-code" and any(k in debug for k in KNOWN_CLASSES):
                c["known"] += 1  # the validator is looser there, by design
            elif _has_corim_headers(blobs[n]):
                c["known: CoRIM headers"] += 1  # only the oracle's build (corim feature) parses them
            else:
                problems.append(f"{n}: {check}: {text}")
        if "error-class" not in checks:
            c["error class agrees"] += 1  # nothing to classify: both accept
    return c, problems


@pytest.mark.parametrize("which", ["fixtures", "corruptions", "regressions"])
def test_three_implementations_agree(which, oracle_binary, igvm_check, tmp_path):
    blobs = getattr(inputs, which)()
    assert len(blobs) >= 4
    counts, problems = compare_three(blobs, igvm_check, tmp_path)
    record_counts(f"three-way {which}", counts)
    assert counts["crate accepts"] and (which == "regressions" or counts["crate refuses"])
    assert not problems, f"{len(problems)} differences:\n" + "\n".join(problems[:40])


def test_known_differences_are_explained():
    for key, why in KNOWN.items():
        assert why and key[1] in ("own-code", "verdict", "error-class")
    assert all(KNOWN_CLASSES.values())


def test_a_vbs_register_the_crate_does_not_know(oracle_binary, igvm_check, tmp_path):
    """Found by the libFuzzer run (tests/untrusted/corpus/vbs-unsupported-register): a VBS
    VP context naming register 0xf9020010.  The crate refuses it
    (InvalidBinaryDirectiveHeader(UnsupportedX64Register)), the own library gives the same
    code; the validator, looser by design, sees only the other fault of the file."""
    from tests.untrusted.test_fuzz import CORPUS

    data = (CORPUS / "vbs-unsupported-register").read_bytes()
    answer = oracle.parse_bytes({"f": data})["f"]
    assert "UnsupportedX64Register" in answer["any"]["debug"]
    assert answer["c_api"] == codes.CODE["IGVMAPI_INVALID_BINARY_DIRECTIVE_HEADER"]
    counts, problems = compare_three({"vbs": data}, igvm_check, tmp_path)
    assert counts["own == crate"] == 1 and counts["known"] == 1 and not problems

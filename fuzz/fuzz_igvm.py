"""Coverage-guided fuzz target for the Python format and measurement layers.

One input is an IGVM file; it goes through everything a vendor image meets
in ``validate``, ``inspect``, ``measure`` and ``certify``: the scanner (with
and without strict rules, and with a small violation limit), the lenient
parse, ``describe``, QEMU lint and, for every SEV platform the file
declares, the launch plan and the predicted digest -- each both as a
consumer of the scan's walk and as a replay of the parsed model, which must
agree (harness.igvm.walk); the input as a CoRIM
and as a COSE_Sign1, and the CoRIM headers it carries (harness.corim).  A file may be refused
only with HarnessError (one line at the CLI); any other exception is a bug,
and so is a violation list past its limit.  Time and memory per input are
bounded by libFuzzer's ``-timeout`` and ``-rss_limit_mb``.

    python fuzz/fuzz_igvm.py -max_total_time=60 -rss_limit_mb=2048 -timeout=10 CORPUS
    python fuzz/fuzz_igvm.py FILE...            # replay inputs (regressions)

With atheris absent (a Python it has no wheel for) ``check_input`` is still
the property the hypothesis-based test in tests/untrusted/test_fuzz.py runs.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

LIMIT = 8


def check_input(data: bytes) -> None:
    """The property: bounded, one-line refusals, no other exception."""
    from harness.errors import HarnessError
    from harness.igvm.describe import describe
    from harness.igvm.parser import scan
    from harness.igvm.qemu_lint import lint
    from harness.measure.launch import predict
    from harness.measure.pages import PLATFORM_NAMES

    from harness.igvm.describe import Description
    from harness.igvm.qemu_lint import Linter
    from harness.measure.launch import LaunchDigest

    for strict in (False, True):
        f, violations = scan(data, strict=strict, limit=LIMIT)
        assert len(violations) <= LIMIT, len(violations)
    _check_corim_bytes(data)
    # the scan's walk feeds the consumers the commands use (harness.igvm.walk)
    walked, linter = Description(include_pages=True), Linter()
    digests = {name: LaunchDigest(name, 1) for name in PLATFORM_NAMES}
    f, _ = scan(data, limit=None, consumers=[walked, linter] + [d.planner for d in digests.values()])
    if f is None:
        return
    _check_corim_headers(f)
    replayed = describe(f, include_pages=True)
    try:
        findings = lint(f)
    except HarnessError:
        findings = None
    if walked.complete:  # the walk's consumers agree with a replay of the parsed model
        assert describe(f, include_pages=True, walked=walked) == replayed
        assert findings is None or linter.findings() == findings
    for name, ptype in PLATFORM_NAMES.items():
        if f.platform(ptype) is None:
            continue
        try:
            expected = predict(f, name, 1).digest
        except HarnessError as exc:
            expected = str(exc)
        if walked.complete:
            try:
                got = digests[name].result().digest
            except HarnessError as exc:
                got = str(exc)
            assert got == expected, (name, got, expected)


def _check_corim_bytes(data: bytes) -> None:
    """The input as a CoRIM and as its COSE_Sign1: refused with CorimError only."""
    from harness.corim import decode, sign
    from harness.corim.cbor import CorimError
    for read in (decode.decode, sign.read_signature):
        try:
            read(data)
        except CorimError:
            pass


def _check_corim_headers(f) -> None:
    """CoRIM headers (0x104 / 0x105) are read without raising: every problem is a line."""
    from harness.corim import embed
    found = embed.read(f)
    assert all(isinstance(x, str) for x in found.lines())


def main(argv: list[str]) -> None:
    import atheris

    with atheris.instrument_imports():
        import harness.igvm.describe  # noqa: F401
        import harness.igvm.parser  # noqa: F401
        import harness.igvm.qemu_lint  # noqa: F401
        import harness.measure.launch  # noqa: F401
        import harness.measure.pages  # noqa: F401
        import harness.measure.measure_snp  # noqa: F401
        import harness.corim.decode  # noqa: F401
        import harness.corim.embed  # noqa: F401
        import harness.corim.sign  # noqa: F401
    atheris.Setup(argv, check_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)

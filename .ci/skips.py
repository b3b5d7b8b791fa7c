#!/usr/bin/env python3
"""Summarise the skip reasons of a pytest run and check them against the
allow-list (.ci/skip-allow.toml).

    skips.py JUNIT.xml [--allow .ci/skip-allow.toml]

Reads pytest's own JUnit XML (``--junitxml``): a ``<skipped
type="pytest.skip" message=REASON>`` per skipped test (xfails are
``pytest.xfail`` and are not skips).  Prints one line per distinct reason with
its count and the allow-list class, then every reason outside the list.
Exit 0 when all skips are allowed, 1 when one is not, 2 on bad input.
"""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
import tomllib
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
WIDTH = 100


@dataclass(frozen=True)
class Allowed:
    pattern: re.Pattern
    why: str
    #: a path (relative to the repository) whose absence the skip claims; the
    #: skip is allowed only while that path really is absent, so a CI machine
    #: that has it cannot hide a broken lookup behind the claim
    only_if_absent: Path | None = None
    #: a URL the skip claims cannot be reached (crates.io for the reference
    #: oracle): allowed only while this host really cannot fetch it
    only_if_unreachable: str | None = None

    def holds(self) -> bool:
        if self.only_if_absent is not None and self.only_if_absent.exists():
            return False
        return self.only_if_unreachable is None or not reachable(self.only_if_unreachable)


_REACHABLE: dict[str, bool] = {}


def reachable(url: str, timeout: float = 10.0) -> bool:
    """Can this host fetch ``url`` (an HTTP answer of any status counts)?"""
    if url not in _REACHABLE:
        import urllib.error
        import urllib.request
        try:
            urllib.request.urlopen(url, timeout=timeout).close()
            _REACHABLE[url] = True
        except urllib.error.HTTPError:
            _REACHABLE[url] = True
        except (OSError, ValueError):
            _REACHABLE[url] = False
    return _REACHABLE[url]


def load_allow(path: Path) -> list[Allowed]:
    data = tomllib.loads(path.read_text())
    out = []
    for i, entry in enumerate(data.get("allow", []), 1):
        if not entry.get("why") or not entry.get("pattern"):
            raise ValueError(f"{path}: entry {i} needs both 'pattern' and 'why'")
        if any(ord(ch) < 0x20 for ch in entry["pattern"]):  # "\b" in a "..." string
            raise ValueError(f"{path}: entry {i}: control character in pattern "
                             f"(write regexes as TOML literal strings, '...')")
        absent = entry.get("only_if_absent")
        out.append(Allowed(re.compile(entry["pattern"]), entry["why"],
                           (HERE.parent / absent) if absent else None,
                           entry.get("only_if_unreachable")))
    return out


def skip_reasons(junit: Path) -> Counter:
    """reason -> number of tests skipped for it."""
    reasons: Counter = Counter()
    for case in ET.parse(junit).getroot().iter("testcase"):
        for sk in case.findall("skipped"):
            if sk.get("type", "pytest.skip") == "pytest.skip":
                reasons[sk.get("message", "").strip()] += 1
    return reasons


def classify(reason: str, allow: list[Allowed]) -> Allowed | None:
    return next((a for a in allow if a.pattern.search(reason) and a.holds()), None)


def _wrapped(count: int, text: str) -> list[str]:
    lines = textwrap.wrap(text, WIDTH - 8, break_on_hyphens=False, break_long_words=False) or [""]
    return [f"{count:6}  {lines[0]}"] + [f"{'':8}{rest}" for rest in lines[1:]]


def report(reasons: Counter, allow: list[Allowed]) -> tuple[list[str], int]:
    """(summary lines, number of skips outside the allow-list)."""
    total = sum(reasons.values())
    lines = [f"skips: {total} in {len(reasons)} distinct reasons"]
    by_class: dict[str, Counter] = {}
    bad: Counter = Counter()
    for reason, n in reasons.items():
        a = classify(reason, allow)
        if a is None:
            bad[reason] = n
        else:
            by_class.setdefault(a.why, Counter())[reason] = n
    for why, rs in by_class.items():
        lines.append(f"  allowed: {why}")
        for reason, n in rs.most_common():
            lines += ["  " + l for l in _wrapped(n, reason)]
    if bad:
        lines.append(f"NOT ALLOWED ({sum(bad.values())} skips; see .ci/skip-allow.toml):")
        for reason, n in bad.most_common():
            lines += ["  " + l for l in _wrapped(n, reason)]
    return lines, sum(bad.values())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("junit", type=Path)
    ap.add_argument("--allow", type=Path, default=HERE / "skip-allow.toml")
    args = ap.parse_args(argv)
    try:
        allow = load_allow(args.allow)
        reasons = skip_reasons(args.junit)
    except (OSError, ValueError, re.error, ET.ParseError, tomllib.TOMLDecodeError) as exc:
        print(f"skips: {exc}", file=sys.stderr)
        return 2
    lines, bad = report(reasons, allow)
    print("\n".join(lines))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

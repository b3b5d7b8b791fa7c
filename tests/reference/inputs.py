"""The inputs the three implementations are compared on, by name.

* ``fixtures``: the differential test's builder bases, the fuzz seeds
  (several valid files and every mutator's output on each:
  ``fuzz.seeds``), and the matrix's fixture files (every ``guest`` and
  ``mutator`` recipe of ``harness/expect/data``, built as the suite builds
  them);
* ``corruptions``: seeded random damage of the bases, resealed with a
  correct CRC-32 (tests/libigvm/test_random_mutations.py's generator);
* ``regressions``: the fuzz regression corpus (tests/untrusted/corpus and
  the generated hostile inputs of issue 13).
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

CORRUPTIONS_PER_BASE = 300
SEED = 20261207


def bases() -> dict[str, bytes]:
    from tests.libigvm.test_differential import BASES

    return {f"base:{n}": make() for n, make in BASES.items()}


def seeds() -> dict[str, bytes]:
    from fuzz import seeds as s

    return {f"seed:{n}": d for n, d in s.seeds().items()}


def matrix_fixtures() -> dict[str, bytes]:
    """Every file fixture of the matrix (the cells' recipes, one per case x platform x rule)."""
    from harness.errors import HarnessError
    from harness.expect.table import load
    from harness.matrix import recipes
    from harness.matrix.cells import generate
    from harness.matrix.guests import guest_images

    guests = guest_images()
    out: dict[str, bytes] = {}
    seen: set[tuple] = set()
    with tempfile.TemporaryDirectory(prefix="igvmh-matrix-fixtures-") as d:
        for cell in generate(load()):
            if cell.case.recipe not in ("guest", "mutator"):
                continue
            key = (cell.case.id, cell.platform, cell.rule)
            if key in seen:  # the syntaxes share one file
                continue
            seen.add(key)
            work = Path(d) / str(len(seen))
            work.mkdir()
            try:
                fx = recipes.build(cell.case.recipe, recipes.Context(
                    case_id=cell.case.id, form=cell.case.form, platform=cell.platform,
                    params=cell.case.params, workdir=work, guests=guests, rule=cell.rule))
            except HarnessError:
                continue  # a fixture the matrix itself reports as a suite error
            out[f"matrix:{cell.case.id}/{cell.platform}" + (f"/{cell.rule}" if cell.rule else "")] = \
                fx.igvm_path.read_bytes()
    return out


def fixtures() -> dict[str, bytes]:
    return {**bases(), **seeds(), **matrix_fixtures()}


def corruptions(per_base: int = CORRUPTIONS_PER_BASE) -> dict[str, bytes]:
    from tests.libigvm.test_differential import BASES
    from tests.libigvm.test_random_mutations import _corrupt

    rng = random.Random(SEED)
    return {f"corrupt:{n}:{i}": _corrupt(make(), rng) for n, make in BASES.items()
            for i in range(per_base)}


def regressions() -> dict[str, bytes]:
    from tests.untrusted.test_fuzz import regressions as r

    return {f"regression:{n}": d for n, d in r().items()}

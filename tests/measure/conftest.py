"""Fixtures for the measurement tests: the shared known-answer vectors.

Vectors live in ``<repo>/../shared/vectors`` (read-only, outside the repo);
tests that need them skip with the reason when the folder is absent.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VECTORS = REPO.parent / "shared" / "vectors"


def load_vector(name: str) -> dict:
    """Load one vector file, or skip the calling test with the reason."""
    path = VECTORS / name
    if not path.is_file():
        pytest.skip(f"known-answer vectors absent: no {path}")
    return json.loads(path.read_text())


def vector_cases(name: str, key: str = "cases", keep=lambda case: True) -> list:
    """Cases of a vector file for parametrize at collection time (one skipped
    param naming the missing file when absent); ``keep`` selects cases."""
    path = VECTORS / name
    if not path.is_file():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"known-answer vectors absent: no {path}"))]
    data = json.loads(path.read_text())
    return [pytest.param(c, id=str(c.get("name", i)) if isinstance(c, dict) else str(i))
            for i, c in enumerate(data[key]) if keep(c)]


def b64(text: str) -> bytes:
    return base64.b64decode(text)

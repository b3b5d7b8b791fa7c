"""Thin adapters from the certification profile to the layers it uses.

The profile needs the format layer (validation, QEMU lint), the expectations
data, the measurement layer and the QEMU layer (discovery, probe, runner).
Each adapter calls one layer's public API and turns "that layer is not
installed (yet)" into :class:`Unavailable` with a sentence naming what is
missing, which the profile reports as the check's skip reason.  Nothing here
re-implements a layer.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class Unavailable(Exception):
    """A check cannot run because a capability is missing; the message
    names it (e.g. "measurement unavailable: harness.measure not installed")."""


def need(module: str, what: str, *attrs: str) -> ModuleType:
    """Import ``module`` and check it has ``attrs``, or raise Unavailable."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and (module == exc.name or module.startswith(exc.name + ".")):
            raise Unavailable(f"{what} unavailable: {module} not installed") from None
        raise
    for attr in attrs:
        if not hasattr(mod, attr):
            raise Unavailable(f"{what} unavailable: {module} has no {attr}()")
    return mod


# --------------------------------------------------------------- format layer
def violations(data: bytes) -> list[dict[str, Any]]:
    """Every specification rule the file breaks (``harness.igvm.validate``)."""
    try:
        mod = need("harness.igvm.validate", "specification validation", "validate")
        found = mod.validate(data)
    except Unavailable:
        parser = need("harness.igvm.parser", "specification validation", "scan")
        found = parser.scan(data)[1]
    return [_plain(v) for v in found]


def parse(data: bytes) -> Any:
    """The model of a file; ``check=False`` so that a file with violations
    still gets its per-platform checks (the violations are their own check)."""
    parser = need("harness.igvm.parser", "IGVM parsing", "parse")
    return parser.parse(data, check=False)


def lint(model: Any, platform: str | None) -> list[dict[str, Any]]:
    """QEMU lint findings (``harness.igvm.qemu_lint``): valid IGVM that QEMU
    will refuse, for one platform or for the whole file."""
    mod = need("harness.igvm.qemu_lint", "QEMU lint", "lint")
    try:
        found = mod.lint(model, platform=platform)
    except TypeError:  # a lint without per-platform selection
        found = mod.lint(model)
    return [_plain(f) for f in found]


def _plain(obj: Any) -> dict[str, Any]:
    """A finding/violation as a JSON-ready dict."""
    if isinstance(obj, dict):
        return {k: _scalar(v) for k, v in obj.items()}
    for name in ("as_dict", "to_dict"):
        if callable(getattr(obj, name, None)):
            return {k: _scalar(v) for k, v in getattr(obj, name)().items()}
    if hasattr(obj, "__dataclass_fields__"):
        return {k: _scalar(getattr(obj, k)) for k in obj.__dataclass_fields__}
    return {"message": str(obj)}


def _scalar(v: Any) -> Any:
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_scalar(x) for x in v]
    return str(v)


# --------------------------------------------------------------- expectations
def expectations() -> Any:
    """The expectation tables (``harness.expect.table.load``)."""
    mod = need("harness.expect.table", "directive support data", "load")
    return mod.load()


# ---------------------------------------------------------------- measurement
def predict(data: bytes, model: Any, platform: str, vcpus: int) -> dict[str, Any]:
    """Predicted launch digest (``harness.measure.launch.predict`` with QEMU's
    default policy and the measurement layer's default host profile) as
    ``{"algorithm", "digest", "inputs"}``; a refusal is its HarnessError."""
    mod = need("harness.measure.launch", "measurement", "predict")
    result = mod.predict(model, platform, vcpus)
    out = _plain(result)
    inputs = {k: v for k, v in out.items()
              if k not in ("digest", "algorithm", "platform", "vmsa_sources", "notes")
              and v is not None}
    if out.get("notes"):
        inputs["notes"] = "; ".join(map(str, out["notes"]))
    return {"algorithm": out.get("algorithm", ""), "digest": out.get("digest"),
            "inputs": inputs}


# ----------------------------------------------------------------------- QEMU
def find_qemu(explicit: str | None) -> tuple[str | None, list[str]]:
    """The QEMU under test (``harness.qemu.discover.find``) and why others
    were passed over."""
    try:
        mod = need("harness.qemu.discover", "QEMU discovery", "find")
    except Unavailable as exc:
        return explicit, [str(exc)]
    found, notes = mod.find(explicit)
    return (found.path if found else None), list(notes)


def probe(qemu: str) -> Any:
    mod = need("harness.qemu.probe", "QEMU probe", "probe")
    return mod.probe(qemu)

"""Environment fingerprint: what a result depends on besides the harness code.

Every report carries one, so that a verdict on a dashboard can be traced to
the harness version, QEMU build (version and probed capabilities), kernel,
SEV firmware and the exact image (SHA-256) it was obtained with.

The QEMU probe belongs to ``harness.qemu.probe``; when that layer (or a QEMU)
is absent the fingerprint says so in ``qemu.note`` instead of failing.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import platform
import re
import socket
import subprocess
from pathlib import Path
from typing import Any

from harness import __version__
from harness.inputs import sha256_file

KVM_AMD_PARAMS = Path("/sys/module/kvm_amd/parameters")
# The ccp driver logs the firmware version at probe time, e.g.
# "ccp 0000:22:00.1: SEV API:1.55 build:21" (drivers/crypto/ccp/sev-dev.c).
_SEV_API_RE = re.compile(r"SEV(?:-SNP)? API:(\d+)\.(\d+) build:(\d+)")




def image_info(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    return {"path": str(path), "sha256": sha256_file(path), "size": path.stat().st_size}


def _cpu() -> tuple[str | None, str | None]:
    model = vendor = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model is None:
                    model = value.strip()
                elif key == "vendor_id" and vendor is None:
                    vendor = value.strip()
                if model and vendor:
                    break
    except OSError:
        pass
    return model, vendor


def _os_release() -> str:
    try:
        return platform.freedesktop_os_release().get("PRETTY_NAME", "")
    except OSError:
        return platform.platform()


def host_info() -> dict[str, Any]:
    model, vendor = _cpu()
    return {
        "hostname": socket.gethostname(),
        "kernel": platform.release(),
        "os": _os_release(),
        "cpu_model": model,
        "cpu_vendor": vendor,
    }


def _to_jsonable(value: Any) -> Any:
    """Best effort conversion of a probe result (dataclass, object with
    ``to_dict``/``as_dict``, mapping) into JSON data."""
    for name in ("to_json", "to_dict", "as_dict", "to_json_dict"):
        method = getattr(value, name, None)
        if callable(method):
            return _to_jsonable(method())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _to_jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    return str(value)


def _qemu_version_from_binary(qemu: str) -> str | None:
    try:
        out = subprocess.run([qemu, "--version"], capture_output=True, text=True,
                             timeout=20, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"version (\S+)", out)
    return match.group(1) if match else None


def qemu_info(qemu: str | None, probe: Any = None) -> dict[str, Any]:
    """QEMU path, version and probe.  ``probe`` may be passed in when the
    caller already probed; otherwise ``harness.qemu.probe`` is asked."""
    info: dict[str, Any] = {"path": qemu, "version": None, "probe": None, "note": None}
    if qemu is None:
        info["note"] = "no QEMU under test found"
        return info
    if probe is None:
        try:
            module = importlib.import_module("harness.qemu.probe")
        except ModuleNotFoundError:
            info["note"] = "QEMU probe unavailable: harness.qemu.probe not installed"
        else:
            func = getattr(module, "probe", None)
            if callable(func):
                try:
                    probe = func(qemu)
                except Exception as exc:  # noqa: BLE001 - a probe failure is evidence, not a crash
                    info["note"] = f"QEMU probe failed: {exc}"
            else:
                info["note"] = "QEMU probe unavailable: harness.qemu.probe has no probe()"
    if probe is not None:
        info["probe"] = _to_jsonable(probe)
        version = info["probe"].get("version") if isinstance(info["probe"], dict) else None
        if isinstance(version, dict):
            version = version.get("text") or ".".join(
                str(version.get(k, 0)) for k in ("major", "minor", "micro"))
        info["version"] = str(version) if version else None
    if info["version"] is None:
        info["version"] = _qemu_version_from_binary(qemu)
    # which igvm library the binary links (origin and version): the probe's record,
    # else asked of the binary (harness.qemu.libigvm.of_binary says how it knows)
    lib = info["probe"].get("libigvm") if isinstance(info["probe"], dict) else None
    if lib is None:
        try:
            from harness.qemu.libigvm import of_binary
            lib = of_binary(qemu)
        except (ImportError, OSError):
            lib = None
    info["libigvm"] = lib
    info["libigvm_name"] = _libigvm_name(lib)
    return info


def _libigvm_name(lib: dict[str, Any] | None) -> str | None:
    if not lib:
        return None
    from harness.qemu.libigvm import describe
    return describe(lib)


def sev_info(probe: dict[str, Any] | None = None) -> dict[str, Any]:
    """Host SEV state: /dev/sev, kvm_amd parameters and the firmware API
    version where the kernel log or the probe tells it."""
    info: dict[str, Any] = {"dev_sev": os.path.exists("/dev/sev"), "kvm_amd": {},
                            "api_version": None, "build": None, "source": None}
    if KVM_AMD_PARAMS.is_dir():
        for name in ("sev", "sev_es", "sev_snp"):
            try:
                info["kvm_amd"][name] = (KVM_AMD_PARAMS / name).read_text().strip()
            except OSError:
                pass
    # The probe may carry what QMP's query-sev reported on an SEV host.
    if isinstance(probe, dict):
        sev = probe.get("sev") or probe.get("host_sev") or {}
        if isinstance(sev, dict):
            major, minor = sev.get("api_major", sev.get("api-major")), sev.get(
                "api_minor", sev.get("api-minor"))
            if major is not None and minor is not None:
                info["api_version"] = f"{major}.{minor}"
                build = sev.get("build_id", sev.get("build-id"))
                info["build"] = int(build) if build is not None else None
                info["source"] = "QEMU probe"
    if info["api_version"] is None and info["dev_sev"]:
        try:
            log = subprocess.run(["dmesg"], capture_output=True, text=True, timeout=10,
                                 check=False).stdout
        except (OSError, subprocess.SubprocessError):
            log = ""
        found = _SEV_API_RE.findall(log)
        if found:
            major, minor, build = found[-1]
            info.update(api_version=f"{major}.{minor}", build=int(build),
                        source="kernel log (ccp driver)")
    if info["api_version"] is None:
        info["source"] = "no /dev/sev: no SEV firmware on this host" if not info["dev_sev"] \
            else "SEV firmware version not found (kernel log unreadable)"
    return info


def fingerprint(qemu: str | None = None, *, accel: str | None = None,
                image: str | Path | None = None, probe: Any = None) -> dict[str, Any]:
    """The whole environment fingerprint for a report."""
    q = qemu_info(qemu, probe)
    return {
        "harness_version": __version__,
        "python": platform.python_version(),
        "host": host_info(),
        "qemu": q,
        "accel": accel,
        "sev": sev_info(q.get("probe")),
        "image": image_info(image) if image is not None else None,
    }

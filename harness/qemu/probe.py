"""What a QEMU binary and this host can do for IGVM: the facts behind every skip.

Everything is asked of the real binary (``--version``, ``-object help``,
``-machine <m>,help``, ``-object <type>,help``, ``-accel help``) and of the
real host (``/dev/kvm``, ``/dev/sev``, ``kvm_amd`` parameters, CPUID
0x8000001F).  An accelerator counts as usable only when QEMU really starts
with it (``-machine none -accel X -S`` answering QMP ``quit``).

Result per binary is cached under ``<cache>/probe/`` keyed by the binary's
path, mtime and size, plus the host facts that can change (``/dev/kvm``
access), so the pytest plugin can call :func:`probe` freely.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.errors import HarnessError
from harness.outputs import write_atomic

PROBE_RECIPE = 3  # 3: the linked igvm library (libigvm)
MACHINES = ("q35", "pc")
SEV_TYPES = ("sev-guest", "sev-snp-guest")
HELP_TIMEOUT = 20.0
START_TIMEOUT = 20.0
# AMD64 APM vol. 3, appendix E.4.17: CPUID Fn8000_001F (encrypted memory)
CPUID_SEV_LEAF = 0x8000001F
KVM_AMD_PARAMS = ("sev", "sev_es", "sev_snp")
QMP_GREETING_INPUT = '{"execute":"qmp_capabilities"}\n{"execute":"quit"}\n'


@dataclass
class Accel:
    compiled: bool
    usable: bool
    reason: str = ""


@dataclass
class HostSev:
    dev_sev: bool
    dev_kvm: bool
    kvm_amd: dict[str, str | None] = field(default_factory=dict)
    cpuid: dict[str, int | bool] | None = None    # decoded Fn8000_001F, when readable
    cpuid_source: str = ""
    cpuinfo_flags: list[str] = field(default_factory=list)

    def enabled(self, level: str) -> bool:
        """Host can run *level* (sev / sev_es / sev_snp) guests."""
        param = self.kvm_amd.get(level)
        return self.dev_sev and self.dev_kvm and param is not None and param in ("Y", "1")


@dataclass
class Capabilities:
    qemu: str
    version: str | None
    version_line: str
    objects: list[str]
    igvm_cfg_object: bool
    machine_igvm_cfg: dict[str, bool]
    sev_types: dict[str, list[str] | None]   # type -> property names, None when absent
    early_igvm_file: bool                     # 'igvm-file' property on sev-guest
    accels: dict[str, Accel]
    host: HostSev
    sev_capabilities: dict | None = None
    sev_capabilities_note: str = ""
    errors: list[str] = field(default_factory=list)
    #: the igvm C library the binary links: origin (system / crates.io / own),
    #: version, and how that is known (harness.qemu.libigvm.of_binary: the
    #: harness's build record, else the binary's own contents)
    libigvm: dict | None = None

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "Capabilities":
        d = dict(d)
        d["accels"] = {k: Accel(**v) for k, v in d["accels"].items()}
        d["host"] = HostSev(**d["host"])
        return cls(**d)

    # -- capability names the plugin's @requires(...) understands ----------
    def _who(self) -> str:
        return f"QEMU {self.version or '(unknown version)'} at {self.qemu}"

    def missing(self, cap: str) -> str | None:
        """None when *cap* is present, else the sentence a skip should carry."""
        who = self._who()
        if cap in ("igvm", "igvm-cfg"):
            return None if self.igvm_cfg_object else f"{who} lacks igvm-cfg"
        if cap.startswith("machine-igvm-cfg"):
            m = cap.partition(":")[2] or "q35"
            return (None if self.machine_igvm_cfg.get(m)
                    else f"{who}: machine {m} lacks the igvm-cfg property")
        if cap in ("igvm-file", "early-igvm-syntax"):
            return (None if self.early_igvm_file
                    else f"{who} lacks the early syntax (no igvm-file property on sev-guest)")
        if cap in SEV_TYPES:
            return None if self.sev_types.get(cap) is not None else f"{who} lacks {cap}"
        if cap in ("kvm", "tcg"):
            a = self.accels.get(cap)
            if a and a.usable:
                return None
            if not a or not a.compiled:
                return f"{who} has no {cap.upper()} accelerator"
            return f"{cap.upper()} not usable: {a.reason}"
        if cap in ("sev", "sev-es", "sev-snp"):
            level = cap.replace("-", "_")
            if not self.host.dev_sev:
                return f"no /dev/sev (host cannot run {cap.upper()} guests)"
            if not self.host.dev_kvm:
                return f"/dev/kvm not usable (needed for {cap.upper()})"
            if not self.host.enabled(level):
                val = self.host.kvm_amd.get(level)
                return (f"kvm_amd parameter {level} is {val!r}"
                        if val is not None else f"no kvm_amd parameter {level} (kvm_amd not loaded)")
            kvm = self.missing("kvm")
            if kvm:
                return kvm
            typ = "sev-snp-guest" if cap == "sev-snp" else "sev-guest"
            return self.missing(typ)
        if cap == "dev-sev":
            return None if self.host.dev_sev else "no /dev/sev"
        raise HarnessError(f"unknown capability {cap!r}")

    def has(self, cap: str) -> bool:
        return self.missing(cap) is None

    def summary_lines(self) -> list[str]:
        yn = lambda b: "yes" if b else "no"  # noqa: E731
        from harness.qemu.libigvm import describe

        lines = [
            f"qemu:            {self.qemu}",
            f"version:         {self.version or 'unknown'}",
            f"libigvm:         {describe(self.libigvm)}"
            + (f" [{self.libigvm['how']}]" if self.libigvm and self.libigvm.get("how") else ""),
            f"igvm-cfg object: {yn(self.igvm_cfg_object)}",
            "machine igvm-cfg: " + ", ".join(f"{m}={yn(v)}" for m, v in self.machine_igvm_cfg.items()),
            f"early igvm-file: {yn(self.early_igvm_file)} (igvm-file property on sev-guest)",
        ]
        for t, props in self.sev_types.items():
            lines.append(f"{t + ':':17}{'no' if props is None else ', '.join(props)}")
        for name, a in self.accels.items():
            state = "usable" if a.usable else ("compiled in, not usable: " + a.reason
                                               if a.compiled else "not compiled in")
            lines.append(f"accel {name + ':':11}{state}")
        h = self.host
        lines.append(f"host /dev/kvm:   {yn(h.dev_kvm)}   /dev/sev: {yn(h.dev_sev)}")
        lines.append("host kvm_amd:    " + ", ".join(f"{k}={v}" for k, v in h.kvm_amd.items()))
        if h.cpuid is not None:
            lines.append(f"host CPUID 0x8000001F ({h.cpuid_source}): "
                         + ", ".join(f"{k}={v}" for k, v in h.cpuid.items()))
        else:
            lines.append(f"host CPUID 0x8000001F: {h.cpuid_source}")
        lines.append("host cpuinfo:    " + (", ".join(h.cpuinfo_flags) or "no sev flags"))
        lines.append(f"SEV caps (QMP): {self.sev_capabilities or self.sev_capabilities_note}")
        for e in self.errors:
            lines.append(f"note: {e}")
        return lines


# --------------------------------------------------------------------------
# asking QEMU

def _run(qemu: str, args: list[str], timeout: float = HELP_TIMEOUT,
         stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run ``qemu args`` in a session of its own, so that a timeout or Ctrl-C
    kills whatever it started too (a wrapper script's children); a binary the
    kernel cannot execute is a one-line HarnessError."""
    try:
        proc = subprocess.Popen([qemu, *args], stdin=subprocess.PIPE if stdin is not None
                                else subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, errors="replace",
                                start_new_session=True)
    except OSError as exc:
        raise HarnessError(f"cannot run {qemu}: {exc.strerror or exc}") from None
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, err = proc.communicate()
        return subprocess.CompletedProcess(proc.args, -9, out or "", "timed out")
    except BaseException:
        _kill_group(proc)
        proc.wait()
        raise
    _kill_group(proc)  # anything the binary left running in its session
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


VERSION_RE = re.compile(r"QEMU emulator version (\d+\.\d+\.\d+)")


def parse_version(text: str) -> str | None:
    m = VERSION_RE.search(text)
    return m.group(1) if m else None


def parse_object_list(text: str) -> list[str]:
    """``-object help``: a header line then one type name per indented line."""
    return [l.strip() for l in text.splitlines()[1:] if l.startswith(" ") and l.strip()]


PROP_RE = re.compile(r"^\s+([A-Za-z0-9_.-]+)=")


def parse_properties(text: str) -> list[str]:
    """``-object T,help`` / ``-machine M,help``: lines like ``  name=<type> - text``."""
    return sorted({m.group(1) for l in text.splitlines() if (m := PROP_RE.match(l))})


def parse_accels(text: str) -> list[str]:
    lines = text.splitlines()
    return [l.strip() for l in lines[1:] if l.strip() and " " not in l.strip()]


def qmp_stdio(qemu: str, commands: list[dict], accel: str | None = None,
              timeout: float = START_TIMEOUT) -> tuple[dict[str, dict], str]:
    """Run *commands* (each with an ``id``) through QMP on stdio of a stopped
    ``-machine none`` QEMU; return ``{id: response}`` and stderr."""
    lines = ['{"execute":"qmp_capabilities"}']
    lines += [json.dumps(c) for c in commands]
    lines.append('{"execute":"quit"}')
    args = ["-machine", "none", "-nodefaults", "-display", "none", "-S", "-qmp", "stdio"]
    if accel:
        args[2:2] = ["-accel", accel]
    res = _run(qemu, args, timeout=timeout, stdin="\n".join(lines) + "\n")
    out: dict[str, dict] = {}
    for line in res.stdout.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if isinstance(msg, dict) and "id" in msg:
            out[str(msg["id"])] = msg
    return out, res.stderr


def object_properties(qemu: str, types: list[str]) -> dict[str, list[str] | None]:
    """Every property of each QOM type, instance ones included.

    ``-object T,help`` lists class properties only (sev-guest's ``cbitpos``,
    ``policy``... are added per instance in target/i386/sev.c), so ask QMP
    ``qom-list-properties``, which instantiates the type without realising it.
    """
    if not types:
        return {}
    cmds = [{"execute": "qom-list-properties", "arguments": {"typename": t}, "id": t}
            for t in types]
    replies, _ = qmp_stdio(qemu, cmds)
    props: dict[str, list[str] | None] = {}
    for t in types:
        r = replies.get(t, {})
        if isinstance(r.get("return"), list):
            props[t] = sorted(p["name"] for p in r["return"] if p.get("name") != "type")
        else:
            props[t] = None
    return props


def accel_starts(qemu: str, accel: str) -> tuple[bool, str]:
    """Does ``-machine none -accel ACCEL`` start and answer QMP ``quit``?"""
    res = _run(qemu, ["-machine", "none", "-accel", accel, "-nodefaults", "-display", "none",
                      "-S", "-qmp", "stdio"], timeout=START_TIMEOUT, stdin=QMP_GREETING_INPUT)
    if res.returncode == 0 and '"return"' in res.stdout:
        return True, ""
    err = (res.stderr.strip().splitlines() or [f"exit status {res.returncode}"])[-1]
    return False, err[:200]


# --------------------------------------------------------------------------
# asking the host

def read_cpuid_leaf(leaf: int, dev: str = "/dev/cpu/0/cpuid") -> tuple[int, int, int, int] | None:
    """EAX..EDX of *leaf* through the cpuid driver (root + ``modprobe cpuid``)."""
    try:
        with open(dev, "rb") as f:
            f.seek(leaf)
            data = f.read(16)
    except OSError:
        return None
    if len(data) != 16:
        return None
    return tuple(int.from_bytes(data[i:i + 4], "little") for i in range(0, 16, 4))  # type: ignore


def decode_sev_leaf(regs: tuple[int, int, int, int]) -> dict[str, int | bool]:
    """Fn8000_001F per AMD64 APM vol. 3 (E.4.17)."""
    eax, ebx, ecx, edx = regs
    return {
        "sme": bool(eax & 1 << 0), "sev": bool(eax & 1 << 1), "sev_es": bool(eax & 1 << 3),
        "sev_snp": bool(eax & 1 << 4),
        "cbitpos": ebx & 0x3F, "phys_addr_reduction": (ebx >> 6) & 0x3F,
        "num_encrypted_guests": ecx, "min_sev_asid": edx,
    }


def host_sev(sysfs: Path = Path("/sys/module/kvm_amd/parameters"),
             cpuinfo: Path = Path("/proc/cpuinfo")) -> HostSev:
    params: dict[str, str | None] = {}
    for p in KVM_AMD_PARAMS:
        try:
            params[p] = (sysfs / p).read_text().strip()
        except OSError:
            params[p] = None
    flags: list[str] = []
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                flags = [f for f in ("sev", "sev_es", "sev_snp") if f in have]
                break
    except OSError:
        pass
    regs = read_cpuid_leaf(CPUID_SEV_LEAF)
    vendor_amd = "AuthenticAMD" in (cpuinfo.read_text(errors="replace")
                                    if cpuinfo.is_file() else "")
    if regs is not None and vendor_amd:
        cpuid, src = decode_sev_leaf(regs), "/dev/cpu/0/cpuid"
    elif regs is not None:
        cpuid, src = None, "not an AMD CPU (leaf not defined)"
    else:
        cpuid, src = None, "unreadable (/dev/cpu/0/cpuid absent: needs root and `modprobe cpuid`)"
    return HostSev(
        dev_sev=os.path.exists("/dev/sev"),
        dev_kvm=os.access("/dev/kvm", os.R_OK | os.W_OK),
        kvm_amd=params, cpuid=cpuid, cpuid_source=src, cpuinfo_flags=flags,
    )


def query_sev_capabilities(qemu: str) -> dict:
    """QMP ``query-sev-capabilities`` on a real SEV host (qemu.qmp).

    Never runs on the development machines (no SEV hardware): untested here.
    """
    from qemu.qmp.legacy import QEMUMonitorProtocol

    with tempfile.TemporaryDirectory(prefix="igvmh-probe-") as d:
        sock = os.path.join(d, "qmp.sock")
        mon = QEMUMonitorProtocol(sock, server=True)
        proc = subprocess.Popen([qemu, "-machine", "none", "-accel", "kvm", "-nodefaults",
                                 "-display", "none", "-S", "-qmp", f"unix:{sock}"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        try:
            mon.accept(timeout=START_TIMEOUT)
            caps = mon.cmd("query-sev-capabilities")
            mon.cmd("quit")
            return caps
        finally:
            mon.close()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# --------------------------------------------------------------------------

def _probe_uncached(qemu: str) -> Capabilities:
    errors: list[str] = []
    ver = _run(qemu, ["--version"])
    if ver.returncode != 0:
        raise HarnessError(f"{qemu} --version failed: "
                           f"{(ver.stderr.strip().splitlines() or ['no output'])[-1]}")
    version_line = (ver.stdout.strip().splitlines() or [""])[0]
    version = parse_version(ver.stdout)
    if version is None:
        raise HarnessError(f"{qemu} is not QEMU (--version says {version_line!r})")
    objs = parse_object_list(_run(qemu, ["-object", "help"]).stdout)
    machine_igvm: dict[str, bool] = {}
    for m in MACHINES:
        out = _run(qemu, ["-machine", f"{m},help"])
        if out.returncode != 0:
            errors.append(f"-machine {m},help failed: {out.stderr.strip()[:120]}")
        machine_igvm[m] = "igvm-cfg" in parse_properties(out.stdout)
    present = [t for t in SEV_TYPES if t in objs]
    sev_types: dict[str, list[str] | None] = {t: None for t in SEV_TYPES}
    sev_types.update(object_properties(qemu, present))
    for t in present:
        if sev_types[t] is None:  # QMP failed: fall back to the class properties
            errors.append(f"qom-list-properties {t} failed; listing class properties only")
            sev_types[t] = parse_properties(_run(qemu, ["-object", f"{t},help"]).stdout)
    accel_names = parse_accels(_run(qemu, ["-accel", "help"]).stdout)
    host = host_sev()
    accels: dict[str, Accel] = {}
    for a in ("kvm", "tcg"):
        if a not in accel_names:
            accels[a] = Accel(False, False, "not compiled in")
        elif a == "kvm" and not host.dev_kvm:
            accels[a] = Accel(True, False, "no usable /dev/kvm")
        else:
            ok, why = accel_starts(qemu, a)
            accels[a] = Accel(True, ok, why)
    caps = Capabilities(
        qemu=qemu, version=version, version_line=version_line, objects=objs,
        igvm_cfg_object="igvm-cfg" in objs, machine_igvm_cfg=machine_igvm,
        sev_types=sev_types,
        early_igvm_file="igvm-file" in (sev_types.get("sev-guest") or []),
        accels=accels, host=host, errors=errors, libigvm=libigvm_of(qemu),
    )
    if host.enabled("sev") and accels["kvm"].usable and sev_types.get("sev-guest") is not None:
        try:
            caps.sev_capabilities = query_sev_capabilities(qemu)
        except Exception as exc:  # noqa: BLE001 - reported, never fatal
            caps.sev_capabilities_note = f"query-sev-capabilities failed: {exc}"
    else:
        caps.sev_capabilities_note = "not queried (no SEV host: /dev/sev and kvm_amd sev=Y needed)"
    return caps


def libigvm_of(qemu: str) -> dict:
    """Which igvm library the binary links (its build record, else its contents)."""
    from harness.qemu.libigvm import of_binary

    return of_binary(qemu)


def resolve_binary(qemu: str | os.PathLike) -> str:
    q = str(qemu)
    if os.sep not in q:
        import shutil
        found = shutil.which(q)
        if not found:
            raise HarnessError(f"QEMU binary {q} not found on PATH")
        q = found
    if not os.path.isfile(q) or not os.access(q, os.X_OK):
        raise HarnessError(f"QEMU binary {q} does not exist or is not executable")
    return os.path.abspath(q)


def _cache_file(qemu: str, cache: Path) -> Path:
    st = os.stat(qemu)
    ident = json.dumps([PROBE_RECIPE, qemu, st.st_mtime_ns, st.st_size,
                        os.access("/dev/kvm", os.R_OK | os.W_OK), os.path.exists("/dev/sev")])
    return cache / "probe" / (hashlib.sha256(ident.encode()).hexdigest()[:24] + ".json")


def probe(qemu: str | os.PathLike, cache: Path | None = None, use_cache: bool = True) -> Capabilities:
    """Capabilities of the QEMU binary *qemu* on this host (cached per binary)."""
    from harness import cache as layout

    path = resolve_binary(qemu)
    cf = _cache_file(path, cache or layout.root())
    if use_cache and cf.is_file():
        try:
            return Capabilities.from_json(json.loads(cf.read_text()))
        except (ValueError, TypeError, KeyError):
            pass
    caps = _probe_uncached(path)
    try:
        cf.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(cf, json.dumps(caps.to_json(), indent=1), prefix=f".{cf.name}.")
    except OSError:
        pass  # a read-only cache only costs speed
    return caps

"""Hardware verification of predicted launch measurements over QMP.

Written to run unchanged on an SEV host; here it is exercised up to the
hardware boundary (session crypto against vectors, QMP flow against a
recorded replay).  Starting QEMU is not this layer's job: callers pass a
``launch(object_properties, igvm_path)`` context manager that starts QEMU
paused (``-S``) with ``-object <properties>`` and the IGVM file and yields a
:class:`Qmp`, raising :class:`LaunchFailed` (with QEMU's log) if QEMU exits.

SEV / SEV-ES (AMD SEV API, LAUNCH_START..LAUNCH_MEASURE; QEMU target/i386/sev.c):
1. ``query-sev-capabilities`` gives the platform PDH and its chain (PEK|OCA|CEK);
   PEK must sign the PDH.
2. A :class:`LaunchSession` (GODH + session blob) goes into ``dh-cert-file`` /
   ``session-file``; QEMU passes them to LAUNCH_START (sev_launch_start).
3. At machine-init-done QEMU measures (sev_launch_get_measure); with ``-S`` the
   guest stays in state ``launch-secret``.  ``query-sev`` gives the API version,
   build and policy; ``query-sev-launch-measure`` the MEASURE||MNONCE blob,
   checked with the TIK against the predicted digest.
4. ``query-sev-attestation-report`` (when the firmware has it) returns a report
   holding the launch digest itself, compared directly.

SEV-SNP: the predicted digest goes into an ID block signed with harness keys,
placed in the IGVM file (QEMU takes the ID block from the file and discards a
command-line one, target/i386/sev.c cgs_set_guest_policy).  SNP_LAUNCH_FINISH
must succeed; with one byte of the digest changed it must fail.  Note: QEMU
issues SNP_LAUNCH_START (with the ``sev-snp-guest`` policy) before it reads the
IGVM file, so the file's GUEST_POLICY must equal that policy, or the ID block's
policy check fails.
"""

from __future__ import annotations

import base64
import copy
import os
import re
import struct
import tempfile
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from harness.errors import HarnessError
from harness.igvm import model as m
from harness.igvm.defs import PlatformType
from harness.measure import idblock, triage
from harness.measure.certs import SevCert, Usage, split_cert_chain
from harness.measure.kvm_vmsa import HostProfile, VmType
from harness.measure.launch import Prediction, predict
from harness.measure.measure_sev import LaunchMeasurement, check_launch_measure
from harness.measure.session import LaunchSession


class Qmp(Protocol):
    """The one QMP operation this module needs: run a command, return its ``return`` value."""

    def execute(self, command: str, arguments: dict | None = None) -> Any: ...


class QmpCommandError(HarnessError):
    """A QMP command answered with an error."""


class LaunchFailed(HarnessError):
    """QEMU exited during launch; ``log`` holds its output."""

    def __init__(self, message: str, log: str = "") -> None:
        super().__init__(message)
        self.log = log


Launcher = Callable[[dict, str], AbstractContextManager]

#: QEMU's message when the firmware rejects SNP_LAUNCH_FINISH (sev_snp_launch_finish).
SNP_LAUNCH_FINISH_FAILED = re.compile(r"SNP_LAUNCH_FINISH ret=-?\d+ fw_error=(\d+) '([^']*)'")


# ------------------------------------------------------------------ SEV
@dataclass
class PlatformInfo:
    pdh: SevCert
    chain: list[SevCert]
    cbitpos: int
    reduced_phys_bits: int
    cpu0_id: bytes
    chain_checks: dict[str, bool] = field(default_factory=dict)


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (ValueError, TypeError):
        raise HarnessError(f"{what} from QEMU is not base64") from None


def read_capabilities(qmp: Qmp) -> PlatformInfo:
    caps = qmp.execute("query-sev-capabilities")
    pdh = SevCert.parse(_b64(caps["pdh"], "pdh"), "platform PDH")
    chain = split_cert_chain(_b64(caps["cert-chain"], "cert-chain"))
    info = PlatformInfo(pdh, chain, int(caps["cbitpos"]), int(caps["reduced-phys-bits"]),
                        _b64(caps.get("cpu0-id", ""), "cpu0-id"))
    by_usage = {c.usage: c for c in chain}
    pek = by_usage.get(Usage.PEK)
    if pek is None or not pdh.signed_by(pek):
        raise HarnessError("the platform PDH is not signed by the PEK in query-sev-capabilities' cert-chain")
    info.chain_checks["PEK signs PDH"] = True
    for name, usage in (("OCA signs PEK", Usage.OCA), ("CEK signs PEK", Usage.CEK)):
        signer = by_usage.get(usage)
        info.chain_checks[name] = bool(signer and pek.signed_by(signer))
    return info


def sev_object_properties(session_files: tuple[str, str], policy: int, info: PlatformInfo,
                          vm_type: VmType) -> dict:
    """``-object sev-guest`` properties for the launch (QAPI SevGuestProperties)."""
    return {"qom-type": "sev-guest", "id": "sev0", "policy": policy, "cbitpos": info.cbitpos,
            "reduced-phys-bits": info.reduced_phys_bits, "dh-cert-file": session_files[0],
            "session-file": session_files[1],
            "legacy-vm-type": "on" if vm_type is VmType.LEGACY else "off"}


@dataclass
class AttestationReport:
    """SEV API ATTESTATION report head: MNONCE[16] | LAUNCH_DIGEST[32] | POLICY u32 | SIG_USAGE u32 | SIG_ALGO u32."""

    mnonce: bytes
    launch_digest: bytes
    policy: int
    sig_usage: int
    sig_algo: int

    @classmethod
    def parse(cls, raw: bytes) -> "AttestationReport":
        if len(raw) < 0x3C:
            raise HarnessError(f"SEV attestation report is {len(raw)} bytes, too short")
        policy, usage, algo = struct.unpack_from("<III", raw, 0x30)
        return cls(raw[:16], raw[16:48], policy, usage, algo)


@dataclass
class SevVerdict:
    ok: bool
    predicted: str
    api: tuple[int, int]
    build: int
    policy: int
    measurement: str
    attestation_digest: str | None = None
    attestation_matches: bool | None = None
    report: str = ""


def check_sev_launch(qmp: Qmp, session: LaunchSession, pred: Prediction,
                     repredict: Callable[[HostProfile, int], Prediction] | None = None,
                     mnonce: bytes | None = None) -> SevVerdict:
    """Steps 3-4 of the SEV flow on a paused guest."""
    info = qmp.execute("query-sev")
    if not info.get("enabled") or info.get("sev-type", "sev") != "sev":
        raise HarnessError(f"query-sev reports no SEV guest: {info}")
    if info.get("state") != "launch-secret":
        raise HarnessError(f"SEV guest state is {info.get('state')!r}, expected 'launch-secret' "
                           "(start QEMU with -S; the measurement exists after machine init)")
    api, build, policy = (int(info["api-major"]), int(info["api-minor"])), int(info["build-id"]), int(info["policy"])
    blob = qmp.execute("query-sev-launch-measure")["data"]
    observed = LaunchMeasurement.from_base64(blob)
    ok = check_launch_measure(session.tik, api[0], api[1], build, policy, pred.digest, observed)
    verdict = SevVerdict(ok, pred.hexdigest, api, build, policy, blob)
    try:
        nonce = mnonce or os.urandom(16)
        rep = qmp.execute("query-sev-attestation-report", {"mnonce": base64.b64encode(nonce).decode()})
        ar = AttestationReport.parse(_b64(rep["data"], "attestation report"))
        verdict.attestation_digest = ar.launch_digest.hex()
        verdict.attestation_matches = ar.launch_digest == pred.digest and ar.mnonce == nonce
        verdict.ok = verdict.ok and verdict.attestation_matches
    except QmpCommandError:
        pass  # firmware or kernel without ATTESTATION: the MAC check stands alone
    if not verdict.ok:
        observed_info = {"policy": f"{policy:#x}", "api": f"{api[0]}.{api[1]} build {build}"}
        try:
            observed_info["vcpus"] = len(qmp.execute("query-cpus-fast"))
        except QmpCommandError:
            pass
        found = None
        if repredict is not None:
            found = triage.search_alternatives(
                repredict, pred.host, pred.vcpus,
                lambda d: check_launch_measure(session.tik, api[0], api[1], build, policy, d, observed))
        verdict.report = triage.report(pred, observed_info, found)
    return verdict


def verify_sev(f: m.IgvmFile, platform: str, vcpus: int, host: HostProfile, policy: int | None,
               caps_qmp: Qmp, launch: Launcher, igvm_path: str, workdir: str | None = None) -> SevVerdict:
    """The whole SEV / SEV-ES flow (steps 1-4)."""
    pred = predict(f, platform, vcpus, host, policy)
    info = read_capabilities(caps_qmp)
    session = LaunchSession.create(info.pdh, pred.policy)
    with tempfile.TemporaryDirectory(prefix="igvm-sev-", dir=workdir) as d:
        props = sev_object_properties(session.write_files(d), pred.policy, info, host.vm_type)
        with launch(props, igvm_path) as qmp:
            return check_sev_launch(qmp, session, pred,
                                    lambda h, n: predict(f, platform, n, h, pred.policy))


def object_arg(props: dict) -> str:
    """``-object`` argument text for properties (QEMU's key=value syntax, commas doubled)."""
    def val(v) -> str:
        if isinstance(v, bool):
            v = "on" if v else "off"
        return str(v).replace(",", ",,")
    rest = ",".join(f"{k}={val(v)}" for k, v in props.items() if k != "qom-type")
    return f"{props['qom-type']},{rest}"


# ------------------------------------------------------------------ SNP
def snp_object_properties(policy: int, cbitpos: int, reduced_phys_bits: int) -> dict:
    return {"qom-type": "sev-snp-guest", "id": "sev0", "policy": policy, "cbitpos": cbitpos,
            "reduced-phys-bits": reduced_phys_bits}


@dataclass
class SnpVerdict:
    launched: bool
    digest_in_id_block: str
    detail: str = ""


def with_id_block(f: m.IgvmFile, digest: bytes, policy: int, keys: idblock.IdKeys,
                  tamper: bool = False) -> m.IgvmFile:
    """A copy of ``f`` whose SNP platform carries an ID block for ``digest``
    (one byte changed when ``tamper``) and GUEST_POLICY ``policy``."""
    g = copy.copy(f)
    g.directives, g.initializations = list(f.directives), list(f.initializations)
    mask = f.mask_for(PlatformType.SEV_SNP)
    if not mask:
        raise HarnessError("the file has no SEV_SNP platform")
    if tamper:
        digest = bytes([digest[0] ^ 0x01]) + digest[1:]
    idblock.add_to_igvm(g, mask, digest, policy, keys)
    return g


def check_snp_launch(launch: Launcher, props: dict, igvm_path: str, digest: bytes) -> SnpVerdict:
    try:
        with launch(props, igvm_path) as qmp:
            info = qmp.execute("query-sev")
    except LaunchFailed as exc:
        mm = SNP_LAUNCH_FINISH_FAILED.search(exc.log)
        why = f"SNP_LAUNCH_FINISH failed: fw_error {mm.group(1)} ({mm.group(2)})" if mm else str(exc)
        return SnpVerdict(False, digest.hex(), why)
    ok = (info.get("enabled") and info.get("sev-type") == "sev-snp" and info.get("state") == "running"
          and int(info.get("snp-policy", -1)) == props["policy"])
    return SnpVerdict(bool(ok), digest.hex(), f"query-sev: {info}")


def verify_snp(f: m.IgvmFile, vcpus: int, host: HostProfile, policy: int, cbitpos: int,
               reduced_phys_bits: int, launch: Launcher, serialize: Callable[[m.IgvmFile], bytes],
               keys: idblock.IdKeys | None = None, workdir: str | None = None) -> tuple[SnpVerdict, SnpVerdict]:
    """Launch with the predicted digest in the ID block (must succeed), then with
    one byte changed (must fail).  Returns both verdicts."""
    pred = predict(f, "sev-snp", vcpus, host, policy)
    keys = keys or idblock.IdKeys.generate()
    props = snp_object_properties(policy, cbitpos, reduced_phys_bits)
    out = []
    with tempfile.TemporaryDirectory(prefix="igvm-snp-", dir=workdir) as d:
        for tamper in (False, True):
            g = with_id_block(f, pred.digest, policy, keys, tamper)
            path = os.path.join(d, "tampered.igvm" if tamper else "good.igvm")
            with open(path, "wb") as fh:
                fh.write(serialize(g))
            digest = bytes(next(x for x in g.directives if isinstance(x, m.SnpIdBlock)).ld)
            out.append(check_snp_launch(launch, props, path, digest))
    return out[0], out[1]


class QmpSocket:
    """:class:`Qmp` over a QMP UNIX socket with qemu.qmp's synchronous client (for lab scripts)."""

    def __init__(self, path: str, timeout: float = 30.0) -> None:
        from qemu.qmp.legacy import QEMUMonitorProtocol

        self._qmp = QEMUMonitorProtocol(path)
        self._qmp.connect()
        self._qmp.settimeout(timeout)

    def execute(self, command: str, arguments: dict | None = None) -> Any:
        reply = self._qmp.cmd_raw(command, arguments)
        if "error" in reply:
            raise QmpCommandError(f"{command}: {reply['error'].get('desc', reply['error'])}")
        return reply.get("return")

    def close(self) -> None:
        self._qmp.close()

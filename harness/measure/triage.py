"""Mismatch triage: what to check when a predicted launch measurement is not the observed one.

Modelled on the "common mistakes" list of libvirt's virt-qemu-sev-validate:
the usual causes are a different policy, firmware API version/build, vCPU
count, VM type (legacy KVM_SEV_ES_INIT vs KVM_SEV_INIT2), sev_features chosen
by the kernel, CPU model (RDX), and the host's CR4.MCE.  Besides printing the
checklist, :func:`search_alternatives` re-predicts with each input changed and
reports which change would have produced the observed measurement, and
:func:`vmsa_diff_lines` compares VMSAs field by field.
"""

from __future__ import annotations

import re
from harness.record import replace
from typing import Callable, Iterable

from harness.errors import HarnessError
from harness.measure import kvm_vmsa
from harness.measure.kvm_vmsa import KERNEL_PROFILES, QEMU_CPU_MODELS, HostProfile, VmType, cpu_signature
from harness.measure.launch import Prediction


def checklist(pred: Prediction, observed: dict | None = None) -> list[str]:
    """One line per input the digest depends on, with the observed value when known."""
    obs = observed or {}

    def line(name: str, predicted, seen=None) -> str:
        if seen is None:
            return f"[ ] {name}: predicted with {predicted}"
        mark = "ok" if str(seen) == str(predicted) else "MISMATCH"
        return f"[{mark}] {name}: predicted with {predicted}, observed {seen}"

    d = pred.as_dict()
    out = [
        line("policy", d["policy"], obs.get("policy")),
        line("firmware API version/build (used in the MAC)", obs.get("api", "n/a"), None)
        if "api" not in obs else f"[ ] firmware API version/build used in the MAC: {obs['api']}",
        line("vCPU count", d["vcpus"], obs.get("vcpus")),
        line("VM type", d["vm_type"], obs.get("vm_type")),
        line("sev_features", d["sev_features"], obs.get("sev_features")),
        line("kernel profile", d["kernel_profile"], None),
        line("CPU signature (RDX, from -cpu)", d["cpu_signature"], obs.get("cpu_signature")),
        line("host CR4.MCE", pred.host.host_cr4_mce, None),
        "[ ] QEMU version: this model follows QEMU 10.2 (TR base taken from LDTR base; "
        "legacy-vm-type unset behaves as on)",
        "[ ] the IGVM file given to QEMU is byte-identical to the one measured",
    ]
    return out


def alternatives(host: HostProfile, vcpus: int) -> Iterable[tuple[str, HostProfile, int]]:
    """Plausible other inputs: VM type, kernel profile, CPU model, CR4.MCE, vCPU count."""
    other = VmType.INIT2 if host.vm_type is VmType.LEGACY else VmType.LEGACY
    yield f"vm-type={other.value}", replace(host, vm_type=other, kernel="linux-6.10"), vcpus
    for name in KERNEL_PROFILES:
        if name != host.kernel:
            yield f"kernel-profile={name}", replace(host, kernel=name, vm_type=VmType.LEGACY), vcpus
    seen = {host.cpu_sig}
    for model, fms in QEMU_CPU_MODELS.items():
        sig = cpu_signature(*fms)
        if sig not in seen:
            seen.add(sig)
            yield f"vcpu-type={model}", replace(host, cpu_sig=sig), vcpus
    yield "host-cr4-mce=" + str(not host.host_cr4_mce), replace(host, host_cr4_mce=not host.host_cr4_mce), vcpus
    for n in range(1, max(9, vcpus + 3)):
        if n != vcpus:
            yield f"vcpus={n}", host, n


def search_alternatives(predict_fn: Callable[[HostProfile, int], Prediction], host: HostProfile, vcpus: int,
                        matches: Callable[[bytes], bool]) -> list[tuple[str, Prediction]]:
    """Single-input changes whose prediction ``matches`` the observation, with that prediction."""
    found = []
    for name, h, n in alternatives(host, vcpus):
        try:
            alt = predict_fn(h, n)
        except HarnessError:  # an alternative the file cannot run with
            continue
        if matches(alt.digest):
            found.append((name, alt))
    return found


def vmsa_diff_lines(expected: bytes, observed: bytes, label: str = "vCPU") -> list[str]:
    diffs = kvm_vmsa.diff_vmsa(expected, observed)
    if not diffs:
        return [f"{label}: VMSAs identical"]
    return [f"{label}: {name}: predicted {a:#x}, observed {b:#x}" for name, a, b in diffs]


_HEX_ROW = re.compile(r"(?:^|[\s:])((?:[0-9a-f]{2} ){15}[0-9a-f]{2})\s*$", re.I)


def parse_kvm_vmsa_dump(text: str) -> list[bytes]:
    """VMSAs from KVM's dynamic-debug output of sev_es_sync_vmsa.

    With ``dyndbg`` enabled for arch/x86/kvm/svm/sev.c, KVM prints
    "Virtual Machine Save Area (VMSA):" and the page with print_hex_dump_debug
    (16 bytes per row, no prefix).  Returns one 4 KiB page per dump found.
    """
    pages: list[bytes] = []
    cur: bytearray | None = None
    for raw in text.splitlines():
        if "Virtual Machine Save Area (VMSA)" in raw:
            if cur is not None and len(cur) >= kvm_vmsa.VMSA_SIZE:
                pages.append(bytes(cur[:kvm_vmsa.VMSA_SIZE]))
            cur = bytearray()
            continue
        if cur is None:
            continue
        m = _HEX_ROW.search(raw.rstrip())
        if m:
            cur += bytes.fromhex(m.group(1).replace(" ", ""))
            if len(cur) >= kvm_vmsa.VMSA_SIZE:
                pages.append(bytes(cur[:kvm_vmsa.VMSA_SIZE]))
                cur = None
    return pages


def report(pred: Prediction, observed: dict | None = None,
           alternatives_found: list[tuple[str, Prediction]] | None = None,
           observed_vmsas: list[bytes] | None = None) -> str:
    """The triage text.  VMSAs are compared with ``observed_vmsas`` (e.g. from
    :func:`parse_kvm_vmsa_dump`) or else with those of the first matching alternative."""
    lines = [f"launch measurement does not match the prediction {pred.hexdigest}", "checklist:"]
    lines += ["  " + x for x in checklist(pred, observed)]
    if alternatives_found is not None:
        lines.append("single changes that reproduce the observation: "
                     + (", ".join(n for n, _p in alternatives_found) if alternatives_found else "none found"))
    label = "observed"
    if not observed_vmsas and alternatives_found:
        label, alt = alternatives_found[0]
        observed_vmsas = alt.vmsas
    if observed_vmsas:
        lines.append(f"VMSA comparison (predicted vs {label}):")
        for i, (exp, obs) in enumerate(zip(pred.vmsas, observed_vmsas)):
            lines += ["  " + x for x in vmsa_diff_lines(exp, obs, f"vCPU {i}")]
        if len(pred.vmsas) != len(observed_vmsas):
            lines.append(f"  predicted {len(pred.vmsas)} VMSAs, compared with {len(observed_vmsas)}")
    return "\n".join(lines)

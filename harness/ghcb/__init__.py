"""GHCB model: run an SEV-ES / SEV-SNP IGVM guest in a CPU emulator against
a model of the hypervisor, before any lab host sees it.

The guest code runs in unicorn (PyPI), starting from the VMSA the launch
measures (harness.measure: the file's VP context after QEMU and KVM, or
KVM's reset state) over the memory the file's page directives lay out.
VMGEXIT and the GHCB MSR are answered per the GHCB specification (AMD
56421 rev 2.03) the way KVM does; #VC is raised where the hardware raises
it.  What this proves, and what only hardware proves, is stated in the
README ("GHCB model").

Thin face: :func:`run_file` / :func:`run_igvm`; the parts are
``spec`` (facts), ``memory`` (views, RMP), ``cpu`` (start state, page walk,
delivery), ``hypervisor`` (GHCB answers, devices), ``machine`` (the run).
"""

from __future__ import annotations

from harness.errors import HarnessError

#: The platforms the model runs.
PLATFORMS = ("sev-es", "sev-snp")
#: QEMU's x86_64 CPU when ``-cpu`` is absent, as the matrix runs it
#: (target/i386/cpu.h TARGET_DEFAULT_CPU_TYPE "qemu64"; builtin_x86_defs:
#: family 15, model 107, stepping 1): its signature is RDX at reset.
DEFAULT_CPU = ("qemu64", 15, 107, 1)
DEFAULT_RAM = 256 << 20


def default_host_profile():
    """harness.measure's host profile with the CPU the matrix's QEMU uses."""
    from harness.measure.kvm_vmsa import HostProfile, cpu_signature
    return HostProfile(cpu_sig=cpu_signature(*DEFAULT_CPU[1:]))


def run_igvm(data, platform: str, *, vcpus: int = 1, ram: int = DEFAULT_RAM, profile=None,
             cbit: int = 51, reduced_phys_bits: int = 1, serial_port: int = 0x3F8,
             debug_exit_port: int = 0x501, limits=None, policy: int | None = None,
             hypervisor: dict | None = None):
    """Run vCPU 0 of the IGVM file ``data`` (bytes) as ``platform``;
    returns a :class:`harness.ghcb.machine.RunResult`.  Files QEMU refuses
    on that platform raise HarnessError with QEMU's reason.  ``hypervisor``
    overrides fields of :class:`harness.ghcb.hypervisor.HostConfig` (tests
    of how the guest copes with another hypervisor)."""
    from harness.ghcb.hypervisor import HostConfig
    from harness.ghcb.machine import Limits, Machine
    from harness.igvm.parser import parse
    from harness.measure.kvm_vmsa import VmType
    from harness.measure.launch import predict
    from harness.measure.pages import plan_launch

    if platform not in PLATFORMS:
        raise HarnessError(f"the GHCB model runs {' and '.join(PLATFORMS)} guests, not {platform!r}")
    if not 0 < cbit < 64 or not 0 <= reduced_phys_bits < 64:
        raise HarnessError(f"C-bit {cbit} / reduced-phys-bits {reduced_phys_bits} out of range")
    f = parse(data)
    profile = profile or default_host_profile()
    launch = plan_launch(f, platform, vcpus)
    pred = predict(f, platform, vcpus, profile, policy)
    snp = platform == "sev-snp"
    legacy = not snp and profile.vm_type is VmType.LEGACY
    # KVM answers GHCB version 1 at most for VMs of the legacy KVM_SEV_ES_INIT
    # (arch/x86/kvm/svm/sev.c sev_guest_init), 2 otherwise.
    fields = dict(snp=snp, cbit=cbit, reduced_phys_bits=reduced_phys_bits,
                  ghcb_max=1 if legacy else 2, cpu_signature=profile.cpu_sig,
                  serial_port=serial_port, debug_exit_port=debug_exit_port)
    fields.update(hypervisor or {})
    host = HostConfig(**fields)
    machine = Machine(launch, pred.vmsas[0], host, ram, limits or Limits(), platform)
    return machine.run()


def run_file(path, platform: str, **kw):
    from harness.igvm.parser import read
    return run_igvm(bytes(read(path)), platform, **kw)


__all__ = ["PLATFORMS", "DEFAULT_CPU", "default_host_profile", "run_igvm", "run_file"]

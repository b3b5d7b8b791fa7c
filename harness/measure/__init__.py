"""Measurement layer: the launch digests QEMU + KVM make the AMD firmware compute.

Public API:

- ``launch.predict(igvm_file, platform, vcpus, host=HostProfile(), policy=None) -> Prediction``
  (``platform``: "sev", "sev-es", "sev-snp"); refuses files QEMU would refuse
  on that platform with HarnessError (exit status 1).
- ``pages.plan_launch``: the ordered launch updates QEMU 10.2 issues for a file.
- ``kvm_vmsa``: the measured VMSA model (``HostProfile``, ``VmType``,
  ``KERNEL_PROFILES``, ``reset_vmsa``, ``context_vmsa``, ``diff_vmsa``).
- ``measure_sev`` (``SevDigest``, ``launch_measure_mac``, ``LaunchMeasurement``),
  ``measure_snp`` (``SnpLaunchDigest``, ``SnpPageType``).
- ``certs`` (SEV certificates, GODH), ``session`` (``LaunchSession``, KDF),
  ``idblock`` (SNP ID block / ID auth, ``add_to_igvm``).
- ``verify`` (QMP flows for SEV/SEV-ES and SNP), ``triage`` (mismatch report).
- ``commands``: ``igvm-harness measure FILE --platform P --vcpus N ...``.
"""

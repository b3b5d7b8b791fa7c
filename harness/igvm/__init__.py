"""IGVM format layer (pure Python: no QEMU, no pytest).

Public API (other layers code against these names):

- ``harness.igvm.defs``: every constant and packed layout of the IGVM
  specification (``HeaderType``, ``PlatformType``, ``PageDataType``,
  ``PageDataFlags``, ``MemoryMapEntryType``, ``Architecture``, ``Section``,
  ``IGVM_MAGIC``, ``PAGE_SIZE_4K``, ``PAGE_SIZE_2M``, ``KVM_VMSA_GPA``,
  ``OPTIONAL_BIT``, ``HEADER_LAYOUTS``).
- ``harness.igvm.model``: one dataclass per header type (``SupportedPlatform``,
  ``GuestPolicy``, ``PageData``, ``ParameterArea``, ``ParameterInsert``,
  ``VpContext``, ``RequiredMemory``, ``VpCountParameter``, ``MemoryMap``,
  ``EnvironmentInfo``, ``SnpIdBlock``, ..., ``RawHeader``) and ``IgvmFile``
  (``revision``, ``architecture``, ``page_size``, ``platforms``,
  ``initializations``, ``directives``; ``platform(t)``, ``mask_for(t)``,
  ``directives_for(mask)``, ``page_data()``, ``vp_contexts()``).
- ``harness.igvm.builder``: ``IgvmBuilder`` (``platform``, ``page``, ``pages``,
  ``zero_pages``, ``parameter_area``, ``vp_count``, ``memory_map``,
  ``environment_info``, ``parameter``, ``parameter_insert``, ``vp_context``,
  ``required_memory``, ``guest_policy``, ``snp_id_block``, ``error_range``,
  ``add``, ``raw_header``, ``build``, ``model``, ``write``) and
  ``serialize(IgvmFile) -> bytes``.
"""

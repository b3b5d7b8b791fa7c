"""IGVM format layer (pure Python: no QEMU, no pytest).

The reference is the ``igvm_defs`` crate of microsoft/igvm (the
specification in code) and its parser ``igvm/src/lib.rs``
(``IgvmFile::new_from_binary``), which QEMU uses through the igvm C library.

Public API (other layers code against these names):

- ``defs``: every constant and packed layout: ``HeaderType`` (0x1,
  0x101-0x106, 0x301-0x313), ``PlatformType``, ``PageDataType``,
  ``PageDataFlags``, ``RequiredMemoryFlags``, ``MemoryMapEntryType``,
  ``EnvironmentInfo``, ``Architecture``, ``Section``, ``IGVM_MAGIC``,
  ``PAGE_SIZE_4K``, ``PAGE_SIZE_2M``, ``KVM_VMSA_GPA``, ``OPTIONAL_BIT``,
  ``HEADER_LAYOUTS`` (type -> ``Layout``: struct + field names).
- ``model``: one class per header type (``harness.record.Record``:
  dataclass-like, cheap to import) (``SupportedPlatform``,
  ``GuestPolicy``, ``RelocatableRegion``, ``PageTableRelocation``,
  ``CorimDocument``, ``CorimSignature``, ``CcaPolicy``, ``ParameterArea``,
  ``PageData``, ``ParameterInsert``, ``VpContext``, ``RequiredMemory``, the
  ``Parameter`` family ``VpCountParameter``/``Srat``/``Madt``/``MmioRanges``/
  ``MemoryMap``/``CommandLine``/``Slit``/``Pptt``/``DeviceTree``/
  ``EnvironmentInfo``, ``SnpIdBlock``, ``ErrorRange``, ``VbsMeasurement``;
  unknown types as ``RawHeader``) and ``IgvmFile`` (``revision``,
  ``architecture``, ``page_size``, ``platforms``, ``initializations``,
  ``directives``; ``headers()``, ``header_count()``, ``platform(t)``,
  ``mask_for(t)``, ``directives_for(mask)`` / ``initializations_for(mask)`` /
  ``iter_page_data()`` (iterators), ``page_data()``, ``vp_contexts()``,
  ``materialize()``; ``runs(seq)``).  A parsed file's sections are
  ``lazy.LazyHeaders`` (read-only, 4 bytes per header, each header built on
  access): loop over them, ``materialize()`` before editing.  File data is ``bytes`` or a zero-copy ``memoryview``;
  ``None`` means no file data (a zero page for page data).
- ``builder``: ``IgvmBuilder(revision=1)`` with ``platform()`` (returns the
  mask), ``page()``, ``pages()``, ``zero_pages()``, ``parameter_area()``
  (returns the index), ``vp_count()``, ``memory_map()``,
  ``environment_info()``, ``parameter()``, ``parameter_insert()``,
  ``vp_context()``, ``required_memory()``, ``guest_policy()``,
  ``snp_id_block()``, ``error_range()``, ``add(header)``, ``raw_header()``,
  ``build() -> bytes``, ``model() -> IgvmFile``, ``write(path)``; and
  ``serialize(IgvmFile) -> bytes`` (byte-identical round trip).
- ``parser``: ``parse(data, check=True, source=None) -> IgvmFile`` (raises
  ``IgvmFormatError``), ``load(path)`` (memory-mapped), ``read(path,
  require_igvm=False)`` (size bound and magic checked before mapping; it
  lives in ``files``, which imports no model),
  ``scan(data, platform=None, strict=False, limit=MAX_VIOLATIONS,
  consumers=()) -> (IgvmFile | None, Violations)``.
- ``walk``: the one streaming walk of a file's headers.  A ``Consumer``
  (hooks ``platforms_done(walk)``, ``header(walk, h, at)``, ``pages(walk,
  run)``, ``end(walk)``) is handed to ``scan(..., consumers=[...])`` (one
  pass, validated) or to ``replay(f, [...])`` (a parsed or built file);
  page data arrives as ``PageRun`` s (one event per run of pages, its file
  data one buffer), every other header decoded once, with ``HeaderAt``
  (index, position, section, offset, count).  Consumers of the harness:
  ``qemu_lint.Linter``, ``describe.Description``,
  ``harness.expect.constructs.Constructs``, ``harness.measure.pages.Planner``
  (and ``launch.LaunchDigest``), ``harness.certify.survey.Survey``.
- ``validate``: ``validate(data, platform=None, strict=False, limit=MAX_VIOLATIONS)
  -> Violations`` (a list of the first ``limit``; ``.not_shown`` counts the
  rest, ``.total``, ``.truncated``, ``.first_not_shown``, ``.summary()``),
  ``is_valid()``.
- ``limits``: every bound on what a file may ask for, with its source
  (``GPA_WIDTH_BITS``, ``MAX_VCPUS``, ``MAX_PARAMETER_AREA_BYTES``,
  ``MAX_FILE_SIZE``, ``MAX_VIOLATIONS``) and ``refusal()`` (one line).  ``rules``: ``RULES`` (id -> Rule with summary and source),
  ``REFERENCE_RULES``, ``STRICT_RULES``, ``Violation(rule, message,
  header_index, offset)``, ``IgvmFormatError`` (HarnessError, exit 1).
- ``mutate``: ``MUTATORS`` (rule id -> bytes -> bytes, one per rule),
  ``EXTRA_MUTATORS``, ``compose(*ids)``.
- ``qemu_lint``: ``lint(model_or_bytes, platform=None) -> [LintFinding]``
  (rule, message, source citation, severity, platform, header_index),
  ``Linter`` (its consumer: every platform in one pass; ``findings(want)``),
  ``platform_type(name)``.
- ``vmsa``: ``SevEsVmsa`` (4 KiB VMSA, named fields, ``from_bytes`` /
  ``to_bytes`` / ``qemu_unsupported_fields``), ``NativeVpContextX64``,
  ``Segment``.
- ``describe``: ``describe(model, walked=None)``, ``Description`` (its
  consumer), ``page_ranges(model)``, ``render_text()``,
  ``decode_vp_context(model, header)``.
- ``commands``: ``igvm-harness inspect FILE [--json]`` and
  ``igvm-harness validate FILE [--platform P] [--strict] [--qemu] [--json]``.
"""

"""The ordered stream of launch updates QEMU feeds to the SEV firmware for an IGVM file.

This re-states, as data, what QEMU 10.2 does in backends/igvm.c
(qigvm_process_file) and target/i386/sev.c (cgs_set_guest_state):

- Directives are processed in file order for the chosen platform's
  compatibility mask.  Consecutive PAGE_DATA directives are coalesced into a
  *region* (qigvm_process_mem_page) while they have equal flags, data type and
  compatibility mask, all-or-none file data, contiguous GPAs and consecutive
  header indices; a region is handed to set_guest_state only when a page that
  does not continue it arrives, or at the very end.  **Other directives do
  not flush the pending region**: a PARAMETER_INSERT is applied immediately,
  i.e. *before* the run of pages that precedes it in the file (the SNP queue
  then holds the insert first).
- Region type (qigvm_type_to_cgs_type): NORMAL, or ZERO when no page of the run
  has file data, or UNMEASURED; SECRETS; CPUID for CPUID_DATA and CPUID_XF.
  The SHARED flag is ignored: shared pages are measured like private ones.
- Page data shorter than the page is zero-padded (qigvm_process_mem_region).
- PARAMETER_INSERT becomes CGS_PAGE_TYPE_UNMEASURED for the whole area
  (qigvm_directive_parameter_insert).
- VP_CONTEXT goes to sev_set_cpu_context; REQUIRED_MEMORY only converts memory.
- Any other header type stops QEMU ("Unknown header type encountered").

The platform then decides what is measured (cgs_set_guest_state): SEV/SEV-ES
issue KVM_SEV_LAUNCH_UPDATE_DATA for NORMAL and ZERO regions at once and do
nothing for UNMEASURED; SNP queues every update (snp_launch_update_data) and
submits the queue at launch finish, ZERO regions as NORMAL pages of zeros.
"""

from __future__ import annotations

from enum import Enum

from harness.errors import HarnessError
from harness.igvm import model as m
from harness.igvm.defs import HeaderType, PageDataFlags, PageDataType, PlatformType, KVM_VMSA_GPA
from harness.igvm.limits import (GPA_LIMIT, GPA_WIDTH_BITS, MAX_PARAMETER_AREA_BYTES, MAX_VCPUS,
                                 refusal)
from harness.measure import kvm_vmsa
from harness.record import Factory, Record

PAGE_4K = 0x1000
PAGE_2M = 0x200000


class Kind(str, Enum):
    """ConfidentialGuestPageType (include/system/confidential-guest-support.h)."""

    NORMAL = "normal"
    ZERO = "zero"
    UNMEASURED = "unmeasured"
    SECRETS = "secrets"
    CPUID = "cpuid"


#: Platforms the measurement layer predicts, and their names on the command line.
PLATFORM_NAMES = {"sev": PlatformType.SEV, "sev-es": PlatformType.SEV_ES,
                  "sev-snp": PlatformType.SEV_SNP}

#: Directive types QEMU has a handler for (backends/igvm.c: handlers[]).
QEMU_DIRECTIVES = frozenset({
    HeaderType.PAGE_DATA, HeaderType.VP_CONTEXT, HeaderType.PARAMETER_AREA,
    HeaderType.PARAMETER_INSERT, HeaderType.MEMORY_MAP, HeaderType.VP_COUNT_PARAMETER,
    HeaderType.ENVIRONMENT_INFO_PARAMETER, HeaderType.REQUIRED_MEMORY, HeaderType.SNP_ID_BLOCK})
QEMU_INITIALIZATIONS = frozenset({HeaderType.GUEST_POLICY})


class Update(Record):
    """One set_guest_state call for guest memory."""

    kind: Kind
    gpa: int
    page_size: int
    pages: list  # per page: bytes/memoryview (<= page_size, zero-padded) or None
    first_index: int  # directive index of the first page (QEMU's region identifier)
    source: str = "page_data"  # or "parameter_insert"

    @property
    def length(self) -> int:
        return self.page_size * len(self.pages)


class LaunchPlan(Record):
    """Everything about an IGVM file that the launch measurement depends on."""

    platform: PlatformType
    mask: int
    updates: list[Update] = Factory(list)
    vp_contexts: dict[int, bytes] = Factory(dict)
    snp_policy: int | None = None
    id_block: m.SnpIdBlock | None = None
    notes: list[str] = Factory(list)


def platform_type(name: str | PlatformType) -> PlatformType:
    if isinstance(name, PlatformType):
        return name
    try:
        return PLATFORM_NAMES[name.lower()]
    except KeyError:
        raise HarnessError(f"platform {name!r} has no launch measurement; choose one of "
                           + ", ".join(PLATFORM_NAMES)) from None


def _page_size(page: m.PageData) -> int:
    return PAGE_2M if page.flags & PageDataFlags.IS_2MB_PAGE else PAGE_4K


def _region_kind(page: m.PageData, zero: bool) -> Kind:
    t = page.data_type
    if t == PageDataType.NORMAL:
        if page.flags & PageDataFlags.UNMEASURED:
            return Kind.UNMEASURED
        return Kind.ZERO if zero else Kind.NORMAL
    if t == PageDataType.SECRETS:
        return Kind.SECRETS
    if t in (PageDataType.CPUID_DATA, PageDataType.CPUID_XF):
        return Kind.CPUID
    raise HarnessError(f"page data type {t:#x} has no QEMU page type (backends/igvm.c: "
                       "qigvm_type_to_cgs_type); QEMU refuses the file", 1)


def _type_name(h) -> str:
    try:
        return HeaderType(h.header_type).name
    except ValueError:
        return f"0x{h.header_type:X}"


def plan_launch(f: m.IgvmFile, platform: str | PlatformType, vcpus: int) -> LaunchPlan:
    """Replay qigvm_process_file for ``platform`` and return the launch plan.

    Raises HarnessError (exit status 1) for files QEMU would refuse on that
    platform, with QEMU's reason.
    """
    ptype = platform_type(platform)
    if not 1 <= vcpus <= MAX_VCPUS:
        raise HarnessError(f"--vcpus must be 1 to {MAX_VCPUS} (QEMU's q35 limit)")
    sp = f.platform(ptype)
    if sp is None or not sp.compatibility_mask:
        have = ", ".join(getattr(p, "name", str(p)) for p in f.platform_types()) or "none"
        raise HarnessError(f"the file has no {ptype.name} platform header (it declares: {have}); "
                           "QEMU would not select this platform (backends/igvm.c: "
                           "qigvm_supported_platform_compat_mask)", 1)
    mask = sp.compatibility_mask
    plan = LaunchPlan(ptype, mask)
    snp = ptype == PlatformType.SEV_SNP
    areas: list[tuple[int, int]] = []  # (index, size) in declaration order
    # The pending region (qigvm_process_mem_page's region_* fields), kept flat for speed:
    run: list = []          # page data (None for a zero page)
    run_first: m.PageData | None = None
    run_start = run_last = -1
    run_next_gpa = run_flags = run_type = run_mask = run_size = 0
    run_has = False

    def flush() -> None:
        nonlocal run, run_first
        if run_first is None:
            return
        kind = _region_kind(run_first, not run_has)
        if kind in (Kind.SECRETS, Kind.CPUID) and not snp:
            raise HarnessError(f"directive {run_start}: a {kind.value.upper()} page cannot run on "
                               f"{ptype.name}: QEMU refuses it (target/i386/sev.c: cgs_set_guest_state, "
                               "'attempt to configure ... page, but SEV-SNP is not supported')", 1)
        plan.updates.append(Update(kind, run_first.gpa, run_size, run, run_start))
        run, run_first = [], None

    page_type = m.PageData
    for index, d in enumerate(f.directives):
        if type(d) is page_type:  # hot path: one test per attribute qigvm_page_attrs_equal compares
            if not d.compatibility_mask & mask:
                continue
            data = d.data
            has = data is not None and len(data) != 0
            if run_first is not None and not (
                    index == run_last + 1 and d.gpa == run_next_gpa and has == run_has
                    and d.flags == run_flags and d.data_type == run_type
                    and d.compatibility_mask == run_mask):
                flush()
            if run_first is None:
                run_first, run_start = d, index
                run_flags, run_type, run_mask, run_has = d.flags, d.data_type, d.compatibility_mask, has
                run_size = _page_size(d)
                run_next_gpa = d.gpa
            if d.gpa + run_size > GPA_LIMIT:
                raise _beyond_gpa_width(index, "PAGE_DATA", d.gpa, run_size)
            if has and len(data) > run_size:
                raise HarnessError(f"directive {index}: page data of {len(data)} bytes exceeds the page "
                                   f"size {run_size:#x}; QEMU refuses it (qigvm_process_mem_region)", 1)
            run.append(data if has else None)
            run_last = index
            run_next_gpa += run_size
            continue
        t = d.header_type
        if t not in QEMU_DIRECTIVES:
            raise HarnessError(f"directive {index} ({_type_name(d)}) has no handler in QEMU; it stops "
                               "with 'Unknown header type encountered' (backends/igvm.c: qigvm_handler)", 1)
        if isinstance(d, m.PageData):  # a subclass: treat like the hot path would
            raise HarnessError(f"directive {index}: unexpected PageData subclass {type(d).__name__}")
        elif isinstance(d, m.ParameterArea):
            if d.number_of_bytes > MAX_PARAMETER_AREA_BYTES:
                # QEMU would g_malloc0 this many bytes on the host (qigvm_directive_parameter_area)
                raise refusal("directive", index, f"PARAMETER_AREA {d.parameter_area_index} declares "
                              f"{d.number_of_bytes:#x} bytes", f"{MAX_PARAMETER_AREA_BYTES:#x} bytes "
                              "(the largest page a directive can describe; QEMU allocates the area "
                              "on the host)")
            areas.append((d.parameter_area_index, d.number_of_bytes))
        elif isinstance(d, m.ParameterInsert):
            if not d.compatibility_mask & mask:
                continue
            for idx, size in areas:
                if idx == d.parameter_area_index:
                    if snp and size % PAGE_4K:
                        raise HarnessError(f"directive {index}: parameter area {idx} is {size} bytes, not "
                                           "a whole number of pages; SNP_LAUNCH_UPDATE cannot take it", 1)
                    if d.gpa + size > GPA_LIMIT:
                        raise _beyond_gpa_width(index, "PARAMETER_INSERT", d.gpa, size)
                    npages = max(1, -(-size // PAGE_4K))
                    plan.updates.append(Update(Kind.UNMEASURED, d.gpa, PAGE_4K, [None] * npages,
                                               index, "parameter_insert"))
        elif isinstance(d, m.VpContext):
            if not d.compatibility_mask & mask:
                continue
            _check_vp_context(index, d, ptype, vcpus)
            plan.vp_contexts[d.vp_index] = bytes(d.data or b"")[:kvm_vmsa.VMSA_SIZE]
        elif isinstance(d, m.SnpIdBlock):
            if not d.compatibility_mask & mask:
                continue
            if plan.id_block is not None:
                raise HarnessError(f"directive {index}: a second SNP ID block; QEMU refuses it "
                                   "(qigvm_directive_snp_id_block: 'Multiple ID blocks')", 1)
            plan.id_block = d
        elif isinstance(d, m.RequiredMemory):
            if d.compatibility_mask & mask and d.gpa + d.number_of_bytes > GPA_LIMIT:
                raise _beyond_gpa_width(index, "REQUIRED_MEMORY", d.gpa, d.number_of_bytes)
            if d.compatibility_mask & mask:
                plan.notes.append(f"directive {index}: REQUIRED_MEMORY at {d.gpa:#x} is not measured")
        # VP_COUNT, MEMORY_MAP, ENVIRONMENT_INFO fill parameter areas: unmeasured.
    for index, h in enumerate(f.initializations):
        t = h.header_type
        if t not in QEMU_INITIALIZATIONS:
            raise HarnessError(f"initialization header {index} ({_type_name(h)}) has no handler in QEMU; "
                               "it stops with 'Unknown header type encountered' (backends/igvm.c)", 1)
        if isinstance(h, m.GuestPolicy) and h.compatibility_mask & mask:
            plan.snp_policy = h.policy
    flush()
    return plan


def _beyond_gpa_width(index: int, what: str, gpa: int, size: int) -> HarnessError:
    return refusal("directive", index, f"{what} [{gpa:#x}, {gpa + size:#x}) ends above the "
                   "guest physical address space", f"{GPA_LIMIT:#x} ({GPA_WIDTH_BITS}-bit guest "
                   "physical addresses, AMD APM vol. 2)")


def _check_vp_context(index: int, d: m.VpContext, ptype: PlatformType, vcpus: int) -> None:
    """The refusals of cgs_set_guest_state / check_vmsa_supported / sev_set_cpu_context."""
    if ptype == PlatformType.SEV:
        raise HarnessError(f"directive {index}: a VP context cannot run on SEV: QEMU refuses it "
                           "(target/i386/sev.c: cgs_set_guest_state, 'attempt to configure initial "
                           "VMSA, but SEV-ES is not supported'); use an SEV-ES or SEV-SNP platform", 1)
    if d.gpa != KVM_VMSA_GPA:
        raise HarnessError(f"directive {index}: the VMSA GPA is {d.gpa:#x} but KVM always places the VMSA "
                           f"at {KVM_VMSA_GPA:#x}; QEMU refuses it (check_vmsa_supported)", 1)
    data = bytes(d.data or b"")
    if len(data) < kvm_vmsa.QEMU_SAVE_AREA_SIZE:
        raise HarnessError(f"directive {index}: VP context of {len(data)} bytes is shorter than QEMU's "
                           f"sev_es_save_area ({kvm_vmsa.QEMU_SAVE_AREA_SIZE:#x} bytes); QEMU refuses it "
                           "(sev_set_cpu_context: 'Invalid context provided')", 1)
    bad = kvm_vmsa.unsupported_fields(data)
    if bad:
        raise HarnessError(f"directive {index}: the VMSA sets fields QEMU does not pass to KVM ("
                           + ", ".join(bad[:6]) + "); QEMU refuses it (check_vmsa_supported)", 1)
    if d.vp_index >= vcpus:
        raise HarnessError(f"directive {index}: VP context for vCPU {d.vp_index} but only {vcpus} vCPU(s); "
                           "QEMU refuses it (sev_set_cpu_context: 'out of bounds CPU index')", 1)
    sev_features = kvm_vmsa.read_fields(data)[1]["sev_features"]
    snp_bit = bool(sev_features & kvm_vmsa.SEV_FEAT_SNP_ACTIVE)
    if (ptype == PlatformType.SEV_SNP) != snp_bit:
        state = "missing from" if ptype == PlatformType.SEV_SNP else "set in"
        raise HarnessError(f"directive {index}: SNP_ACTIVE is {state} the VMSA sev_features "
                           f"({sev_features:#x}) for {ptype.name}; QEMU refuses it (check_sev_features)", 1)


def measured_bytes(plan: LaunchPlan) -> int:
    return sum(u.length for u in plan.updates if u.kind in (Kind.NORMAL, Kind.ZERO))


__all__ = ("Kind", "LaunchPlan", "PLATFORM_NAMES", "Update", "measured_bytes",
           "plan_launch", "platform_type")

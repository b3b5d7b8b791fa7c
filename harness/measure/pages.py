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

The replay is a consumer of the walk (:class:`Planner`, harness.igvm.walk):
it sees the file's page data as runs, merges them into QEMU's regions and
hands each :class:`Update` to a sink the moment QEMU's order is known (a
digest hashes it then; :func:`plan_launch` keeps them).  A region refers to
its file data by offset and page count (:class:`Segments`): a run of pages
is hashed in one call, and no object is made per page.
"""

from __future__ import annotations

import array
from enum import Enum

from harness.errors import HarnessError
from harness.igvm import model as m
from harness.igvm.defs import HeaderType, PageDataFlags, PageDataType, PlatformType, KVM_VMSA_GPA
from harness.igvm.limits import (GPA_LIMIT, GPA_WIDTH_BITS, MAX_PARAMETER_AREA_BYTES, MAX_VCPUS,
                                 refusal)
from harness.igvm.walk import Consumer, PageRun, replay
from harness.measure.platforms import PLATFORM_NAMES, platform_type
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



#: Directive types QEMU has a handler for (backends/igvm.c: handlers[]).
QEMU_DIRECTIVES = frozenset({
    HeaderType.PAGE_DATA, HeaderType.VP_CONTEXT, HeaderType.PARAMETER_AREA,
    HeaderType.PARAMETER_INSERT, HeaderType.MEMORY_MAP, HeaderType.VP_COUNT_PARAMETER,
    HeaderType.ENVIRONMENT_INFO_PARAMETER, HeaderType.REQUIRED_MEMORY, HeaderType.SNP_ID_BLOCK})
QEMU_INITIALIZATIONS = frozenset({HeaderType.GUEST_POLICY})

_UNMEASURED_FLAG = int(PageDataFlags.UNMEASURED)
_LARGE = int(PageDataFlags.IS_2MB_PAGE)


class Segments:
    """A region's file data, a run at a time, compactly: ``(file offset,
    pages, repeat)`` in arrays (17 bytes a run) while the data is in the
    walked file, the data objects themselves otherwise (a file the builder
    made).  ``repeat``: every page of the run carries the same one page."""

    __slots__ = ("buf", "offsets", "pages", "repeats", "objects")

    def __init__(self, buf=None) -> None:
        self.buf = buf
        self.offsets = array.array("Q")
        self.pages = array.array("Q")
        self.repeats = bytearray()
        self.objects: list | None = None

    def add(self, run: PageRun) -> None:
        if run.file_offset and self.buf is not None and self.objects is None:
            self.offsets.append(run.file_offset)
            self.pages.append(run.count)
            self.repeats.append(run.repeat or run.count == 1)
            return
        if self.objects is None:  # keep the order: what the arrays hold moves over
            self.objects = list(self._from_arrays())
            del self.offsets[:], self.pages[:], self.repeats[:]
        self.objects.append((run.data, run.count, run.repeat or run.count == 1))

    def _from_arrays(self):
        buf = self.buf
        for fo, n, rep in zip(self.offsets, self.pages, self.repeats):
            yield buf[fo:fo + (PAGE_4K if rep else n * PAGE_4K)], n, bool(rep)

    def __iter__(self):
        """``(data, pages, repeat)`` per run: ``data`` covers ``pages`` 4 KiB
        pages in order, or (``repeat``) is the one page each of them carries
        (for a single page: its data, maybe short; for 2 MiB pages: the
        first 4 KiB of each, one page per entry)."""
        if self.objects is not None:
            return iter(self.objects)
        return self._from_arrays()


class Update(Record):
    """One set_guest_state call for guest memory: ``count`` pages of
    ``page_size`` from ``gpa``; ``data``: the region's file data
    (:class:`Segments`), None for pages without data (and for updates other
    than page data)."""

    kind: Kind
    gpa: int
    page_size: int
    count: int
    first_index: int  # directive index of the first page (QEMU's region identifier)
    source: str = "page_data"  # or "parameter_insert"
    data: Segments | None = None

    @property
    def length(self) -> int:
        return self.page_size * self.count

    def segments(self):
        """``(gpa, data, pages, repeat)`` per stretch of the update: ``data``
        None for zeros, else as :meth:`Segments.__iter__` gives it."""
        if self.data is None:
            yield self.gpa, None, self.count, True
            return
        gpa, size = self.gpa, self.page_size
        for data, pages, repeat in self.data:
            yield gpa, data, pages, repeat
            gpa += pages * size

    @property
    def pages(self) -> list:
        """Each page's data (None: zeros), one entry per page: for small
        updates and tests; the digests read :meth:`segments`."""
        out: list = []
        for _gpa, data, pages, repeat in self.segments():
            if data is None or repeat:
                out.extend([data] * pages)
            else:
                out.extend(data[k * PAGE_4K:(k + 1) * PAGE_4K] for k in range(pages))
        return out

    def units(self):
        """``(gpa, 4 KiB of data or None)`` for every 4 KiB unit, zero-padded
        data as QEMU pads it (2 MiB pages split)."""
        per = self.page_size // PAGE_4K
        gpa = self.gpa
        for page in self.pages:
            for j in range(per):
                chunk = None if page is None else bytes(page[j * PAGE_4K:(j + 1) * PAGE_4K])
                yield gpa, chunk.ljust(PAGE_4K, b"\0") if chunk else None
                gpa += PAGE_4K


class LaunchPlan(Record):
    """Everything about an IGVM file that the launch measurement depends on."""

    platform: PlatformType
    mask: int
    updates: list[Update] = Factory(list)
    vp_contexts: dict[int, bytes] = Factory(dict)
    snp_policy: int | None = None
    id_block: m.SnpIdBlock | None = None
    notes: list[str] = Factory(list)


def _region_kind(data_type: int, flags: int, zero: bool) -> Kind:
    if data_type == PageDataType.NORMAL:
        if flags & _UNMEASURED_FLAG:
            return Kind.UNMEASURED
        return Kind.ZERO if zero else Kind.NORMAL
    if data_type == PageDataType.SECRETS:
        return Kind.SECRETS
    if data_type in (PageDataType.CPUID_DATA, PageDataType.CPUID_XF):
        return Kind.CPUID
    raise HarnessError(f"page data type {data_type:#x} has no QEMU page type (backends/igvm.c: "
                       "qigvm_type_to_cgs_type); QEMU refuses the file", 1)


def _type_name(h) -> str:
    try:
        return HeaderType(h.header_type).name
    except ValueError:
        return f"0x{h.header_type:X}"


def _platform_names(platforms) -> str:
    names = []
    for p in platforms:
        try:
            names.append(PlatformType(p.platform_type).name)
        except ValueError:
            names.append(str(p.platform_type))
    return ", ".join(names) or "none"


class _Stopped(Exception):
    """The planner met a refusal: it records it and takes no more events."""


class Planner(Consumer):
    """Replays qigvm_process_file for one platform as the walk goes by.

    ``sink(update)`` gets every :class:`Update` in QEMU's order.  A refusal
    QEMU would make is kept in :attr:`error` (a HarnessError, exit status
    1) and ends the planning; errors are raised in the order the
    directive-first replay of QEMU meets them (directives, then the
    initialization headers, then the last region), whatever order the walk
    saw them in.  After the walk: :attr:`vp_contexts` (only those the file
    has, as bytes), :attr:`snp_policy`, :attr:`id_block`, :attr:`notes`,
    :attr:`updates` (how many) and :attr:`measured` (bytes of NORMAL and
    ZERO updates)."""

    def __init__(self, platform, vcpus: int, sink) -> None:
        self.ptype = platform_type(platform)
        self.vcpus = vcpus
        self.sink = sink
        self.snp = self.ptype == PlatformType.SEV_SNP
        self.mask = 0
        self.error: HarnessError | None = None
        self.init_error: HarnessError | None = None
        self.done = False
        self.updates = 0
        self.measured = 0
        self.areas: list[tuple[int, int]] = []  # (index, size) in declaration order
        self.vp_contexts: dict[int, bytes] = {}
        self.snp_policy: int | None = None
        self.id_block = None
        self.notes: list[str] = []
        self.region: tuple | None = None  # (kind inputs..., first page, segments)
        self.buf = None
        if not 1 <= vcpus <= MAX_VCPUS:
            self.error = HarnessError(f"--vcpus must be 1 to {MAX_VCPUS} (QEMU's q35 limit)")
            self.done = True

    # ---------------------------------------------------------------- errors
    def _stop(self, exc: HarnessError) -> None:
        if self.error is None:
            self.error = exc
        self.done = True
        raise _Stopped

    def failed(self) -> HarnessError | None:
        """The refusal to raise, if any, in QEMU's order (after the walk)."""
        return self.error or self.init_error or self.walk_error

    # ------------------------------------------------------------- the walk
    def platforms_done(self, walk) -> None:
        if self.done:
            return
        self.buf = walk.buffer
        self.mask = walk.mask_for(self.ptype)
        if not self.mask:
            self.error = HarnessError(
                f"the file has no {self.ptype.name} platform header (it declares: "
                f"{_platform_names(walk.platforms)}); QEMU would not select this platform "
                "(backends/igvm.c: qigvm_supported_platform_compat_mask)", 1)
            self.done = True

    def pages(self, walk, run: PageRun) -> None:
        if self.done or not run.mask & self.mask:
            return
        try:
            self._pages(run)
        except _Stopped:
            pass
        except HarnessError as exc:  # a refusal: kept, never raised into the walk
            self._refused(exc)

    def header(self, walk, h, at) -> None:
        if self.done:
            return
        try:
            if at.section == 2:
                self._directive(h, at.position, at.count)
            elif at.section == 1:
                self._initialization(h, at.position)
        except _Stopped:
            pass
        except HarnessError as exc:
            self._refused(exc)

    def end(self, walk) -> None:
        if self.done:
            return
        try:
            if self.init_error is not None:
                self._stop(self.init_error)
            self._flush()
        except _Stopped:
            pass
        except HarnessError as exc:
            self._refused(exc)
        self.done = True

    def _refused(self, exc: HarnessError) -> None:
        try:
            self._stop(exc)
        except _Stopped:
            pass

    # ------------------------------------------------------------ page data
    def _pages(self, run: PageRun) -> None:
        size = run.page_size
        has = run.data is not None
        r = self.region
        # qigvm_process_mem_page: the region goes on while the directive
        # index is the next one and the page attributes match
        if r is not None and not (
                run.position == r[0] and run.gpa == r[1] and has == r[2] and run.flags == r[3]
                and run.data_type == r[4] and run.mask == r[5] and size == r[6]):
            self._flush()
            r = None
        if r is None:
            segments = Segments(self.buf) if has else None
            # next position, next gpa, has data, flags, type, mask, page size,
            # first gpa, first position, pages, segments
            r = [run.position, run.gpa, has, run.flags, run.data_type, run.mask, size,
                 run.gpa, run.position, 0, segments]
            self.region = r
        if run.gpa + run.count * size > GPA_LIMIT:
            # the first page that ends above the limit (QEMU checks each)
            k = max(0, (GPA_LIMIT - size - run.gpa) // size + 1)
            self._stop(_beyond_gpa_width(run.position + k, "PAGE_DATA", run.gpa + k * size, size))
        if has and run.count == 1 and len(run.data) > size:
            self._stop(HarnessError(f"directive {run.position}: page data of {len(run.data)} "
                                    f"bytes exceeds the page size {size:#x}; QEMU refuses it "
                                    "(qigvm_process_mem_region)", 1))
        if has:
            r[10].add(run)
        r[0] = run.position + run.count
        r[1] = run.gpa + run.count * size
        r[9] += run.count

    def _flush(self) -> None:
        r = self.region
        if r is None:
            return
        self.region = None
        kind = _region_kind(r[4], r[3], not r[2])
        if kind in (Kind.SECRETS, Kind.CPUID) and not self.snp:
            self._stop(HarnessError(
                f"directive {r[8]}: a {kind.value.upper()} page cannot run on {self.ptype.name}: "
                "QEMU refuses it (target/i386/sev.c: cgs_set_guest_state, 'attempt to configure "
                "... page, but SEV-SNP is not supported')", 1))
        self._emit(Update(kind, r[7], r[6], r[9], r[8], "page_data", r[10]))

    def _emit(self, u: Update) -> None:
        self.updates += 1
        if u.kind in (Kind.NORMAL, Kind.ZERO):
            self.measured += u.length
        self.sink(u)

    # ------------------------------------------------------- other headers
    def _directive(self, d, index: int, count: int) -> None:
        t = d.header_type
        if t not in QEMU_DIRECTIVES:
            self._stop(HarnessError(
                f"directive {index} ({_type_name(d)}) has no handler in QEMU; it stops with "
                "'Unknown header type encountered' (backends/igvm.c: qigvm_handler)", 1))
        mask = self.mask
        if isinstance(d, m.ParameterArea):
            if d.number_of_bytes > MAX_PARAMETER_AREA_BYTES:
                # QEMU would g_malloc0 this many bytes on the host (qigvm_directive_parameter_area)
                self._stop(refusal("directive", index, f"PARAMETER_AREA {d.parameter_area_index} "
                                   f"declares {d.number_of_bytes:#x} bytes",
                                   f"{MAX_PARAMETER_AREA_BYTES:#x} bytes (the largest page a "
                                   "directive can describe; QEMU allocates the area on the host)"))
            self.areas.append((d.parameter_area_index, d.number_of_bytes))
        elif isinstance(d, m.ParameterInsert):
            if not d.compatibility_mask & mask:
                return
            for idx, size in self.areas:
                if idx == d.parameter_area_index:
                    if self.snp and size % PAGE_4K:
                        self._stop(HarnessError(
                            f"directive {index}: parameter area {idx} is {size} bytes, not a whole "
                            "number of pages; SNP_LAUNCH_UPDATE cannot take it", 1))
                    if d.gpa + size > GPA_LIMIT:
                        self._stop(_beyond_gpa_width(index, "PARAMETER_INSERT", d.gpa, size))
                    npages = max(1, -(-size // PAGE_4K))
                    # applied now: before the region still pending (QEMU's order)
                    self._emit(Update(Kind.UNMEASURED, d.gpa, PAGE_4K, npages, index,
                                      "parameter_insert"))
        elif isinstance(d, m.VpContext):
            if not d.compatibility_mask & mask:
                return
            _check_vp_context(index, d, self.ptype, self.vcpus, self._stop)
            self.vp_contexts[d.vp_index] = bytes(d.data or b"")[:VMSA_SIZE]
        elif isinstance(d, m.SnpIdBlock):
            if not d.compatibility_mask & mask:
                return
            if self.id_block is not None:
                self._stop(HarnessError(
                    f"directive {index}: a second SNP ID block; QEMU refuses it "
                    "(qigvm_directive_snp_id_block: 'Multiple ID blocks')", 1))
            self.id_block = d
        elif isinstance(d, m.RequiredMemory):
            if d.compatibility_mask & mask and d.gpa + d.number_of_bytes > GPA_LIMIT:
                self._stop(_beyond_gpa_width(index, "REQUIRED_MEMORY", d.gpa, d.number_of_bytes))
            if d.compatibility_mask & mask:
                self.notes.append(f"directive {index}: REQUIRED_MEMORY at {d.gpa:#x} is not "
                                  "measured")
        # VP_COUNT, MEMORY_MAP, ENVIRONMENT_INFO fill parameter areas: unmeasured.

    def _initialization(self, h, index: int) -> None:
        if h.header_type not in QEMU_INITIALIZATIONS:
            if self.init_error is None:  # raised after the directives' (QEMU's replay order)
                self.init_error = HarnessError(
                    f"initialization header {index} ({_type_name(h)}) has no handler in QEMU; it "
                    "stops with 'Unknown header type encountered' (backends/igvm.c)", 1)
            return
        if isinstance(h, m.GuestPolicy) and h.compatibility_mask & self.mask:
            self.snp_policy = h.policy


#: The VMSA bytes a VP context keeps (harness.measure.kvm_vmsa.VMSA_SIZE).
VMSA_SIZE = 0x1000
#: sizeof(struct sev_es_save_area) in QEMU (harness.measure.kvm_vmsa.QEMU_SAVE_AREA_SIZE).
QEMU_SAVE_AREA_SIZE = 0x670


def _beyond_gpa_width(index: int, what: str, gpa: int, size: int) -> HarnessError:
    return refusal("directive", index, f"{what} [{gpa:#x}, {gpa + size:#x}) ends above the "
                   "guest physical address space", f"{GPA_LIMIT:#x} ({GPA_WIDTH_BITS}-bit guest "
                   "physical addresses, AMD APM vol. 2)")


def _check_vp_context(index: int, d: m.VpContext, ptype: PlatformType, vcpus: int,
                      stop) -> None:
    """The refusals of cgs_set_guest_state / check_vmsa_supported / sev_set_cpu_context."""
    if ptype == PlatformType.SEV:
        stop(HarnessError(f"directive {index}: a VP context cannot run on SEV: QEMU refuses it "
                          "(target/i386/sev.c: cgs_set_guest_state, 'attempt to configure "
                          "initial VMSA, but SEV-ES is not supported'); use an SEV-ES or SEV-SNP "
                          "platform", 1))
    if d.gpa != KVM_VMSA_GPA:
        stop(HarnessError(f"directive {index}: the VMSA GPA is {d.gpa:#x} but KVM always places "
                          f"the VMSA at {KVM_VMSA_GPA:#x}; QEMU refuses it (check_vmsa_supported)",
                          1))
    data = bytes(d.data or b"")
    if len(data) < QEMU_SAVE_AREA_SIZE:
        stop(HarnessError(f"directive {index}: VP context of {len(data)} bytes is shorter than "
                          f"QEMU's sev_es_save_area ({QEMU_SAVE_AREA_SIZE:#x} bytes); QEMU "
                          "refuses it (sev_set_cpu_context: 'Invalid context provided')", 1))
    from harness.measure import kvm_vmsa  # the VMSA model: only for a file with a VP context

    bad = kvm_vmsa.unsupported_fields(data)
    if bad:
        stop(HarnessError(f"directive {index}: the VMSA sets fields QEMU does not pass to KVM ("
                          + ", ".join(bad[:6]) + "); QEMU refuses it (check_vmsa_supported)", 1))
    if d.vp_index >= vcpus:
        stop(HarnessError(f"directive {index}: VP context for vCPU {d.vp_index} but only {vcpus} "
                          "vCPU(s); QEMU refuses it (sev_set_cpu_context: 'out of bounds CPU "
                          "index')", 1))
    sev_features = kvm_vmsa.sev_features(data)
    snp_bit = bool(sev_features & kvm_vmsa.SEV_FEAT_SNP_ACTIVE)
    if (ptype == PlatformType.SEV_SNP) != snp_bit:
        state = "missing from" if ptype == PlatformType.SEV_SNP else "set in"
        stop(HarnessError(f"directive {index}: SNP_ACTIVE is {state} the VMSA sev_features "
                          f"({sev_features:#x}) for {ptype.name}; QEMU refuses it "
                          "(check_sev_features)", 1))


def plan_launch(f: m.IgvmFile, platform: str | PlatformType, vcpus: int) -> LaunchPlan:
    """Replay qigvm_process_file for ``platform`` and return the launch plan
    (every update kept: for explanations and tests; a digest streams them).

    Raises HarnessError (exit status 1) for files QEMU would refuse on that
    platform, with QEMU's reason.
    """
    updates: list[Update] = []
    planner = Planner(platform, vcpus, updates.append)
    if planner.error is None:
        replay(f, [planner])
    return finish(planner, updates)


def finish(planner: Planner, updates: list | None = None) -> LaunchPlan:
    """The plan a walk left in ``planner``, or its refusal raised."""
    exc = planner.failed()
    if exc is not None:
        raise exc
    return LaunchPlan(planner.ptype, planner.mask, updates if updates is not None else [],
                      planner.vp_contexts, planner.snp_policy, planner.id_block, planner.notes)


def measured_bytes(plan: LaunchPlan) -> int:
    return sum(u.length for u in plan.updates if u.kind in (Kind.NORMAL, Kind.ZERO))


__all__ = ("Kind", "LaunchPlan", "PLATFORM_NAMES", "Planner", "Segments", "Update",
           "finish", "measured_bytes", "plan_launch", "platform_type")

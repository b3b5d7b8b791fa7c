"""Guest memory as an encrypted guest sees it: a private and a shared view.

Under SEV-ES a page's bytes read through a C-bit mapping (private) are the
decryption of what is in DRAM, through a mapping without it (shared) the raw
DRAM bytes; under SEV-SNP private and shared memory are different pages
(QEMU backs private memory with guest_memfd).  The model keeps the two views
in two unicorn mappings: a byte written through one view is not seen
through the other, which is what makes a GHCB written through an encrypted
mapping unreadable for the hypervisor.  (On hardware the other view holds
ciphertext, here it holds what was last written through that view -- the
outcome class, "not the bytes the writer meant", is the same.)

SNP adds the RMP: every RAM page is private or shared, and private pages
must be validated (PVALIDATE) before the guest uses them; pages the launch
put in (SNP_LAUNCH_UPDATE) start private and validated, all other RAM
private and not validated (APM "Reverse Map Table", "Page Validation").

Layout comes from the file's launch plan (harness.measure.pages), i.e. from
the IGVM page directives QEMU processes for the chosen platform, plus the
RAM of ``-m``.  Every address is checked against the model's bounds first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.errors import HarnessError
from harness.measure.pages import Kind, LaunchPlan

PAGE = 0x1000
#: Guest-physical addresses the model maps must stay below this: the shared
#: view lives at SHARED_BASE + GPA and the model's scratch page above it.
GPA_MODEL_LIMIT = 1 << 48
SHARED_BASE = 1 << 48
SCRATCH_BASE = 1 << 50
SCRATCH_SIZE = 0x20000
#: RAM the model maps (-m): 64 KiB to 4 GiB, the sizes the harness runs.
MIN_RAM, MAX_RAM = 0x10000, 4 << 30
#: Pages outside RAM that a file may place (QEMU backs each with new RAM,
#: backends/igvm.c qigvm_prepare_memory); bounded so a hostile file cannot
#: make the model map gigabytes.
MAX_EXTRA_BYTES = 256 << 20


class ModelError(HarnessError):
    """The file or the guest needs something the model does not cover."""


@dataclass
class Region:
    gpa: int
    size: int
    why: str


@dataclass
class GuestMemory:
    """RAM regions, per-page view bookkeeping and (SNP) the RMP."""

    ram_size: int
    snp: bool
    regions: list[Region] = field(default_factory=list)
    #: SNP: pages currently shared in the RMP (all others private).
    rmp_shared: set[int] = field(default_factory=set)
    #: SNP: private pages that are validated.
    validated: set[int] = field(default_factory=set)
    #: SEV/SEV-ES: pages whose DRAM bytes the hypervisor wrote in plaintext
    #: (QEMU writes UNMEASURED pages without LAUNCH_UPDATE_DATA).
    plaintext: set[int] = field(default_factory=set)
    #: view ('private'/'shared') through which each page was last mapped writable.
    last_write_view: dict[int, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def contains(self, gpa: int) -> bool:
        if gpa < self.ram_size:
            return True
        return any(r.gpa <= gpa < r.gpa + r.size for r in self.regions[1:])

    # ------------------------------------------------------------- build
    @classmethod
    def plan(cls, launch: LaunchPlan, ram_size: int, snp: bool) -> "GuestMemory":
        if not MIN_RAM <= ram_size <= MAX_RAM or ram_size % PAGE:
            raise ModelError(f"RAM size {ram_size:#x} outside the model's range "
                             f"({MIN_RAM:#x}..{MAX_RAM:#x}, whole pages)")
        mem = cls(ram_size, snp, [Region(0, ram_size, "RAM (-m)")])
        extra = 0
        for u in launch.updates:
            end = u.gpa + u.length
            if end > GPA_MODEL_LIMIT:
                raise ModelError(f"the file places pages at {u.gpa:#x}, above the model's "
                                 f"{GPA_MODEL_LIMIT:#x} guest-physical limit")
            start = u.gpa
            while start < end:
                if start < ram_size:
                    start = ram_size if end > ram_size else end
                    continue
                r = next((r for r in mem.regions if r.gpa <= start < r.gpa + r.size), None)
                if r is not None:
                    start = r.gpa + r.size
                    continue
                nxt = min([r.gpa for r in mem.regions if r.gpa > start] + [end])
                size = nxt - start
                extra += size
                if extra > MAX_EXTRA_BYTES:
                    raise ModelError(f"the file places more than {MAX_EXTRA_BYTES >> 20} MiB of "
                                     "pages outside RAM; the model maps at most that")
                mem.regions.append(Region(start, size, "IGVM pages outside RAM "
                                          "(backends/igvm.c qigvm_prepare_memory)"))
                start = nxt
        mem.regions[1:] = sorted(mem.regions[1:], key=lambda r: r.gpa)
        return mem

    def map_into(self, uc) -> None:
        """Map both views and the scratch area into unicorn ``uc``."""
        from unicorn import UC_PROT_ALL
        for r in _merged(self.regions):
            uc.mem_map(r.gpa, r.size, UC_PROT_ALL)
            uc.mem_map(SHARED_BASE + r.gpa, r.size, UC_PROT_ALL)
        uc.mem_map(SCRATCH_BASE, SCRATCH_SIZE, UC_PROT_ALL)

    def load(self, uc, launch: LaunchPlan) -> None:
        """Put the launch's pages where the guest will find them: measured
        pages (and, on SNP, every launched page) are private; on SEV-ES an
        UNMEASURED page is hypervisor plaintext (cgs_set_guest_state does
        nothing for it), so only the shared view holds its bytes."""
        for u in launch.updates:
            for i, data in enumerate(u.pages):
                gpa = u.gpa + i * u.page_size
                blob = bytes(data or b"")[:u.page_size]
                plain = not self.snp and u.kind == Kind.UNMEASURED
                base = SHARED_BASE if plain else 0
                if blob:
                    uc.mem_write(base + gpa, blob)
                for p in range(gpa // PAGE, (gpa + u.page_size) // PAGE):
                    if plain:
                        self.plaintext.add(p)
                    elif self.snp:
                        self.validated.add(p)
            if u.source == "parameter_insert":
                self.notes.append(f"parameter area at {u.gpa:#x}: contents QEMU would fill "
                                  "(VP count, memory map, ...) are not modelled (zeros)")
            if u.kind in (Kind.SECRETS, Kind.CPUID):
                self.notes.append(f"{u.kind.value} page at {u.gpa:#x}: the SEV firmware's contents "
                                  "are not modelled")


def _merged(regions: list[Region]) -> list[Region]:
    out: list[Region] = []
    for r in sorted(regions, key=lambda r: r.gpa):
        if out and out[-1].gpa + out[-1].size == r.gpa:
            out[-1] = Region(out[-1].gpa, out[-1].size + r.size, out[-1].why)
        else:
            out.append(r)
    return out

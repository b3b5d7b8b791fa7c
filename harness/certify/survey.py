"""What the certification checks need of an image, from the one walk that validates it.

``certify`` reads the image's headers once: :func:`survey` runs the scan
(specification validation) with these consumers subscribed to its walk
(harness.igvm.walk), and every check then reads its part of the result:

- QEMU lint of every platform (:class:`harness.igvm.qemu_lint.Linter`);
- per certified platform: the constructs it uses
  (:class:`harness.expect.constructs.Constructs`), its VP contexts, the
  payload the console check looks for (OVMF's footer page), and for SEV,
  SEV-ES and SEV-SNP the predicted launch digest
  (:class:`harness.measure.launch.LaunchDigest`, hashing as the pages go by).

A file whose walk did not finish (an unreadable header ends the scan) or
whose platform headers come after other headers is surveyed again from its
parsed model (:func:`harness.igvm.walk.replay`): a second pass, for broken
files only.  Another consumer plugs in the same way: build it in
:meth:`Survey.platforms_done` (per platform) or :meth:`Survey.__init__`
(per file) and subscribe it to the walk.
"""

from __future__ import annotations

from harness.certify.model import QEMU_PLATFORMS
from harness.errors import HarnessError
from harness.expect.constructs import Constructs
from harness.igvm import model as m
from harness.igvm.defs import KVM_VMSA_GPA, PageDataType
from harness.igvm.limits import MAX_VIOLATIONS
from harness.igvm.qemu_lint import Linter
from harness.igvm.walk import Consumer, PageRun, Walk, replay

#: VP contexts a certify report lists per platform (the rest are counted).
CONTEXTS_LISTED = MAX_VIOLATIONS


class VpContexts(Consumer):
    """The VP contexts of one platform: how many, and the first
    :data:`CONTEXTS_LISTED` (VP index, GPA, size), compactly."""

    header_types = frozenset({0x304})  # VP_CONTEXT

    def __init__(self, mask: int) -> None:
        self.mask = mask
        self.count = 0
        self.listed: list[dict] = []

    def header(self, walk, h, at) -> None:
        if at.section == 2 and isinstance(h, m.VpContext) and h.compatibility_mask & self.mask:
            self.count += at.count
            if len(self.listed) < CONTEXTS_LISTED:
                self.listed.append({"vp_index": h.vp_index, "gpa": h.gpa,
                                    "size": len(h.data) if h.data is not None else 0})

    @property
    def gpa_mismatches(self) -> list[dict]:
        return [c for c in self.listed if c["gpa"] != KVM_VMSA_GPA]


class ConsolePayload(Consumer):
    """The payload kind the boot check expects on the console
    (harness.certify.console.detect, as a consumer): OVMF when the first
    NORMAL data page at the footer's page carries OVMF's footer GUID."""

    header_types = frozenset()  # page data only

    def __init__(self, mask: int) -> None:
        from harness.certify import console

        self.mask = mask
        self.page_gpa = console.OVMF_FOOTER_GPA & ~0xFFF
        self.offset = console.OVMF_FOOTER_GPA - self.page_gpa
        self.guid = console.OVMF_FOOTER_GUID
        self.kind: str | None = None  # None: not decided yet ("unknown" at the end)

    def pages(self, walk, run: PageRun) -> None:
        if (self.kind is not None or not run.mask & self.mask or run.data is None
                or run.data_type != PageDataType.NORMAL):
            return
        g = self.page_gpa
        if not run.gpa <= g < run.end or (g - run.gpa) % run.page_size:
            return
        page = run.page_data((g - run.gpa) // run.page_size)
        self.kind = ("ovmf" if bytes(page[self.offset:self.offset + len(self.guid)]) == self.guid
                     else "unknown")

    def end(self, walk) -> None:
        if self.kind is None:
            self.kind = "unknown"


class PlatformSurvey:
    """The parts of the survey for one certified platform."""

    def __init__(self, name: str, mask: int, vcpus: int) -> None:
        self.name = name
        self.mask = mask
        self.constructs = Constructs(mask)
        self.contexts = VpContexts(mask)
        self.console = ConsolePayload(mask)
        self.digest = None
        if name != "native":
            from harness.measure.launch import LaunchDigest

            self.digest = LaunchDigest(name, vcpus)

    def consumers(self) -> list[Consumer]:
        out: list[Consumer] = [self.constructs, self.contexts, self.console]
        if self.digest is not None and self.digest.planner.failed() is None:
            out.append(self.digest.planner)
        return out

    def prediction(self):
        """The predicted launch digest (its refusal raised as HarnessError)."""
        if self.digest is None:
            raise HarnessError(f"{self.name} has no launch measurement")
        return self.digest.result()


class Survey(Consumer):
    """Subscribes the checks' consumers to the walk: the lint for the file,
    the rest per platform once the platforms are known."""

    header_types = frozenset()  # it only subscribes the others

    def __init__(self, requested: str, vcpus: int) -> None:
        self.requested = requested
        self.vcpus = vcpus
        self.linter = Linter()
        self.platforms: dict[str, PlatformSurvey] = {}
        self.complete = False

    def platforms_done(self, walk: Walk) -> None:
        walk.subscribe(self.linter)
        for p in walk.platforms:
            name = QEMU_PLATFORMS.get(p.platform_type)
            if name is None or name in self.platforms:
                continue
            if self.requested not in ("auto", name):
                continue
            ps = self.platforms[name] = PlatformSurvey(name, walk.mask_for(p.platform_type),
                                                       self.vcpus)
            for c in ps.consumers():
                walk.subscribe(c)

    def end(self, walk: Walk) -> None:
        self.complete = not walk.late_platforms


def survey(data, requested: str, vcpus: int):
    """Validate the image and survey it in one pass: ``(model, violations,
    Survey)``; the model is None when the fixed header is unusable."""
    from harness.igvm.parser import scan

    s = Survey(requested, vcpus)
    f, violations = scan(data, consumers=[s])
    if f is not None and not s.complete:  # stopped early or out of order: from the model
        s = Survey(requested, vcpus)
        replay(f, [s])
    return f, violations, s


def of_target(target):
    """The target's survey; a Target made without one is surveyed now, from its model."""
    if target.survey is None:
        s = Survey(target.requested, target.vcpus)
        replay(target.model, [s])
        target.survey = s
    return target.survey


def of_platform(target, name: str) -> PlatformSurvey:
    """One platform's part of the target's survey (surveyed now from the
    model if the target was prepared for other platforms)."""
    s = of_target(target)
    ps = s.platforms.get(name)
    if ps is None:
        ps = PlatformSurvey(name, target.mask(name), target.vcpus)
        replay(target.model, ps.consumers())
        s.platforms[name] = ps
    return ps

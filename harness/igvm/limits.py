"""Bounds on what an IGVM file may ask for, each with its source.

A vendor image is untrusted input: every size, count or address read from
it is checked against one of these before it decides memory or work.  The
bounds are what QEMU and the platforms can accept, so a file refused here
could not have run anyway; a refusal names the header, its index and the
bound (:func:`refusal`).
"""

from __future__ import annotations

from harness.errors import HarnessError

#: Guest physical addresses are at most 52 bits wide on x86-64: AMD64
#: Architecture Programmer's Manual Vol. 2, "Physical address size"
#: (CPUID Fn8000_0008 EAX[7:0] PhysAddrSize, architectural maximum 52);
#: Intel SDM Vol. 3A 4.1.4 (MAXPHYADDR at most 52).  No guest page, VMSA,
#: parameter area or required-memory range can end above this.
GPA_WIDTH_BITS = 52
GPA_LIMIT = 1 << GPA_WIDTH_BITS

#: The largest page a PAGE_DATA header can describe: 2 MiB (IGVM spec,
#: igvm_defs IgvmPageDataFlags::is_2mb_page).
LARGEST_PAGE = 0x200000

#: A parameter area is allocated by QEMU on the host (backends/igvm.c:
#: qigvm_directive_parameter_area, ``g_malloc0(param_area->number_of_bytes)``)
#: and inserted page by page; what QEMU writes into one (VP count, memory
#: map, environment info) fills a few KiB.  Bounding it by the largest page
#: a directive can describe keeps every header's work at most that of one
#: 2 MiB page, so the work of a whole file grows linearly with its size.
MAX_PARAMETER_AREA_BYTES = LARGEST_PAGE

#: QEMU's q35 machine accepts at most 4096 vCPUs (hw/i386/pc_q35.c:
#: pc_q35_machine_options, ``m->max_cpus = 4096``); the IGVM files the
#: harness measures and boots run on q35.
MAX_VCPUS = 4096

#: An IGVM file's size is the u32 ``total_file_size`` of its fixed header
#: (igvm_defs IGVM_FIXED_HEADER), so no valid file exceeds 4 GiB - 1.
MAX_FILE_SIZE = (1 << 32) - 1

#: Violations the validator keeps (the first N are listed; the scan reads
#: on to the end of the file and only counts the rest): 4 million bad
#: headers would otherwise mean 4 million objects and lines (issue 13).
MAX_VIOLATIONS = 100


#: A CoRIM document or COSE_Sign1 signature carried in an IGVM file (headers
#: 0x104 / 0x105) is decoded only up to this size.  A document of the
#: launch-measurement profile is one CoMID with one digest and one SVN
#: (igvm crate 0.5 ``corim/launch_measurement/profile.rs``): about 500 bytes
#: for a 48-byte digest; a COSE_Sign1 over it with an X.509 chain in its
#: header (RFC 9360 ``x5chain``) a few KiB.  64 KiB leaves room for both and
#: bounds the decoded objects (at most one per byte); the corim crate's own
#: default document limit is 16 MiB (``corim`` 0.1 ``cbor/limits.rs``
#: ``DEFAULT_MAX_INPUT_BYTES``), for documents far richer than this profile.
MAX_CORIM_BYTES = 64 * 1024

#: Nesting of CBOR arrays, maps and tags in each CBOR item of a CoRIM (the
#: document, the CoMID in its bytes, a COSE_Sign1 and its protected header
#: are each bounded).  The profile's deepest value, the SVN tag inside the
#: conditional-endorsement-series triple, is 11 levels into the CoMID (15
#: counting the document around it); the corim crate refuses more than 64
#: (``cbor/limits.rs`` ``MAX_DECODE_DEPTH``, after RFC 8949 section 10).
MAX_CORIM_DEPTH = 32


def vcpus(text: str) -> int:
    """``--vcpus`` (an argparse ``type=``): 1 to :data:`MAX_VCPUS`, in any
    base :func:`harness.options.integer` reads.  One parser for ``measure``,
    ``certify`` and ``wrap-ovmf``, kept with the bound it applies."""
    import argparse  # loaded already wherever options are parsed

    from harness.options import integer

    value = integer(text)
    if not 1 <= value <= MAX_VCPUS:
        raise argparse.ArgumentTypeError(f"must be 1 to {MAX_VCPUS} (QEMU's q35 limit), not {text}")
    return value


def add_vcpus(parser, help: str = "vCPUs (default 1)") -> None:
    """``--vcpus N`` on ``parser``, parsed by :func:`vcpus`."""
    parser.add_argument("--vcpus", type=vcpus, default=1, metavar="N", help=help)


def refusal(what: str, index: int | None, detail: str, limit: str) -> HarnessError:
    """One line naming the header, its index and the bound (exit status 1)."""
    where = f"{what} {index}" if index is not None else what
    return HarnessError(f"{where}: {detail}; the limit is {limit}", 1)

"""A FAT16 volume image holding a small tree of files.

Why: a real OS boots from a disk, not from ``-kernel``: the firmware finds a
FAT file system (UEFI 2.10, 13.3 "File System Format": FAT12/16/32 on any
media), runs ``\\EFI\\BOOT\\BOOTX64.EFI`` (3.5.1.1 "Removable Media Boot
Behavior"), and the boot loader reads its configuration and the kernel from
the same volume.  The image is written here in Python, like the initrd
(harness/guests/initrd.py), so nothing beyond Python is needed at run time;
the tests cross-check it with dosfstools' ``fsck.fat`` and mtools.

Layout facts are Microsoft's "FAT: General Overview of On-Disk Format"
(fatgen103): the BPB fields and offsets; the FAT type decided only by the
count of data clusters (FAT16: 4085 to 65524); FAT entries 0 and 1 reserved;
0xFFFF ending a FAT16 chain; 32-byte directory entries with an 8.3 name,
``.`` and ``..`` first in a subdirectory (``..`` of a root child is cluster
0); long names as 0x0F entries of 13 UCS-2 characters each, stored last part
first before the short entry and bound to it by a checksum of the 8.3 name.
The volume has no partition table (a "superfloppy"), which OVMF's
PartitionDxe hands to the FAT driver whole.  Deterministic: a fixed volume id
and 1980-01-01 timestamps.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

from harness.errors import HarnessError

SECTOR = 512
SECTORS_PER_CLUSTER = 4            # 2 KiB clusters
CLUSTER = SECTOR * SECTORS_PER_CLUSTER
RESERVED_SECTORS = 1               # the boot sector
NUM_FATS = 2
ROOT_ENTRIES = 512                 # 32 sectors of 32-byte entries
DIR_ENTRY = 32
MIN_CLUSTERS, MAX_CLUSTERS = 4085, 65524   # FAT16 (fatgen103, "FAT Type Determination")
#: The largest volume these parameters make (65524 clusters of 2 KiB).
MAX_VOLUME = MAX_CLUSTERS * CLUSTER
#: Entries one directory may hold here (a boot volume has a handful).
MAX_DIR_ENTRIES = 4096
MAX_NAME = 255                     # long-name limit (fatgen103)
MEDIA_FIXED = 0xF8
ATTR_DIRECTORY, ATTR_ARCHIVE, ATTR_VOLUME_ID, ATTR_LONG_NAME = 0x10, 0x20, 0x08, 0x0F
LAST_LONG_ENTRY = 0x40
LFN_CHARS = 13
DOS_DATE_1980_01_01 = (0 << 9) | (1 << 5) | 1
VOLUME_ID = 0x1C6B_4A5D
_SHORT = re.compile(r"^([A-Z0-9_\-]{1,8})(?:\.([A-Z0-9_\-]{1,3}))?$")
_BASIS_DROP = re.compile(r"[^A-Z0-9_\-]")


def short_checksum(name11: bytes) -> int:
    """The long-name entries' checksum of an 11-byte short name (fatgen103)."""
    s = 0
    for b in name11:
        s = (((s & 1) << 7) + (s >> 1) + b) & 0xFF
    return s


def _short(name: str) -> bytes | None:
    m = _SHORT.match(name)
    return None if m is None else m.group(1).ljust(8).encode() + (m.group(2) or "").ljust(3).encode()


def _basis(name: str, n: int, taken: set[bytes]) -> bytes:
    """A unique ``BASE~N.EXT`` short name for the long name ``name``."""
    stem, dot, ext = name.upper().rpartition(".")
    if not dot:
        stem, ext = ext, ""
    stem, ext = _BASIS_DROP.sub("", stem) or "X", _BASIS_DROP.sub("", ext)[:3]
    while True:
        tail = f"~{n}"
        cand = (stem[:8 - len(tail)] + tail).ljust(8).encode() + ext.ljust(3).encode()
        if cand not in taken:
            return cand
        n += 1


def _long_entries(name: str, checksum: int) -> list[bytes]:
    units = name.encode("utf-16-le")
    chars = [units[i:i + 2] for i in range(0, len(units), 2)]
    if len(chars) % LFN_CHARS:
        chars.append(b"\0\0")
    while len(chars) % LFN_CHARS:
        chars.append(b"\xff\xff")
    parts = [b"".join(chars[i:i + LFN_CHARS]) for i in range(0, len(chars), LFN_CHARS)]
    out = []
    for seq in range(len(parts), 0, -1):      # stored last part first
        p = parts[seq - 1]
        order = seq | (LAST_LONG_ENTRY if seq == len(parts) else 0)
        out.append(struct.pack("<B10sBBB12sH4s", order, p[0:10], ATTR_LONG_NAME, 0, checksum,
                               p[10:22], 0, p[22:26]))
    return out


def _entry(name11: bytes, attr: int, cluster: int, size: int) -> bytes:
    d = DOS_DATE_1980_01_01
    return struct.pack("<11sBBBHHHHHHHI", name11, attr, 0, 0, 0, d, d, 0, 0, d, cluster, size)


@dataclass
class _Node:
    name: str
    data: bytes | None = None                 # None: a directory
    children: dict[str, "_Node"] = field(default_factory=dict)
    parent: "_Node | None" = None
    cluster: int = 0

    @property
    def is_dir(self) -> bool:
        return self.data is None


def _tree(files: dict[str, bytes]) -> _Node:
    root = _Node("")
    for path, data in files.items():
        parts = [p for p in path.replace("\\", "/").split("/") if p]
        if not parts or any(p in (".", "..") or len(p) > MAX_NAME or "\0" in p for p in parts):
            raise HarnessError(f"FAT image: {path!r} is not a usable file path")
        node = root
        for p in parts[:-1]:
            node = node.children.setdefault(p.upper(), _Node(p, parent=node))
            if not node.is_dir:
                raise HarnessError(f"FAT image: {path!r} puts a file under a file")
        if parts[-1].upper() in node.children:
            raise HarnessError(f"FAT image: {path!r} is given twice (FAT names ignore case)")
        node.children[parts[-1].upper()] = _Node(parts[-1], bytes(data), parent=node)
    return root


def _dir_entries(node: _Node, parent: "_Node | None") -> list[bytes]:
    """The 32-byte entries of directory ``node`` (children's clusters known)."""
    out: list[bytes] = []
    if parent is not None:
        out.append(_entry(b".".ljust(11), ATTR_DIRECTORY, node.cluster, 0))
        out.append(_entry(b"..".ljust(11), ATTR_DIRECTORY, parent.cluster, 0))
    taken: set[bytes] = set()
    for child in node.children.values():
        short = _short(child.name)
        if short is None or short in taken:
            short = _basis(child.name, 1, taken)
            out.extend(_long_entries(child.name, short_checksum(short)))
        taken.add(short)
        size = 0 if child.is_dir else len(child.data or b"")
        out.append(_entry(short, ATTR_DIRECTORY if child.is_dir else ATTR_ARCHIVE,
                          child.cluster, size))
    return out


def _entry_count(node: _Node) -> int:
    """How many 32-byte entries directory ``node`` takes: those :func:`_dir_entries`
    writes (their number does not depend on the clusters, not allocated yet)."""
    return len(_dir_entries(node, node.parent))


def _clusters_of(node: _Node) -> int:
    size = _entry_count(node) * DIR_ENTRY if node.is_dir else len(node.data or b"")
    return max(1, -(-size // CLUSTER)) if node.is_dir else -(-size // CLUSTER)


def _walk(node: _Node):
    """Every node below ``node``, breadth first (the allocation order)."""
    queue = list(node.children.values())
    while queue:
        n = queue.pop(0)
        yield n
        queue.extend(n.children.values())


def _layout(volume_bytes: int) -> tuple[int, int, int]:
    """(total sectors, sectors per FAT, data clusters) of a volume of ``volume_bytes``."""
    total = volume_bytes // SECTOR
    root_sectors = ROOT_ENTRIES * DIR_ENTRY // SECTOR
    rough = (total - RESERVED_SECTORS - root_sectors) // SECTORS_PER_CLUSTER
    fat_sectors = -(-(rough + 2) * 2 // SECTOR)
    clusters = (total - RESERVED_SECTORS - root_sectors - NUM_FATS * fat_sectors) // SECTORS_PER_CLUSTER
    if not MIN_CLUSTERS <= clusters <= MAX_CLUSTERS:
        raise HarnessError(f"FAT image: {volume_bytes} bytes make {clusters} clusters, outside "
                           f"FAT16's {MIN_CLUSTERS}..{MAX_CLUSTERS}")
    return total, fat_sectors, clusters


def _boot_sector(total: int, fat_sectors: int, label: bytes) -> bytes:
    bs = bytearray(SECTOR)
    bs[0:3] = b"\xEB\x3C\x90"                    # jmp short; nop (BS_jmpBoot)
    bs[3:11] = b"IGVMHARN"                       # BS_OEMName
    struct.pack_into("<HBHBHHBHHHII", bs, 11, SECTOR, SECTORS_PER_CLUSTER, RESERVED_SECTORS,
                     NUM_FATS, ROOT_ENTRIES, total if total < 0x10000 else 0, MEDIA_FIXED,
                     fat_sectors, 63, 255, 0, total if total >= 0x10000 else 0)
    struct.pack_into("<BBBI11s8s", bs, 36, 0x80, 0, 0x29, VOLUME_ID, label, b"FAT16   ")
    bs[510:512] = b"\x55\xAA"
    return bytes(bs)


def build(files: dict[str, bytes], label: str = "IGVMHARNESS",
          volume_bytes: int | None = None) -> bytes:
    """The volume image holding ``files`` (``"EFI/BOOT/BOOTX64.EFI"`` -> contents).

    ``volume_bytes`` defaults to the contents plus 1 MiB, at least FAT16's
    smallest volume; more than :data:`MAX_VOLUME` of contents is refused
    before anything is allocated.
    """
    need = sum(len(d) for d in files.values())
    if need > MAX_VOLUME or len(files) > MAX_DIR_ENTRIES:
        raise HarnessError(f"FAT image: {len(files)} files of {need} bytes do not fit a FAT16 "
                           f"volume of at most {MAX_VOLUME >> 20} MiB")
    root = _tree(files)
    nodes = list(_walk(root))
    if _entry_count(root) > ROOT_ENTRIES or any(
            n.is_dir and _entry_count(n) > MAX_DIR_ENTRIES for n in nodes):
        raise HarnessError(f"FAT image: a directory has more entries than "
                           f"{ROOT_ENTRIES} (root) or {MAX_DIR_ENTRIES}")
    used = sum(_clusters_of(n) for n in nodes)
    if volume_bytes is None:
        volume_bytes = max(used * CLUSTER + (1 << 20), (MIN_CLUSTERS + 64) * CLUSTER + (1 << 16))
        volume_bytes = -(-volume_bytes // (1 << 20)) << 20
    if volume_bytes > (MAX_CLUSTERS + 64) * CLUSTER + (1 << 20):
        raise HarnessError(f"FAT image: {volume_bytes} bytes is more than a FAT16 volume of "
                           f"{SECTORS_PER_CLUSTER * SECTOR} B clusters holds")
    total, fat_sectors, clusters = _layout(volume_bytes)
    if used > clusters:
        raise HarnessError(f"FAT image: {used} clusters of contents do not fit {volume_bytes} bytes")

    fat = [0] * (clusters + 2)
    fat[0], fat[1] = 0xFF00 | MEDIA_FIXED, 0xFFFF
    nxt = 2
    for n in nodes:                              # allocate: contiguous chains, breadth first
        count = _clusters_of(n)
        n.cluster = nxt if count else 0
        for i in range(count):
            fat[nxt + i] = nxt + i + 1 if i < count - 1 else 0xFFFF
        nxt += count
    data_area = bytearray(used * CLUSTER)
    for n in nodes:
        if n.is_dir:
            body = b"".join(_dir_entries(n, n.parent))
        else:
            body = n.data or b""
        if body:
            off = (n.cluster - 2) * CLUSTER
            data_area[off:off + len(body)] = body
    label11 = label.upper().encode()[:11].ljust(11)
    root_dir = (_entry(label11, ATTR_VOLUME_ID, 0, 0) + b"".join(_dir_entries(root, None)))
    if len(root_dir) > ROOT_ENTRIES * DIR_ENTRY:
        raise HarnessError(f"FAT image: the root directory holds {ROOT_ENTRIES} entries")
    fat_bytes = struct.pack(f"<{len(fat)}H", *fat).ljust(fat_sectors * SECTOR, b"\0")
    image = bytearray(total * SECTOR)
    pos = 0
    for part in (_boot_sector(total, fat_sectors, label11), fat_bytes, fat_bytes,
                 root_dir.ljust(ROOT_ENTRIES * DIR_ENTRY, b"\0"), data_area):
        image[pos:pos + len(part)] = part
        pos += len(part)
    return bytes(image)

"""The harness initrd: a newc cpio the kernel can unpack.

The layout is checked against the format's definition (Linux
Documentation/driver-api/early-userspace/buffer-format.rst: "070701", 13
fields of 8 ASCII hex digits, the name with its NUL, both padded to 4
bytes, a ``TRAILER!!!`` entry), parsed here independently of the writer;
where GNU cpio is installed it lists the archive too.  The real proof is
the Linux boot of suites/firmware.
"""

from __future__ import annotations

import gzip
import shutil
import stat
import subprocess

import pytest

from harness.guests import initrd as I

FIELDS = ("ino", "mode", "uid", "gid", "nlink", "mtime", "filesize", "devmajor", "devminor",
          "rdevmajor", "rdevminor", "namesize", "check")


def read_newc(data: bytes) -> dict[str, dict]:
    """name -> header fields + data, straight from the format definition."""
    out, pos = {}, 0
    while True:
        assert data[pos:pos + 6] == b"070701", f"bad magic at {pos}"
        f = {k: int(data[pos + 6 + 8 * i: pos + 14 + 8 * i], 16) for i, k in enumerate(FIELDS)}
        name_at = pos + 110
        name = data[name_at:name_at + f["namesize"] - 1].decode()
        assert data[name_at + f["namesize"] - 1] == 0
        body = name_at + f["namesize"]
        body += -body % 4
        f["data"] = data[body:body + f["filesize"]]
        pos = body + f["filesize"]
        pos += -pos % 4
        if name == "TRAILER!!!":
            assert pos == len(data)
            return out
        out[name] = f


@pytest.fixture
def fake_busybox(tmp_path):
    p = tmp_path / "busybox"
    p.write_bytes(b"\x7fELF" + bytes(range(256)) * 9)   # length not a multiple of 4
    return p


def test_archive_holds_init_busybox_and_console(tmp_path, fake_busybox):
    path = I.build_initrd(fake_busybox, cache=tmp_path / "c")
    files = read_newc(path.read_bytes())
    init = files["init"]
    assert stat.S_ISREG(init["mode"]) and init["mode"] & 0o111
    assert init["data"] == I.INIT_SCRIPT.read_bytes() and init["data"].startswith(b"#!/bin/busybox sh")
    assert files["bin/busybox"]["data"] == fake_busybox.read_bytes()
    assert stat.S_ISLNK(files["bin/sh"]["mode"]) and files["bin/sh"]["data"] == b"busybox"
    con = files["dev/console"]
    # init/main.c console_on_rootfs opens /dev/console: char device 5:1 (devices.txt)
    assert stat.S_ISCHR(con["mode"]) and (con["rdevmajor"], con["rdevminor"]) == (5, 1)
    assert {"proc", "sys", "dev", "tmp"} <= {n for n, f in files.items() if stat.S_ISDIR(f["mode"])}
    assert all(f["mtime"] == 0 and f["uid"] == 0 for f in files.values())
    assert len({f["ino"] for f in files.values()}) == len(files)


def test_cached_deterministic_and_gzip(tmp_path, fake_busybox):
    a = I.build_initrd(fake_busybox, cache=tmp_path / "c")
    b = I.build_initrd(fake_busybox, cache=tmp_path / "c")
    assert a == b
    again = I.build_initrd(fake_busybox, cache=tmp_path / "other")
    assert again.read_bytes() == a.read_bytes()            # deterministic
    z = I.build_initrd(fake_busybox, compress=True, cache=tmp_path / "c")
    assert z != a and gzip.decompress(z.read_bytes()) == a.read_bytes()
    fake_busybox.write_bytes(fake_busybox.read_bytes() + b"x")
    assert I.build_initrd(fake_busybox, cache=tmp_path / "c") != a   # content -> new key
    assert not [p for p in (tmp_path / "c").iterdir() if p.name.startswith(".")]


@pytest.mark.skipif(not shutil.which("cpio"), reason="GNU cpio not installed (setup.sh installs it)")
def test_gnu_cpio_lists_the_archive(tmp_path, fake_busybox):
    path = I.build_initrd(fake_busybox, cache=tmp_path / "c")
    out = subprocess.run(["cpio", "-itv"], stdin=path.open("rb"), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    names = [line.split()[-1] if "->" not in line else line.split()[-3]
             for line in out.stdout.splitlines()]
    assert {"init", "bin/busybox", "bin/sh", "dev/console"} <= set(names)


@pytest.mark.parametrize("content,msg", [(b"#!/bin/sh\n", "not an ELF"), (None, "No such file")])
def test_bad_busybox_is_one_error(tmp_path, content, msg):
    p = tmp_path / "busybox"
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(I.InitrdError, match=msg):
        I.build_initrd(p, cache=tmp_path / "c")
    assert not (tmp_path / "c").exists() or not list((tmp_path / "c").iterdir())


def test_oversized_busybox_is_refused_before_reading(tmp_path, monkeypatch):
    p = tmp_path / "busybox"
    p.write_bytes(b"\x7fELF")
    monkeypatch.setattr(I, "MAX_BUSYBOX", 2)
    with pytest.raises(I.InitrdError, match="more than"):
        I.build_initrd(p, cache=tmp_path / "c")

"""Guest payloads: built with binutils, cached by content, rebuilt on change."""

from __future__ import annotations

import shutil

import pytest

from harness.guests import build as gb


@pytest.fixture
def sources(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(gb.SOURCE_DIR, src)
    return src


def test_reset16_has_jump_at_reset_vector(tmp_path, sources):
    img = gb.build_guest("reset16", cache=tmp_path / "c", source_dir=sources)
    data = img.data
    assert len(data) == 4096
    # offset 0xFF0 of the page at 0xFFFFF000 is physical 0xFFFFFFF0; a near
    # jmp rel16 (opcode E9) back into the page must sit there.
    assert data[0xFF0] == 0xE9


def test_payload64_entry_and_cache(tmp_path, sources):
    cache = tmp_path / "c"
    a = gb.build_guest("payload64", cache=cache, source_dir=sources)
    assert a.load_address == 0x100000 and a.entry == a.symbols["_start"] == 0x100000
    assert a.symbols["_image_end"] - a.load_address == a.size
    b = gb.build_guest("payload64", cache=cache, source_dir=sources)
    assert b.path == a.path                              # cache hit
    (sources / "payload64.s").write_text((sources / "payload64.s").read_text() + "\n# x\n")
    c = gb.build_guest("payload64", cache=cache, source_dir=sources)
    assert c.path != a.path                              # content changed -> rebuilt
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no leftovers


def test_assembly_error_is_one_line(tmp_path, sources):
    (sources / "reset16.s").write_text("bogus_instruction %eax\n")
    with pytest.raises(gb.GuestBuildError, match="assembling reset16.s failed"):
        gb.build_guest("reset16", cache=tmp_path / "c", source_dir=sources)
    assert not list((tmp_path / "c").iterdir())


def test_unknown_guest(tmp_path):
    with pytest.raises(gb.GuestBuildError, match="unknown guest"):
        gb.build_guest("nope", cache=tmp_path)


def test_concurrent_builds_publish_one_image(tmp_path, sources):
    """pytest-xdist workers may build the same payload at once: one copy
    wins the atomic rename, the others reuse it; no temp dirs remain."""
    from concurrent.futures import ThreadPoolExecutor
    cache = tmp_path / "c"
    with ThreadPoolExecutor(4) as pool:
        images = list(pool.map(lambda _: gb.build_guest("payload64", cache=cache,
                                                         source_dir=sources), range(4)))
    assert len({img.path for img in images}) == 1
    assert images[0].data == images[-1].data and images[0].size > 0
    assert [p.name for p in cache.iterdir()] == [images[0].path.parent.name]


def test_every_guest_is_registered_in_the_builder_table():
    """The matrix payloads are rows of harness.guests.build's table: a fresh
    interpreter that imports only the builder knows them, and the matrix
    module adds nothing at runtime."""
    import subprocess
    import sys
    code = ("import harness.guests.build as gb; before = dict(gb.GUESTS); "
            "import harness.matrix.guests as mg; "
            "assert set(mg.MATRIX_GUESTS) <= set(before); "
            "assert gb.GUESTS == before; print(' '.join(sorted(before)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == sorted(["reset16", "payload64", "payload64-ghcb", "reset-long"])
    assert [row[0] for row in gb.GUEST_TABLE] == list(gb.GUESTS)


def test_matrix_payloads_build_from_the_table(tmp_path, sources):
    cache = tmp_path / "c"
    # reset vector: physical 0xFFFFFFF0 = offset 0xFF0 of the page at
    # 0xFFFFF000 (Intel SDM vol. 3, 9.1.4); reset_long.s uses jmp rel16 (E9)
    page = gb.build_guest("reset-long", cache=cache, source_dir=sources)
    assert page.size == 4096 and page.load_address == 0xF000
    assert page.data[0xFF0] == 0xE9
    target = (0xFF3 + int.from_bytes(page.data[0xFF1:0xFF3], "little", signed=True)) & 0xFFFF
    assert target < 0xFF0                                 # back into the page
    ghcb = gb.build_guest("payload64-ghcb", cache=cache, source_dir=sources)
    assert ghcb.entry == ghcb.symbols["_start"] == 0x100000   # same entry as payload64
    assert {"ghcb_putc", "ghcb_exit", "io_putc", "io_exit"} <= set(ghcb.symbols)

"""The SNP PAGE_INFO chain's two paths -- the C fold (harness/native/snpfold.c)
and the pure-Python chain -- on one thread and on two, against an independent
computation: sev-snp-measure's ``GCTX.update_normal_pages`` (PyPI), fed the
zero-padded pages one by one.

The fold is built into the harness cache by set-up (``igvm-harness native
build``); the ``fold`` fixture builds it when it is absent, so these tests
run either way, and the fallback is tested by forcing the fold off.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from harness import native
from harness.errors import HarnessError
from harness.measure import measure_snp
from harness.measure.measure_snp import SnpLaunchDigest

gctx = pytest.importorskip("sevsnpmeasure.gctx", reason="sev-snp-measure (dev extra) not installed")

PAGE = 0x1000
MIB2 = 0x200000
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="session")
def fold():
    from harness.native import build

    try:
        return build.ensure("_snpfold")
    except HarnessError as exc:  # set-up's package list has cc, python3-dev, libssl-dev
        pytest.skip(f"C fold not built: {exc}")


def _data(seed: int, size: int) -> bytes:
    """Deterministic, page-distinct bytes (SHAKE-256 stream)."""
    return hashlib.shake_256(seed.to_bytes(4, "little")).digest(size)


def _oracle(gpa: int, items, page_size: int) -> bytes:
    """sev-snp-measure's chain over the same pages, each zero-padded to page_size."""
    g = gctx.GCTX()
    for i, item in enumerate(items):
        page = bytes(page_size) if item is None else bytes(item) + bytes(page_size - len(item))
        g.update_normal_pages(gpa + i * page_size, page)
    return g.ld()


@pytest.fixture
def use_native(monkeypatch, fold):
    """Every run, however short, through the C fold; threads hand out small batches."""
    monkeypatch.setattr(measure_snp, "_native", fold)
    monkeypatch.setattr(measure_snp, "NATIVE_MIN_UNITS", 0)
    monkeypatch.setattr(measure_snp, "_NATIVE_BATCH", 8)
    monkeypatch.setattr(measure_snp, "NATIVE_THREADS_MIN_UNITS", 0)


@pytest.fixture
def use_python(monkeypatch):
    monkeypatch.setattr(measure_snp, "_native", False)
    monkeypatch.setattr(measure_snp, "_BATCH", 8)


def _cases():
    d = _data(1, 3 * MIB2)
    v = memoryview(d)
    pages = [v[i * PAGE:(i + 1) * PAGE] for i in range(40)]
    return {
        "0 pages": ([], PAGE),
        "1 page": (pages[:1], PAGE),
        "odd count (37)": (pages[:37], PAGE),
        "None units": ([None, pages[0], None, None, pages[1]] * 7, PAGE),
        "odd lengths": ([b"", d[:1], d[:4095], pages[3], d[:2049], bytes(d[:4096])] * 5, PAGE),
        "bytes, bytearray, memoryview": ([d[:PAGE], bytearray(d[PAGE:2 * PAGE]), pages[2]] * 9, PAGE),
        "2 MiB units": ([v[:MIB2], None, d[MIB2:MIB2 + 4097], v[MIB2:2 * MIB2], b"", d[:1]], MIB2),
        "one 2 MiB unit": ([v[MIB2:2 * MIB2]], MIB2),
        "8 KiB units": ([d[:0x2000], None, d[:0x1001]] * 6, 0x2000),
    }


CASES = _cases()


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("path", ["native", "python"])
def test_chain_equals_sev_snp_measure(request, name, path, workers):
    request.getfixturevalue(f"use_{path}")
    items, page_size = CASES[name]
    gpa = 0x10_0000_0000 + 0x200000  # above 4 GiB: the GPA's high bytes are hashed too
    ld = SnpLaunchDigest()
    ld.normal_page_list(gpa, items, page_size, workers=workers)
    units = len(items) * page_size // PAGE
    assert ld.ld == _oracle(gpa, items, page_size)
    assert ld.pages == units
    if units:
        threaded = workers > 1 and units >= 2 * (measure_snp._NATIVE_BATCH if path == "native"
                                                   else measure_snp._BATCH)
        assert ld.paths == {path + ("-threads" if threaded else ""): units}


@pytest.mark.parametrize("workers", [2, 3])
def test_native_threads_more_batches_than_threads_and_a_ragged_end(fold, monkeypatch, workers):
    """Batches of 8 units over 1,003 pages from a non-zero seed: every page
    folded once, in order, whichever thread hashed it."""
    monkeypatch.setattr(measure_snp, "_native", fold)
    monkeypatch.setattr(measure_snp, "_NATIVE_BATCH", 8)
    monkeypatch.setattr(measure_snp, "NATIVE_THREADS_MIN_UNITS", 0)
    d = _data(2, 1003 * PAGE)
    items = [memoryview(d)[i * PAGE:(i + 1) * PAGE] for i in range(1003)]
    seed = hashlib.sha384(b"seed").digest()
    ld = SnpLaunchDigest(seed)
    ld.normal_page_list(0x100000, items, PAGE, workers=workers)
    g = gctx.GCTX(seed)
    g.update_normal_pages(0x100000, d)
    assert ld.ld == g.ld() and ld.paths == {"native-threads": 1003}


def test_c_functions_agree_with_hashlib(fold):
    """contents() is SHA-384 of each zero-padded 4 KiB unit; fold() of those is chain()."""
    d = _data(3, 5 * PAGE)
    items = [d[:PAGE], None, d[PAGE:PAGE + 100]]
    out = bytearray(48 * 3)
    fold.contents(items, PAGE, 0, 3, out)
    want = [hashlib.sha384(d[:PAGE]).digest(), hashlib.sha384(bytes(PAGE)).digest(),
            hashlib.sha384(d[PAGE:PAGE + 100] + bytes(PAGE - 100)).digest()]
    assert bytes(out) == b"".join(want)
    part = bytearray(48)
    fold.contents(items, PAGE, 2, 3, part)  # start/stop select items
    assert bytes(part) == want[2]
    ld0 = hashlib.sha384(b"x").digest()
    assert fold.fold(ld0, 0x5000, out) == fold.chain(ld0, 0x5000, items, PAGE) == \
        fold.chain(ld0, 0x5000, [None] + items, PAGE, 1)
    assert fold.fold(ld0, 0x5000, b"") == ld0 == fold.chain(ld0, 0x5000, [], PAGE)


@pytest.mark.parametrize("call,error", [
    (lambda f: f.chain(bytes(47), 0, [], PAGE), ValueError),                # digest length
    (lambda f: f.chain(bytes(48), 0, [bytes(PAGE + 1)], PAGE), ValueError),  # longer than its page
    (lambda f: f.chain(bytes(48), 0, [], 0x1800), ValueError),              # not a 4 KiB multiple
    (lambda f: f.chain(bytes(48), 0, [], 0), ValueError),
    (lambda f: f.chain(bytes(48), -1, [], PAGE), OverflowError),
    (lambda f: f.chain(bytes(48), 1 << 64, [], PAGE), OverflowError),
    (lambda f: f.chain(bytes(48), (1 << 64) - PAGE, [None, None], PAGE), OverflowError),
    (lambda f: f.chain(bytes(48), 0, [12345], PAGE), TypeError),             # not a buffer
    (lambda f: f.chain(bytes(48), 0, [memoryview(bytes(2 * PAGE))[::2]], PAGE), BufferError),
    (lambda f: f.chain(bytes(48), 0, 5, PAGE), TypeError),                   # not a sequence
    (lambda f: f.contents([None], PAGE, 0, 1, bytearray(47)), ValueError),   # output size
    (lambda f: f.contents([None], PAGE, 0, 1, bytes(48)), BufferError),      # read-only output
    (lambda f: f.contents([None], PAGE, 2, 1, bytearray(48)), IndexError),
    (lambda f: f.fold(bytes(48), 0, bytes(49)), ValueError),
], ids=["ld-47", "long-page", "page-6k", "page-0", "gpa-neg", "gpa-2^64", "gpa-wraps", "not-buffer",
        "strided", "not-sequence", "out-size", "out-readonly", "start>stop", "contents-49"])
def test_c_functions_refuse_bad_arguments(fold, call, error):
    with pytest.raises(error):
        call(fold)


def test_gpa_at_the_top_of_the_address_space(fold):
    """The last page may sit at 2^64 - 4 KiB (the u64 GPA field), as in the Python chain."""
    gpa = (1 << 64) - 2 * PAGE
    want = measure_snp._chain(bytes(48), gpa, [None, None])
    assert fold.chain(bytes(48), gpa, [None, None], PAGE) == want


@pytest.mark.parametrize("path", ["native", "python"])
def test_page_data_longer_than_its_page_is_one_error_line(request, path):
    request.getfixturevalue(f"use_{path}")
    with pytest.raises(HarnessError, match=r"^SNP update at GPA 0x3000: page data of 4097 bytes "
                                           r"exceeds the page size 4096$"):
        SnpLaunchDigest().normal_page_list(0x3000, [None, bytes(PAGE + 1)], PAGE, workers=1)


@pytest.mark.parametrize("path", ["native", "python"])
def test_error_on_a_helper_thread_reaches_the_caller(request, path):
    """A unit that is not a buffer raises on the caller's thread; no helper is left behind."""
    request.getfixturevalue(f"use_{path}")
    pages = [bytes(PAGE)] * 200
    pages[-3] = 12345
    before = threading.active_count()
    with pytest.raises(TypeError):
        SnpLaunchDigest().normal_page_list(0, pages, PAGE, workers=2)
    assert threading.active_count() == before


def test_long_runs_take_the_fold_short_runs_stay_in_python(fold, monkeypatch):
    """Built, the fold measures runs of NATIVE_MIN_UNITS pages and more (also
    through the bytes API); shorter runs never load it."""
    monkeypatch.setattr(measure_snp, "_native", fold)
    n = measure_snp.NATIVE_MIN_UNITS
    d = _data(4, n * PAGE)
    long, short = SnpLaunchDigest(), SnpLaunchDigest()
    long.normal_pages(0, d)
    short.normal_pages(0, d[:(n - 1) * PAGE])
    assert long.paths == {"native": n} and short.paths == {"python": n - 1}


def test_measure_cli_uses_the_fold_and_says_so(fold, tmp_path):
    """``igvm-harness measure`` of a 2 MiB page image: the C fold measures it
    (IGVM_HARNESS_DEBUG names the path), the same digest as with the fold off."""
    from harness.igvm.builder import IgvmBuilder
    from harness.igvm.defs import PlatformType

    d = _data(5, 512 * PAGE)
    b = IgvmBuilder()
    b.platform(PlatformType.SEV_SNP)
    b.pages(0x100000, d)
    path = tmp_path / "big.igvm"
    b.write(path)
    out = {}
    for switch in ("1", "0"):
        env = dict(os.environ, IGVM_HARNESS_DEBUG="1", IGVM_HARNESS_NATIVE=switch)
        r = subprocess.run([sys.executable, "-m", "harness.cli", "measure", str(path), "--platform", "sev-snp"],
                           capture_output=True, text=True, env=env, timeout=120)
        assert r.returncode == 0, r.stderr
        out[switch] = r
    assert "512 NORMAL pages from GPA 0x100000 by the C fold" in out["1"].stderr
    assert "512 NORMAL pages from GPA 0x100000 by the Python chain" in out["0"].stderr
    assert out["1"].stdout == out["0"].stdout and "launch digest (sha384)" in out["1"].stdout


def test_ctrl_c_during_a_threaded_fold_stops_promptly(fold, tmp_path):
    """SIGINT while two threads chain 4 GiB of pages: KeyboardInterrupt within
    a second, and the process ends (no helper left hanging)."""
    code = ("import sys\n"
            "from harness.measure.measure_snp import SnpLaunchDigest, native_fold\n"
            "assert native_fold() is not None\n"
            "page = memoryview(bytes(range(256)) * 16)\n"
            "print('ready', flush=True)\n"
            "try:\n"
            "    SnpLaunchDigest().normal_page_list(0, [page] * (1 << 20), 4096, workers=2)\n"
            "except KeyboardInterrupt:\n"
            "    print('interrupted', flush=True)\n"
            "    sys.exit(3)\n"
            "print('finished', flush=True)\n")
    env = {k: v for k, v in os.environ.items() if k != native.ENV_SWITCH}
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, cwd=REPO, env=env,
                         # a shell's background job would inherit SIGINT ignored; a terminal's would not
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert p.stdout.readline().strip() == "ready"
        time.sleep(0.3)
        sent = time.monotonic()
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
        elapsed = time.monotonic() - sent
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 3 and out.strip() == "interrupted", err[-500:]
    assert elapsed < 5, f"{elapsed:.1f} s from SIGINT to exit"


def test_short_measure_never_imports_the_native_package(tmp_path):
    """The CLI start-up budget: a 4-page file is measured without harness.native."""
    from harness.igvm.builder import IgvmBuilder
    from harness.igvm.defs import PlatformType

    b = IgvmBuilder()
    b.platform(PlatformType.SEV_SNP)
    b.pages(0x100000, _data(6, 4 * PAGE))
    path = tmp_path / "small.igvm"
    b.write(path)
    code = ("import sys, contextlib, io\nfrom harness.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    main(['measure', {str(path)!r}, '--platform', 'sev-snp'])\n"
            "print(sorted(m for m in sys.modules if m.startswith('harness.native') or m == 'threading'))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("path", ["native", "python"])
def test_known_answer_vectors_on_both_paths(request, monkeypatch, path):
    """../shared/vectors: the AmdSev OVMF suffix as NORMAL pages below 4 GiB and
    the generated GCTX example (NORMAL pages, then a VMSA), on each path."""
    from harness.measure.measure_snp import VMSA_GPA
    from tests.measure.conftest import b64, load_vector

    request.getfixturevalue(f"use_{path}")
    v = load_vector("ssm_launch_digest_kat.json")
    ovmf = b64(v["fixtures_b64"]["ovmf_AmdSev_suffix.bin"])
    for workers in (1, 2):
        monkeypatch.setattr(measure_snp, "DEFAULT_WORKERS", workers)
        ld = SnpLaunchDigest()
        ld.normal_pages((1 << 32) - len(ovmf), ovmf)
        assert ld.hexdigest() == v["snp_ovmf_hash_ovmf_AmdSev_suffix"]
        assert set(ld.paths) <= {path, path + "-threads"}
    g = load_vector("generated_snp_gctx_examples.json")
    data = {k: b64(x) for k, x in g["data_b64"].items()}
    ld = SnpLaunchDigest()
    for step in g["examples"][0]["steps"]:
        if step["op"] == "update_normal_pages":
            ld.normal_pages(int(step["gpa"], 16), data[step["data"]])
        else:
            ld.vmsa_page(data[step["data"]], VMSA_GPA)
    assert ld.hexdigest() == g["examples"][0]["expected_ld"] and set(ld.paths) <= {path, path + "-threads"}


def _measure_cli(*args, native_on: bool):
    env = dict(os.environ, IGVM_HARNESS_DEBUG="1", IGVM_HARNESS_NATIVE="1" if native_on else "0")
    r = subprocess.run([sys.executable, "-m", "harness.cli", "measure", *map(str, args)],
                       capture_output=True, text=True, env=env, timeout=300, cwd=REPO)
    assert r.returncode == 0, r.stderr
    return r


def _chained(stderr: str, fold_on: bool) -> int:
    """NORMAL pages the debug lines say were chained; with the fold on, some
    by the C fold (the long runs), with it off none."""
    lines = [ln for ln in stderr.splitlines() if "NORMAL pages from GPA" in ln]
    assert any("by the C fold" in ln for ln in lines) == fold_on, stderr
    return sum(int(ln.split("SNP chain: ")[1].split()[0]) for ln in lines)


def test_real_ovmf_same_digest_with_and_without_the_fold(fold, tmp_path):
    """Debian's OVMF.amdsev.fd (1,024 firmware pages, above the fold's threshold):
    the classic -bios digest equals sev-snp-measure's on both paths, and the
    IGVM wrap's digest is the same on both paths.  Runs of one repeated
    page (OVMF's 0xFF variable store: stored once in the wrap, found by
    memcmp in the image) are hashed once and only their PAGE_INFOs chained
    (674 of them in one C call), the rest as runs of distinct pages."""
    from sevsnpmeasure import guest
    from sevsnpmeasure.sev_mode import SevMode
    from sevsnpmeasure.vcpu_types import CPU_SIGS
    from sevsnpmeasure.vmm_types import VMMType

    from tests.ovmf_images import debian_ovmf

    fw = str(debian_ovmf("ovmf-amdsev"))
    theirs = guest.calc_launch_digest(SevMode.SEV_SNP, 1, CPU_SIGS["EPYC-v4"], fw, "", "", "", 1,
                                      vmm_type=VMMType.QEMU).hex()
    wrapped = tmp_path / "amdsev-snp.igvm"
    r = subprocess.run([sys.executable, "-m", "harness.cli", "wrap-ovmf", fw, "--platform", "sev-snp",
                        "-o", str(wrapped), "--quiet"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr
    digests = {}
    for on in (True, False):
        classic = _measure_cli(fw, "--platform", "sev-snp", "--json", native_on=on)
        assert _chained(classic.stderr, on) == 1024  # the firmware's pages
        assert json.loads(classic.stdout)["digest"] == theirs
        igvm = _measure_cli(wrapped, "--platform", "sev-snp", "--json", native_on=on)
        assert _chained(igvm.stderr, on) == 1024 + 44  # and the metadata pages, NORMAL zeros
        digests[on] = json.loads(igvm.stdout)["digest"]
    assert digests[True] == digests[False]


def test_explain_names_the_chain_path(fold, tmp_path):
    from tests.ovmf_images import synthetic_ovmf

    fw = tmp_path / "synthetic.fd"
    fw.write_bytes(synthetic_ovmf(size=0x200000))  # 512 pages: the fold's run
    on = _measure_cli(fw, "--platform", "sev-snp", "--explain", native_on=True).stdout
    off = _measure_cli(fw, "--platform", "sev-snp", "--explain", native_on=False).stdout
    assert (f"SNP chain: C fold for runs of >= {measure_snp.NATIVE_MIN_UNITS} pages "
            "(_snpfold: built, loaded from ") in on
    assert "SNP chain: pure Python (_snpfold: absent: turned off by IGVM_HARNESS_NATIVE=0)" in off
    js = json.loads(_measure_cli(fw, "--platform", "sev-snp", "--explain", "--json", native_on=True).stdout)
    assert js["snp_chain"].startswith("SNP chain: C fold")
    assert on.replace(on[on.index("  SNP chain"):], "") == off.replace(off[off.index("  SNP chain"):], "")

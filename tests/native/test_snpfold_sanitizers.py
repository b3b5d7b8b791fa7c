"""The C fold built with AddressSanitizer and UndefinedBehaviorSanitizer (gcc's
runtimes, preloaded into a fresh interpreter), driven over the awkward inputs:
short and empty page data, None units, 2 MiB and 8 KiB page sizes, threads,
and every refused argument.  Any sanitizer report fails the test; digests are
checked against sev-snp-measure's GCTX in the same run.  libcrypto itself is
not instrumented: what SHA384_Update reads and SHA384_Final writes is checked
by those digests (an over-read of short page data changes them), the fold's
own copies, padding and index arithmetic by the sanitizers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from harness import native

ROOT = Path(__file__).resolve().parents[2]

DRIVER = r'''
import os, sys
from importlib.machinery import ExtensionFileLoader, ModuleSpec
path = sys.argv[1]
loader = ExtensionFileLoader("_snpfold", path)
f = loader.create_module(ModuleSpec("_snpfold", loader, origin=path))
loader.exec_module(f)
from harness.measure import measure_snp
from sevsnpmeasure import gctx
measure_snp._native = f
measure_snp.NATIVE_MIN_UNITS = 0
measure_snp._NATIVE_BATCH = 8
measure_snp.NATIVE_THREADS_MIN_UNITS = 0
d = bytes(range(256)) * (3 * 0x200000 // 256)
v = memoryview(d)

def oracle(gpa, items, ps):
    g = gctx.GCTX()
    for i, it in enumerate(items):
        g.update_normal_pages(gpa + i * ps, bytes(ps) if it is None else bytes(it) + bytes(ps - len(it)))
    return g.ld()

cases = [([v[i * 4096:(i + 1) * 4096] for i in range(300)], 4096),
         ([b"", d[:1], d[:4095], None, bytearray(d[:4096])] * 40, 4096),
         ([v[:0x200000], None, d[0x200000:0x200000 + 4097], b"", d[:1]], 0x200000),
         ([d[:0x2000], None, d[:0x1001]] * 30, 0x2000)]
for items, ps in cases:
    for w in (1, 2, 3):
        ld = measure_snp.SnpLaunchDigest()
        ld.normal_page_list(0x100000, items, ps, workers=w)
        assert ld.ld == oracle(0x100000, items, ps), (ps, w)
bad = [lambda: f.chain(bytes(48), 0, [bytes(4097)], 4096),
       lambda: f.chain(bytes(47), 0, [], 4096),
       lambda: f.chain(bytes(48), (1 << 64) - 4096, [None, None], 4096),
       lambda: f.chain(bytes(48), 0, [None, 12345], 4096),
       lambda: f.contents([None], 4096, 0, 1, bytearray(47)),
       lambda: f.contents([None, None], 4096, 1, 0, bytearray(48)),
       lambda: f.fold(bytes(48), 0, bytes(49))]
for call in bad:
    try:
        call()
    except (ValueError, TypeError, OverflowError, IndexError):
        continue
    raise SystemExit("accepted a bad argument")
print("sanitized fold ok")
'''


def _runtime(name: str) -> str | None:
    out = subprocess.run(["gcc", f"-print-file-name={name}"], capture_output=True, text=True).stdout.strip()
    return out if os.path.isabs(out) and os.path.exists(out) else None


def test_fold_under_asan_and_ubsan(tmp_path):
    if shutil.which("gcc") is None:
        pytest.skip("no gcc on PATH for the sanitizer build (set-up installs gcc)")
    asan, ubsan = _runtime("libasan.so"), _runtime("libubsan.so")
    assert asan and ubsan, "gcc's libasan/libubsan runtimes are missing (Debian: libgcc-12-dev)"
    so = tmp_path / ("_snpfold" + sysconfig.get_config_var("EXT_SUFFIX"))
    cc = subprocess.run(["gcc", "-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                         "-fno-omit-frame-pointer", "-fPIC", "-shared", "-Wall", "-Wextra", "-Werror",
                         f"-I{sysconfig.get_paths()['include']}", native.source_path("_snpfold"),
                         "-o", str(so), "-lcrypto"], capture_output=True, text=True, timeout=300)
    assert cc.returncode == 0, cc.stderr[-800:]
    # PYTHONMALLOC=malloc: small objects from malloc, not pymalloc arenas ASan cannot see into
    env = dict(os.environ, LD_PRELOAD=f"{asan} {ubsan}", PYTHONMALLOC="malloc",
               ASAN_OPTIONS="detect_leaks=0:abort_on_error=0",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    r = subprocess.run([sys.executable, "-c", DRIVER, str(so)], capture_output=True, text=True, env=env,
                       cwd=ROOT, timeout=600)
    assert r.returncode == 0 and "sanitized fold ok" in r.stdout, r.stderr[-3000:]
    assert "ERROR: AddressSanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr[-3000:]

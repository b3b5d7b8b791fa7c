"""Compile the harness's C extension modules into the harness cache.

``cc`` from PATH (or ``$CC``), the running interpreter's headers (Debian:
python3-dev) and, for ``_snpfold``, libcrypto's headers and link library
(Debian: libssl-dev).  A missing piece is one error line naming the package;
a build is written beside its final place and renamed into it, so a reader
never loads half a file and a failed or interrupted build leaves nothing.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import sys

from harness import native
from harness.errors import HarnessError

#: Which Debian package provides a header a build may miss.
HEADER_PACKAGES = {"Python.h": "python3-dev", "openssl/sha.h": "libssl-dev",
                   "openssl/opensslv.h": "libssl-dev"}
#: Link libraries and their Debian development packages.
LIB_PACKAGES = {"-lcrypto": "libssl-dev"}


def _compiler() -> list[str]:
    cc = shlex.split(os.environ.get("CC", "")) or ["cc"]
    if shutil.which(cc[0]) is None:
        raise HarnessError(f"no C compiler: {cc[0]!r} is not on PATH (install gcc, or set CC)")
    return cc


def _python_include() -> str:
    import sysconfig  # build time only (costs ~5 ms of imports)

    inc = sysconfig.get_paths()["include"]
    if not os.path.exists(os.path.join(inc, "Python.h")):
        raise HarnessError(f"no Python.h in {inc} for {sys.executable} "
                           f"(install {HEADER_PACKAGES['Python.h']} for this interpreter)")
    return inc


def _explain(name: str, stderr: str) -> str:
    """One line for a failed compile: the missing header's package, else cc's first error."""
    for header, package in HEADER_PACKAGES.items():
        if f"{header}: No such file" in stderr:
            return f"building {name}: {header} not found (install {package})"
    for lib, package in LIB_PACKAGES.items():
        if f"cannot find {lib}" in stderr:
            return f"building {name}: the linker cannot find {lib} (install {package})"
    first = next((ln for ln in stderr.splitlines() if "error" in ln), stderr.strip()[:300])
    return f"building {name} failed: {first.strip()}"


def build(name: str = "_snpfold", force: bool = False) -> tuple[str, bool]:
    """Build ``name`` unless its cache entry exists; (path, built now)."""
    if name not in native.SOURCES:
        raise HarnessError(f"no native module {name!r}; known: {', '.join(native.SOURCES)}")
    dest = native.module_path(name)
    if os.path.exists(dest) and not force:
        return dest, False
    cc = _compiler()
    inc = _python_include()
    directory = os.path.dirname(dest)
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".tmp-{os.getpid()}-{os.path.basename(dest)}")
    cmd = [*cc, *native.CFLAGS, f"-I{inc}", native.source_path(name), "-o", tmp,
           *native.LIBS.get(name, ())]
    try:
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                                 timeout=300)
        except subprocess.TimeoutExpired:
            raise HarnessError(f"building {name}: {cc[0]} ran over 300 s") from None
        if res.returncode != 0:
            raise HarnessError(_explain(name, res.stderr))
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    native.forget()
    mod, line = native.status(name)
    if mod is None:
        raise HarnessError(f"built {dest} but {line}")
    return dest, True


def ensure(name: str = "_snpfold"):
    """The module ``name``, built now when absent and loaded whatever
    ENV_SWITCH says: for the tests and benchmarks of the module itself."""
    build(name)
    mod, line = native.status(name, honour_switch=False)
    if mod is None:
        raise HarnessError(line)
    return mod

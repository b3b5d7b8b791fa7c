"""The harness's own C extension modules: where they live, loading them, why one is absent.

Each module is C written for the harness (its source beside this file) and
compiled by ``igvm-harness native build`` (set-up runs it; :mod:`.build`)
into the harness cache, never into the work tree::

    <cache>/native/<ABI tag>/<key>/<module><extension suffix>

``<ABI tag>`` is the interpreter's extension tag (``cpython-311-x86_64-linux-gnu``),
``<key>`` the SHA-256 of the source and the compile line, so an edited source
or another Python never loads a stale build.  Code using a module keeps a
pure-Python path for when it is absent: :func:`load` returns the module or
None, :func:`status` says why it is absent.  ``IGVM_HARNESS_NATIVE=0``
turns every module off (the pure-Python paths then run).

Start-up cost matters (issue 12): ``igvm-harness --help`` imports this
package (through :mod:`.commands`), so at import it loads only ``os``;
hashlib and the extension loader come when a module is looked up, and
``measure`` looks one up only for runs long enough to gain from C.
"""

from __future__ import annotations

import os

#: module name -> its C source (in this directory).
SOURCES = {"_snpfold": "snpfold.c"}

#: The compile line (the build adds -I<Python include dir> and the output).
CFLAGS = ("-O2", "-fPIC", "-shared", "-Wall", "-Wextra", "-Werror", "-fvisibility=hidden")
#: Libraries linked: the system libcrypto (SHA-384, the same as hashlib's OpenSSL).
LIBS = {"_snpfold": ("-lcrypto",)}

#: Set to "0" to use the pure-Python paths even when a module is built.
ENV_SWITCH = "IGVM_HARNESS_NATIVE"

_HERE = os.path.dirname(os.path.abspath(__file__))
_loaded: dict[str, object] = {}
_origins: dict[str, str] = {}
_reasons: dict[str, str] = {}


def cache_dir() -> str:
    """``<cache>/native`` (harness.cache owns the layout; its string form
    keeps pathlib off the start-up path)."""
    from harness import cache

    return os.path.join(cache.root_str(), cache.NATIVE)


def _suffix() -> str:
    import _imp  # built in; importlib.machinery.EXTENSION_SUFFIXES is this list

    return _imp.extension_suffixes()[0]  # ".cpython-311-x86_64-linux-gnu.so"


def _loader_classes():
    """importlib.machinery's ExtensionFileLoader and ModuleSpec, taken from the
    frozen import system CPython has already loaded: importing
    importlib.machinery costs ~0.6 ms, most of what the fold saves on a
    4 MiB firmware image."""
    import sys

    ext, boot = sys.modules.get("_frozen_importlib_external"), sys.modules.get("_frozen_importlib")
    if ext is None or boot is None:
        from importlib.machinery import ExtensionFileLoader, ModuleSpec
        return ExtensionFileLoader, ModuleSpec
    return ext.ExtensionFileLoader, boot.ModuleSpec


def abi_tag() -> str:
    """This interpreter's extension ABI tag, from its first extension suffix."""
    suffix = _suffix()
    return suffix.strip(".").rsplit(".", 1)[0] if suffix.count(".") > 1 else "abi"


def source_path(name: str) -> str:
    return os.path.join(_HERE, SOURCES[name])


def key(name: str) -> str:
    """SHA-256 of the module's source and its compile line."""
    import hashlib

    h = hashlib.sha256()
    with open(source_path(name), "rb") as fh:
        h.update(fh.read())
    h.update(repr((CFLAGS, LIBS.get(name, ()))).encode())
    return h.hexdigest()


def module_path(name: str) -> str:
    """Where the build of ``name`` for this interpreter and source lives."""
    return os.path.join(cache_dir(), abi_tag(), key(name), name + _suffix())


def disabled() -> bool:
    return os.environ.get(ENV_SWITCH, "1").strip().lower() in ("0", "off", "no", "false")


def load(name: str, honour_switch: bool = True):
    """The built module ``name``, or None (then :func:`status` says why).
    Looked up once per process; ``honour_switch=False`` loads it even when
    ENV_SWITCH turns the modules off (tests and benchmarks of the module)."""
    if honour_switch and name in _loaded:
        return _loaded[name]
    mod = None
    if honour_switch and disabled():
        _reasons[name] = f"turned off by {ENV_SWITCH}={os.environ.get(ENV_SWITCH)}"
    else:
        mod = _load_file(name)
    if honour_switch:
        _loaded[name] = mod
    return mod


def _load_file(name: str):
    """Load ``name`` from its cache entry, or None with the reason recorded."""
    try:
        path = module_path(name)
    except OSError as exc:
        _reasons[name] = f"its source is unreadable ({exc.strerror}: {exc.filename})"
        return None
    if not os.path.exists(path):
        _reasons[name] = f"not built (no {path}): run `igvm-harness native build`"
        return None
    loader_class, spec_class = _loader_classes()
    try:
        loader = loader_class(name, path)
        mod = loader.create_module(spec_class(name, loader, origin=path))
        loader.exec_module(mod)
    except ImportError as exc:
        _reasons[name] = f"{path} does not load ({exc}): rebuild with `igvm-harness native build --force`"
        return None
    _origins[name] = path
    return mod


def status(name: str, honour_switch: bool = True) -> tuple[object | None, str]:
    """(module or None, one line: where it was loaded from, or why it is absent)."""
    mod = load(name, honour_switch)
    if mod is not None:
        return mod, f"{name}: built, loaded from {_origins[name]}"
    return None, f"{name}: absent: {_reasons.get(name, 'unknown reason')}"


def forget() -> None:
    """Drop what :func:`load` remembered (after a build, or in tests)."""
    _loaded.clear()
    _origins.clear()
    _reasons.clear()

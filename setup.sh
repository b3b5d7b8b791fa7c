#!/usr/bin/env bash
# Set up igvm-harness on a Debian machine (root, or a user with sudo).
# Idempotent: rerunning only does what is missing.
#   1. system packages (apt-get), Node.js/npm when the machine has none
#   2. .venv with the harness installed editable (+ dev extras)
#   3. Debian's OVMF builds, kernel and busybox (`igvm-harness firmware fetch`:
#      private apt configuration, pinned, cached)
#   4. the harness's C extension modules (`igvm-harness native build`: the SNP
#      chain fold) into the harness cache
#   4b. the CI tools pinned in ci-examples/tools (npm ci into the harness cache)
#   5. the reference oracle (`igvm-harness oracle build`: tools/igvm-oracle, the
#      igvm crate from crates.io, built with cargo into the cache)
#   6. the QEMU-under-test with IGVM, built from Debian's qemu source package
#      into ${XDG_CACHE_HOME:-~/.cache}/igvm-harness and linked with the real
#      libigvm: a system igvm >= 0.3 (pkg-config), else the igvm crate from
#      crates.io (tools/igvm-c, cargo + cbindgen), else the harness's own C
#      library as the named fallback (skipped when $QEMU already names a QEMU
#      with igvm-cfg; cached otherwise)
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"

say() { printf 'setup: %s\n' "$*" >&2; }

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo -n)
else
    say "need root or sudo to install system packages"; exit 2
fi
export DEBIAN_FRONTEND=noninteractive

# Packages for the harness itself; QEMU's build dependencies are data in
# harness/qemu/deps.py and are installed by `qemu build --install-deps` below.
SYSTEM_PACKAGES=(
    python3 python3-venv
    build-essential binutils make git ca-certificates
    pkgconf xz-utils patch
    chromium    # tests/report/test_browser.py renders the HTML reports headless
    # Debian's stock QEMU (bookworm: 7.2, no IGVM, no -run-with exit-with-parent),
    # beside the QEMU-under-test and never chosen as it (harness/qemu/discover.py
    # takes a PATH QEMU only with igvm-cfg): the tests of the "QEMU without IGVM"
    # and PR_SET_PDEATHSIG reaping paths use it as /usr/bin/qemu-system-x86_64.
    qemu-system-x86
    clang       # libFuzzer target of the C library (tests/untrusted/test_fuzz.py)
    cpio        # tests/runner/test_initrd.py cross-checks the harness initrd with GNU cpio
    dosfstools mtools  # tests/runner/test_fat.py cross-checks the harness's FAT boot disk (fsck.fat, mcopy)
    distro-info-data  # Debian's release table: the newer suites of the private apt configuration (harness/debian/releases.py)
    rsync       # gitlab-ci-local copies each job's checkout and artifacts with it (tests/ci/test_gitlab_pipeline.py)
    curl        # the GitLab example's dashboard job fetches the previous dashboard with it (ci-examples/gitlab-ci/gitlab-ci.yml; tests/ci/test_gitlab_pipeline.py)
    cbindgen    # igvm.h / igvm_defs.h from the igvm crate's sources for the QEMU-under-test (harness/qemu/libigvm.py)
    # harness/native (igvm-harness native build): the C fold of the SNP chain
    gcc python3-dev libssl-dev
)

missing=()
for p in "${SYSTEM_PACKAGES[@]}"; do
    dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' || missing+=("$p")
done
# Versions of the harness before the private apt configuration (harness/debian)
# wrote a deb-src file into /etc/apt; remove it, and only it, if it is ours.
OLD_SRC=/etc/apt/sources.list.d/igvm-harness-src.sources
if [ -f "$OLD_SRC" ] && head -n1 "$OLD_SRC" | grep -q '^# Written by igvm-harness'; then
    say "removing $OLD_SRC (written by an earlier igvm-harness; now private)"
    "${SUDO[@]}" rm -f "$OLD_SRC"
fi
say "apt-get update"
"${SUDO[@]}" apt-get update -q >/dev/null
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]}"
    "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
else
    say "system packages present"
fi

# Node.js and npm for the CI tools pinned in ci-examples/tools (gitlab-ci-local
# runs the GitLab example pipeline in tests/ci): Debian's nodejs and npm when
# the machine has none (bookworm: Node 18, which gitlab-ci-local 4.65.0 runs
# on); a node the machine already has (NodeSource's, say, which bundles npm)
# is kept, never replaced by Debian's.
node_missing=()
command -v node >/dev/null 2>&1 || node_missing+=(nodejs)
command -v npm >/dev/null 2>&1 || node_missing+=(npm)
if [ "${#node_missing[@]}" -gt 0 ]; then
    say "installing ${node_missing[*]} (Debian's) for the pinned CI tools"
    "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${node_missing[@]}" >/dev/null
fi

# clang's libFuzzer and sanitizer runtimes (libclang_rt.fuzzer, .asan, .ubsan)
# are a package of their own, which clang only recommends: Debian names it
# libclang-rt-<LLVM major>-dev.  Found by what the fuzz target links
# (libigvm/Makefile `fuzz`: -fsanitize=fuzzer,address,undefined),
# the major taken from the installed clang's resource directory, never a
# hard-coded version.
clang_runtime_links() {
    local dir rc=0
    dir="$(mktemp -d)"
    printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n)\n{ (void)d; (void)n; return 0; }\n' >"$dir/t.c"
    clang -fsanitize=fuzzer,address,undefined -o "$dir/t" "$dir/t.c" >"$dir/log" 2>&1 || rc=$?
    [ "$rc" -eq 0 ] || tail -n 3 "$dir/log" >&2
    rm -rf "$dir"
    return "$rc"
}
if command -v clang >/dev/null 2>&1 && ! clang_runtime_links 2>/dev/null; then
    resource="$(clang -print-resource-dir)"
    major="$(printf '%s\n' "$resource" | sed -n 's|^/usr/lib/llvm-\([0-9][0-9]*\)/.*|\1|p')"
    [ -n "$major" ] || major="$(clang -dumpversion | cut -d. -f1)"
    say "clang $(clang -dumpversion) cannot link -fsanitize=fuzzer: installing libclang-rt-$major-dev"
    "${SUDO[@]}" apt-get install -y -q --no-install-recommends "libclang-rt-$major-dev" >/dev/null
    if ! clang_runtime_links; then
        say "clang still cannot link -fsanitize=fuzzer,address,undefined after installing libclang-rt-$major-dev"
        exit 1
    fi
fi

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys' 2>/dev/null; then
    say "creating .venv"
    python3 -m venv .venv
fi
say "installing igvm-harness into .venv (pip install -e '.[dev]')"
# editable_mode=compat: a plain path entry in a .pth file instead of
# setuptools' import-hook finder, which costs every igvm-harness process
# ~10 ms of imports at start-up (importlib.util, pathlib; issue 12's budget)
.venv/bin/pip install -q --disable-pip-version-check -e '.[dev]' --config-settings editable_mode=compat

say "building the harness's C modules (igvm-harness native build; cached)"
.venv/bin/igvm-harness native build

say "installing the pinned CI tools (ci-examples/tools: gitlab-ci-local, action-validator; cached)"
ci-examples/tools/install.sh >/dev/null

# The igvm crate needs cargo (rustup's: Debian 12's cargo 1.65 cannot read the locks) and
# crates.io; without them (an air-gapped lab) the oracle's tests skip naming
# that, and the QEMU build links the own C library as the named fallback.
say "building the reference oracle: the igvm crate from crates.io (igvm-harness oracle build; cached)"
oracle=0
.venv/bin/igvm-harness oracle build >/dev/null || oracle=$?
if [ "$oracle" -eq 3 ]; then
    say "warning: no reference oracle (see above): its tests will skip and QEMU links the own libigvm;"
    say "  .ci/run admits those skips only where crates.io is unreachable (.ci/skip-allow.toml): install a Rust toolchain (rustup)"
elif [ "$oracle" -ne 0 ]; then
    say "the reference oracle (tools/igvm-oracle) does not build"; exit 1
fi

say "fetching Debian firmware, kernel and busybox (cached after the first run)"
.venv/bin/igvm-harness firmware fetch >/dev/null

# QEMU-under-test: keep an IGVM-capable QEMU named by $QEMU or found on PATH;
# otherwise build one (cached: a rerun only checks the source is unchanged).
if found="$(.venv/bin/python - <<'PY'
import sys
from harness.errors import HarnessError
from harness.qemu import build, discover
from harness.qemu.probe import probe
try:
    # a cache directory that does not exist: look at $QEMU and PATH only
    found, _ = discover.find(cache=build.cache_root() / "nonexistent")
    if found and probe(found.path).has("igvm-cfg"):
        print(f"{found.path} ({found.how})")
        sys.exit(0)
    if found:
        print(f"setup: {found.path} ({found.how}) lacks igvm-cfg", file=sys.stderr)
except HarnessError as exc:
    print(f"setup: {exc}", file=sys.stderr)
sys.exit(1)
PY
)"; then
    say "using $found: it has igvm-cfg; not building QEMU"
else
    say "building the QEMU-under-test (cached after the first run)"
    .venv/bin/igvm-harness qemu build --install-deps
fi
# As pip does for the packages it installs: bytecode of the harness, and
# pytest's assertion-rewritten plugins, conftests and tests, so that with
# PYTHONDONTWRITEBYTECODE set no pytest process parses them again
# (harness/bytecode.py: 2.2 -> 0.6 s a process).  Last, after everything a
# collection may look at is in place.
say "compiling the harness's bytecode and pytest's rewritten modules (harness/bytecode.py)"
.venv/bin/python -m harness.bytecode . >/dev/null ||
    say "warning: bytecode not cached (above); the tests run, each pytest process slower"
say "done: run the tests with .venv/bin/python -m pytest"

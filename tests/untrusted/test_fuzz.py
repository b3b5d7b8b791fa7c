"""Fuzzing in the test suite: the regression corpus and the seeds replayed,
a hypothesis property over mutated seeds, and short bounded runs of both
coverage-guided targets (atheris for Python, libFuzzer for the C library),
so that CI runs them; what each run found is then compared with the igvm
crate from crates.io (the reference) and the other implementations.
Longer runs: README.md, "Fuzzing"."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from fuzz import seeds
from fuzz.fuzz_igvm import check_input
from tests.reference.conftest import igvm_check, libigvm_build, oracle_binary  # noqa: F401  (fixtures)
from tests.untrusted import hostile

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).parent / "corpus"
LIBIGVM = ROOT / "libigvm"
RUN_SECONDS = 4  # per target: a smoke run in CI, the README has the long command

SEEDS = seeds.seeds()
#: The inputs of issue 13 that blew a bound, made by the harness's own
#: builder (tests/untrusted/hostile.py) rather than committed as files.
GENERATED = {
    "parameter-area-2p62": lambda: hostile.parameter_area(1 << 62),  # MemoryError traceback
    "parameter-area-2p40": lambda: hostile.parameter_area(1 << 40),  # minutes, > 2 GiB
    "relocation-overlap-64": lambda: hostile.relocation_regions(64, overlap_last=True),
    "bad-headers-512": lambda: hostile.bad_headers(512),
}
#: Inputs a fuzzer found (its crash-/timeout-/oom- artifacts), kept as files.
FOUND = sorted(p for p in CORPUS.iterdir() if p.name != "README.md") if CORPUS.is_dir() else []


def regressions() -> dict[str, bytes]:
    """Every regression input by name: the generated ones and the found ones."""
    return {**{name: make() for name, make in GENERATED.items()},
            **{p.name: p.read_bytes() for p in FOUND}}


def test_regression_corpus_is_there():
    assert len(regressions()) >= 4


@pytest.mark.parametrize("name", [*GENERATED, *(p.name for p in FOUND)])
def test_regression_inputs_hold(name):
    check_input(regressions()[name])


def test_every_seed_holds():
    assert len(SEEDS) > 100  # every mutator on every base
    for name, data in SEEDS.items():
        check_input(data)


_SEED_LIST = sorted(SEEDS.values(), key=len)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(_SEED_LIST), st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)),
                                            max_size=8), st.integers(0, 64))
def test_mutated_seeds_hold(seed, flips, cut):
    """Without coverage guidance (the property atheris drives), byte flips and
    truncation of the seeds."""
    data = bytearray(seed)
    for pos, value in flips:
        if data:
            data[pos % len(data)] = value
    if cut and len(data) > cut:
        data = data[:-cut]
    check_input(bytes(data))


def _corpus(tmp_path: Path) -> Path:
    d = tmp_path / "corpus"
    seeds.write(d)
    for name, data in regressions().items():
        (d / name).write_bytes(data)
    return d


@pytest.fixture(scope="module")
def atheris_run(tmp_path_factory):
    """A bounded atheris run; its corpus directory grows with the inputs it found."""
    if importlib.util.find_spec("atheris") is None:
        pytest.skip("atheris is not installed for this Python (pip install atheris); "
                    "the hypothesis property above covers the same target")
    tmp_path = tmp_path_factory.mktemp("atheris")
    corpus = _corpus(tmp_path)
    res = subprocess.run(
        [sys.executable, str(ROOT / "fuzz" / "fuzz_igvm.py"), f"-max_total_time={RUN_SECONDS}",
         "-rss_limit_mb=2048", "-timeout=20", f"-artifact_prefix={tmp_path}/", str(corpus)],
        capture_output=True, text=True, timeout=RUN_SECONDS + 120, cwd=tmp_path)
    artifacts = [p.name for p in tmp_path.iterdir() if p.name.startswith(("crash-", "timeout-",
                                                                          "oom-", "leak-"))]
    return res, artifacts, corpus


def test_atheris_bounded_run(atheris_run):
    res, artifacts, _ = atheris_run
    assert res.returncode == 0 and not artifacts, res.stderr[-3000:]
    assert "Done" in res.stderr


@pytest.fixture(scope="module")
def fuzz_igvm(tmp_path_factory):
    if shutil.which("clang") is None:
        pytest.skip("no clang for the libFuzzer target (apt-get install clang; setup.sh does)")
    build = tmp_path_factory.mktemp("fuzz-build")
    res = subprocess.run(["make", "-s", "-C", str(LIBIGVM), f"BUILDDIR={build}", "fuzz"],
                         capture_output=True, text=True, timeout=300)
    # clang's runtimes (libclang_rt.fuzzer/.asan/.ubsan) are Debian's
    # libclang-rt-<major>-dev, which setup.sh installs: a failure here is a
    # missing set-up step, never a skip.
    assert res.returncode == 0, ("the libFuzzer target does not build (setup.sh installs clang's"
                                 f" runtime, libclang-rt-<LLVM major>-dev):\n{res.stderr[-2000:]}")
    return build / "fuzz-igvm"


@pytest.fixture(scope="module")
def libfuzzer_run(tmp_path_factory, fuzz_igvm):
    """A bounded libFuzzer run of the C library; its corpus grows with what it found."""
    tmp_path = tmp_path_factory.mktemp("libfuzzer")
    corpus = _corpus(tmp_path)
    res = subprocess.run(
        [str(fuzz_igvm), f"-max_total_time={RUN_SECONDS}", "-rss_limit_mb=2048", "-timeout=20",
         f"-artifact_prefix={tmp_path}/", str(corpus)],
        capture_output=True, text=True, timeout=RUN_SECONDS + 120, cwd=tmp_path)
    return res, corpus


def test_libfuzzer_bounded_run(libfuzzer_run):
    res, _ = libfuzzer_run
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Done" in res.stderr


def test_libfuzzer_replays_the_regressions(tmp_path, fuzz_igvm):
    """The C target on each kept input (libFuzzer runs files given by name once)."""
    kept = tmp_path / "regressions"
    kept.mkdir()
    for name, data in regressions().items():
        (kept / name).write_bytes(data)
    res = subprocess.run([str(fuzz_igvm), *map(str, sorted(kept.iterdir()))], capture_output=True,
                         text=True, timeout=120, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]


# ---------------------------------------------------------------- against the crate
# What both fuzzers found (their grown corpora) goes to the three implementations
# (tests/reference/test_three_way.py): the igvm crate from crates.io (the reference),
# the own C library and the Python validator must agree on every input, verdict and
# error class; an input on which the crate panics must be refused by the other two.

def _agree_with_the_crate(corpus: Path, igvm_check: Path, tmp_path: Path, which: str) -> None:
    from tests.reference.conftest import record_counts
    from tests.reference.test_three_way import compare_three

    blobs = {f"{which}:{p.name}": p.read_bytes() for p in sorted(corpus.iterdir()) if p.is_file()}
    counts, problems = compare_three(blobs, igvm_check, tmp_path)
    record_counts(f"three-way, {which} corpus after its run", counts)
    assert counts["inputs"] >= len(set(SEEDS.values()))  # the seeds, content-named, and more
    assert not problems, f"{len(problems)} differences:\n" + "\n".join(problems[:40])


def test_atheris_corpus_agrees_with_the_crate(atheris_run, oracle_binary, igvm_check, tmp_path):
    _agree_with_the_crate(atheris_run[2], igvm_check, tmp_path, "atheris")


def test_libfuzzer_corpus_agrees_with_the_crate(libfuzzer_run, oracle_binary, igvm_check, tmp_path):
    _agree_with_the_crate(libfuzzer_run[1], igvm_check, tmp_path, "libFuzzer")

"""Fuzz targets (see README.md, "Fuzzing"): ``fuzz_igvm.py`` for the Python
parser / validator / describer / QEMU lint / launch predictor (atheris), and
``libigvm/fuzz/fuzz_igvm.c`` for the C library (libFuzzer).
Both start from the corpus :mod:`fuzz.seeds` writes."""

"""Running the IGVM suite and the certification profile from Avocado.

Labs whose automation is Avocado (``avocado run``) can run the harness
without a second scheduler: :mod:`harness.avocado.igvm_tests` holds
Avocado-instrumented tests that wrap the two entry points

* ``IgvmCertify.test`` -- the certification profile on ``-p igvm=FILE``
  (``-p platform=``, ``-p qemu=``, ``-p accel=``), one Avocado test whose log
  lists every check, with the JSON/JUnit/HTML reports in the test's output
  directory (kept by Avocado with the job results);
* ``IgvmSuite.test`` -- ``pytest suites/`` for ``-p platform=`` / ``-p accel=``,
  with the harness's reports and pytest's JUnit XML in the output directory.

Why a wrapper and not one Avocado test per pytest case: Avocado resolves
instrumented tests statically (by reading the Python file), while the
suite's cases are generated at collection time from the expectations data and
the vendor image; splitting them into Avocado tests would mean a second
collector kept in step with pytest's.  Per-check verdicts are in the JSON and
JUnit files instead, which Avocado keeps and CI systems read.

Avocado's own utilities are used where they replace our code:
``avocado.utils.process.run`` (command with timeout, output captured into
the job log), the test's ``outputdir`` (artifacts kept with the job), and
parameters / variants (``-p`` or a yaml_to_mux file such as
``harness/avocado/variants.yaml``) in place of a matrix loop.

Install with ``pip install 'igvm-harness[avocado]'``; run e.g.::

    avocado run harness/avocado/igvm_tests.py:IgvmCertify.test \\
        -p igvm=vendor.igvm -p platform=sev-es
"""

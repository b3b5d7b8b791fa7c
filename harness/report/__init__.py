"""Reports: the results model and everything rendered from it.

- :mod:`model` -- ``Report`` / ``Check`` / ``Evidence`` / ``MatrixCell``; verdicts
  ``pass fail error boundary predicted skip xfail xpass`` ("boundary": ran as
  far as the host allows; "predicted": computed, nothing on the host confirmed
  it; neither is a pass);
- :mod:`text` -- every string made safe (escape sequences, control
  characters, what XML cannot hold) before any writer renders it;
- :mod:`schema` -- versioned JSON Schemas (``schema/results-v1.schema.json``,
  ``schema/dashboard-v1.schema.json``) and validation through ``jsonschema``;
- :mod:`fingerprint` -- environment fingerprint (harness, QEMU version and
  probe, kernel, CPU, SEV firmware, image SHA-256);
- :mod:`writers` -- ``write_all(report, dir)``: JSON, JUnit XML (``junitparser``)
  and one self-contained HTML page (Jinja2, :mod:`html`);
- :mod:`merge` -- many hosts' results (and earlier dashboards) into one
  dashboard with per-cell history;
- :mod:`pytest_collect` -- pytest plugin that turns a session into a report;
- :mod:`matrix_run` -- ``matrix run``: QEMU builds x platforms x accelerators;
- :mod:`commands` -- CLI: ``certify``, ``report merge|validate|render``,
  ``matrix run``.
"""

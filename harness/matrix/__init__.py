"""The directive x platform conformance matrix: cells generated from
:mod:`harness.expect`, one IGVM fixture per cell (:mod:`.recipes`), a QEMU
run per cell (:mod:`.execute`) and the report (:mod:`.report`)."""

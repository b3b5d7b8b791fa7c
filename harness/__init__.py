"""igvm-harness: a conformance harness for QEMU's IGVM support.

Layers (lower never import higher): ``igvm`` (format), ``measure``,
``qemu`` (build, probe, command line, runner), ``guests``, ``expect``,
then the pytest ``plugin``, ``report`` and ``cli``.
"""

__version__ = "0.1.0"

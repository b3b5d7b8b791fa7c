"""Debian packages through an apt configuration of the harness's own.

``sources`` reads the machine's apt entries (both formats) to find the Debian
archive it already uses; ``apt`` builds a private configuration from it (own
sources file, lists and cache under the harness cache) so that neither the
QEMU source download nor the firmware fetch ever writes to /etc/apt;
``version`` orders Debian versions without python3-apt.  Knows nothing of
QEMU or pytest.
"""

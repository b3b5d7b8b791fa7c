"""The payloads the matrix boots, built by harness.guests.build.

``payload64-ghcb`` is ``payload64`` with the GHCB-page I/O of
``fixtures/guests/ghcb/io_ghcb_page.s`` instead of ``io_ghcb.s`` (same entry
points, same guest logic otherwise).  It is registered here as a thin adapter
to the guest builder's table.
"""

from __future__ import annotations

from harness.guests import build as gb

GHCB_GUEST = gb.GuestSpec(
    "payload64-ghcb", ("payload64.s", "ghcb/io_ghcb_page.s"), 64, 0x100000, "_start",
    "payload64 with console and exit through a shared GHCB page (SEV-ES/SEV-SNP)")

MATRIX_GUESTS = ("reset16", "payload64", "payload64-ghcb")


def guest_images(cache=None) -> dict:
    """name -> GuestImage for every payload the matrix uses (cached builds)."""
    gb.GUESTS.setdefault(GHCB_GUEST.name, GHCB_GUEST)
    return {name: gb.build_guest(name, cache) for name in MATRIX_GUESTS}

"""The payloads the matrix boots (all registered in harness.guests.build).

``reset-long`` (fixtures/guests/ghcb/reset_long.s) is the reset-vector page
that enters the same 64-bit payload without a VP context.
``payload64-ghcb`` is ``payload64`` with the GHCB-page I/O of
``fixtures/guests/ghcb/io_ghcb_page.s`` instead of ``io_ghcb.s`` (same entry
points, same guest logic otherwise).
"""

from __future__ import annotations

from harness.guests import build as gb

MATRIX_GUESTS = ("reset-long", "payload64", "payload64-ghcb")


def guest_images(cache=None) -> dict:
    """name -> GuestImage for every payload the matrix uses (cached builds)."""
    return {name: gb.build_guest(name, cache) for name in MATRIX_GUESTS}

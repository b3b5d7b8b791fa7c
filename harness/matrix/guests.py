"""The payloads the matrix boots, built by harness.guests.build.

``reset-long`` (fixtures/guests/ghcb/reset_long.s) is the reset-vector page
that enters the same 64-bit payload without a VP context.
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

RESET_LONG = gb.GuestSpec(
    "reset-long", ("ghcb/reset_long.s",), 64, 0xF000, "start",
    "reset-vector page that enters payload64 in long mode (no VP context), for every platform")

MATRIX_GUESTS = ("reset-long", "payload64", "payload64-ghcb")


def guest_images(cache=None) -> dict:
    """name -> GuestImage for every payload the matrix uses (cached builds)."""
    for spec in (GHCB_GUEST, RESET_LONG):
        gb.GUESTS.setdefault(spec.name, spec)
    return {name: gb.build_guest(name, cache) for name in MATRIX_GUESTS}

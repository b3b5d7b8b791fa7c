"""Shared fixtures of the conformance suites (the harness's pytest plugin
provides qemu_binary, qemu_caps, accel, boot, guest_images, ...)."""

from __future__ import annotations

import pytest

from harness.fixtures.native import LongModeImage, reset_vector_image


@pytest.fixture
def reset_image(guest_images):
    """``reset_image(config=None) -> bytes``: the reset-vector guest as a
    native IGVM file."""
    return lambda config=None: reset_vector_image(guest_images["reset16"], config)


@pytest.fixture
def long_image(guest_images):
    """``long_image(**kw) -> LongModeImage``: the 64-bit payload behind a
    native VP context; add parameters/tasks/directives, then ``.build()``."""
    return lambda **kw: LongModeImage(guest_images["payload64"], **kw)

"""Expose several XLA host (CPU) devices, so ``devices=n`` of ``cfmimo_jax.se`` can split the
Monte-Carlo realizations over a CPU's cores. Imports nothing from JAX: call it before JAX
initialises its backends (``XLA_FLAGS`` is read then)."""

from __future__ import annotations

import os

HOST_DEVICES_FLAG = "--xla_force_host_platform_device_count"


def expose_host_devices(n: int) -> None:
    """Append ``--xla_force_host_platform_device_count=n`` to ``XLA_FLAGS`` when ``n > 1``;
    a count already in ``XLA_FLAGS`` (the user's) is kept. Accelerators are unaffected
    (``jax.devices()`` lists them first)."""
    flags = os.environ.get("XLA_FLAGS", "")
    if n > 1 and HOST_DEVICES_FLAG not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {HOST_DEVICES_FLAG}={n}".strip()

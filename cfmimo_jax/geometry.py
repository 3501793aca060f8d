"""Drops and wrap-around geometry (book section 5.3: square area with wrap-around)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def uniform_drop(key, n: int, side: float = 1000.0, dtype=None):
    """``n`` points uniform in the square ``[0, side]^2``: ``[n, 2]``."""
    dtype = dtype or jnp.result_type(float)
    return side * jax.random.uniform(key, (n, 2), dtype=dtype)


def wraparound_displacement(ap_pos, ue_pos, side: float = 1000.0):
    """Shortest horizontal displacement from each AP to each UE on the torus, ``[L, K, 2]``.

    Of the nine copies ``AP + s``, ``s in {-side, 0, side}^2``, the one nearest the UE is used
    (book section 5.3). ``ap_pos[L, 2]``, ``ue_pos[K, 2]``.
    """
    shifts = jnp.array([-side, 0.0, side], dtype=ap_pos.dtype)
    sx, sy = jnp.meshgrid(shifts, shifts, indexing="ij")
    s = jnp.stack([sx.ravel(), sy.ravel()], axis=-1)  # [9, 2]
    disp = ue_pos[None, :, None, :] - (ap_pos[:, None, None, :] + s[None, None, :, :])
    d2 = jnp.sum(disp**2, axis=-1)  # [L, K, 9]
    best = jnp.argmin(d2, axis=-1)
    return jnp.take_along_axis(disp, best[..., None, None], axis=2)[:, :, 0, :]


def ap_ue_geometry(ap_pos, ue_pos, side: float = 1000.0, height: float = 10.0):
    """3-D distance, azimuth and elevation from each AP to each UE, each ``[L, K]``.

    ``distance = sqrt(horizontal^2 + height^2)``, ``azimuth = atan2(dy, dx)``,
    ``elevation = asin(height / distance)``.
    """
    disp = wraparound_displacement(ap_pos, ue_pos, side)
    distance = jnp.sqrt(jnp.sum(disp**2, axis=-1) + height**2)
    azimuth = jnp.arctan2(disp[..., 1], disp[..., 0])
    elevation = jnp.arcsin(height / distance)
    return distance, azimuth, elevation

"""Vectorisable float32 sine/cosine and dB-to-amplitude conversion for the hot loops.

XLA's CPU backend evaluates ``jnp.sin`` / ``jnp.cos`` of float32 at about 100-200 M values/s on
this project's 2-core reference machine, which made them the largest cost of an AP-selection
window (``cfmimo_jax.envs.ap_selection``: a sine and a cosine per AP-UE pair and slot for the
phase, 64 of each per UE and slot for the shadowing field). ``sincos`` below is the classical
Cody-Waite reduction by multiples of ``pi / 2`` followed by the minimax polynomials of the
Cephes library's ``sinf`` / ``cosf`` (S. L. Moshier, *Methods and Programs for Mathematical
Functions*, 1989), written with plain arithmetic and selects, so XLA fuses it with its
neighbours and vectorises it, one range reduction shared by both outputs: about 1.3 G pairs/s
against 0.1 G for ``jnp.sin`` with ``jnp.cos`` on that machine (``bench/RESULTS_envs.md``).

Accuracy (float32, tested against NumPy float64 in ``tests/test_fastmath.py``): absolute error
below ``2e-7`` for ``|x| <= 8192`` (measured 7.8e-8; ``jnp.sin`` 3.2e-8); the three-part reduction
loses accuracy beyond that, where a float32 argument is itself only known to ``~1e-3``.
float64 inputs go to ``jnp.sin`` / ``jnp.cos`` (the polynomials are float32-accurate only).
"""

from __future__ import annotations

import math

import jax.numpy as jnp

# Cody-Waite split of pi / 2 (twice Cephes' DP1 + DP2 + DP3 for pi / 4; the first two have few
# mantissa bits, so y * _DP1 and y * _DP2 are exact for the quadrant counts y of |x| <= 8192).
_TWO_OVER_PI = 0.636619772367581343
_DP1, _DP2, _DP3 = 1.5703125, 4.837512969970703125e-4, 7.54978995489188216e-8
# Cephes sinf / cosf minimax coefficients on [-pi/4, pi/4].
_S1, _S2, _S3 = -1.6666654611e-1, 8.3321608736e-3, -1.9515295891e-4
_C1, _C2, _C3 = 4.166664568298827e-2, -1.388731625493765e-3, 2.443315711809948e-5


def sincos(x):
    """``(sin(x), cos(x))`` elementwise, same shape and dtype as ``x``.

    float32 (and lower): quadrant ``n = round(2 x / pi)``, ``r = x - n pi / 2`` (three-part
    Cody-Waite, ``|r| <= pi / 4``), ``sin r = r + r^3 P(r^2)``, ``cos r = 1 - r^2 / 2 + r^4 Q(r^2)``
    (Cephes), then ``n mod 4`` rotates them: ``(sin, cos)(x) = (s, c), (c, -s), (-s, -c),
    (-c, s)``. Absolute error ``< 2e-7`` for ``|x| <= 8192``; differentiable (the quadrant is
    piecewise constant, so the gradient is that of the polynomials, within ``1e-6`` of
    ``(cos x, -sin x)``). float64: ``(jnp.sin(x), jnp.cos(x))``.
    """
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"sincos needs a real floating-point array, got dtype {x.dtype}")
    if x.dtype == jnp.float64:
        return jnp.sin(x), jnp.cos(x)
    y = jnp.round(x * _TWO_OVER_PI)
    r = ((x - y * _DP1) - y * _DP2) - y * _DP3
    z = r * r
    s = ((_S3 * z + _S2) * z + _S1) * z * r + r
    c = ((_C3 * z + _C2) * z + _C1) * z * z - 0.5 * z + 1.0
    q = y.astype(jnp.int32) & 3  # two's complement: n mod 4 for negative n too
    swap = (q & 1) == 1
    sin_v = jnp.where(swap, c, s)
    cos_v = jnp.where(swap, s, c)
    sin_neg = (q & 2) == 2  # quadrants 2, 3
    cos_neg = (q == 1) | (q == 2)
    return jnp.where(sin_neg, -sin_v, sin_v), jnp.where(cos_neg, -cos_v, cos_v)


_LN10_OVER_20 = math.log(10.0) / 20.0


def db_to_amplitude(x_db):
    """``10^(x_dB / 20)`` (a power ratio in dB to an amplitude) as ``exp(x_dB ln(10) / 20)``:
    XLA vectorises ``exp`` but lowers a float ``pow`` to a much slower call on the CPU.
    ``x_db[...]`` -> same shape; relative error a few float32 ulps."""
    x_db = jnp.asarray(x_db)
    return jnp.exp(x_db * jnp.asarray(_LN10_OVER_20, x_db.dtype))


__all__ = ["sincos", "db_to_amplitude"]

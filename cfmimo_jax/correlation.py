"""Spatial correlation matrices: the local-scattering model for a uniform linear array.

Book section 2.6 (eq. (2.18) with a Gaussian angular distribution in azimuth and elevation).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from . import _validate as V

#: Truncation of the Gaussian angular densities, in standard deviations (tail mass 2e-9).
TRUNCATION = 6.0
#: ASD assumed for the node count when the ASD is traced (not a concrete number), radians.
ASD_MAX_TRACED = 0.6


@functools.cache
def _nodes(n: int):
    """Gauss-Legendre nodes on [-T, T] (standard deviations), Gaussian weights summing to 1."""
    x, w = np.polynomial.legendre.leggauss(n)
    x = TRUNCATION * x
    w = w * np.exp(-0.5 * x**2)
    return x, w / w.sum()


def quadrature_order(n_antennas: int, asd: float, spacing: float = 0.5) -> int:
    """Number of Gauss-Legendre nodes for one angular integral.

    The integrand oscillates at most at ``2 pi d_max`` radians per radian; the rule takes about
    2.5 nodes per oscillation (4 d_max T asd) over ``[-T asd, T asd]`` plus 24, which converges
    well below the
    1e-5 target (tests check it against direct integration).
    """
    d_max = spacing * (n_antennas - 1)
    return int(np.ceil(4.0 * d_max * TRUNCATION * asd)) + 24


def _is_zero(x) -> bool:
    return x is None or (not isinstance(x, jax.core.Tracer) and np.all(np.asarray(x) == 0))


def _order(n, n_antennas, asd, spacing):
    if n is not None:
        return V.positive_int("n_quad", n)
    a = V.concrete(asd)
    asd_max = ASD_MAX_TRACED if a is None else float(np.max(a))
    return quadrature_order(n_antennas, asd_max, spacing)


def local_scattering(
    n_antennas: int,
    azimuth,
    elevation,
    asd_azimuth,
    asd_elevation,
    spacing: float = 0.5,
    *,
    n_quad_azimuth: int | None = None,
    n_quad_elevation: int | None = None,
):
    """Normalised local-scattering correlation matrix of a ULA, ``[..., N, N]`` with ``tr = N``.

    ``[R]_{1,n} = E[exp(j 2 pi d_n sin(az + delta) cos(el + eps))]`` with
    ``delta ~ N(0, asd_azimuth^2)``, ``eps ~ N(0, asd_elevation^2)``, ``d_n = (n-1) spacing``
    (wavelengths); ``R`` is the Hermitian Toeplitz matrix with that first row (book eq. (2.18)).

    Args:
      n_antennas: ``N`` (static int).
      azimuth, elevation: nominal angles in radians, any broadcastable shape ``[...]``.
      asd_azimuth, asd_elevation: angular standard deviations in radians (``>= 0``; ``None`` or
        ``0`` means no spread in that dimension). Scalars or broadcastable to ``[...]``.
      spacing: antenna spacing in wavelengths.

    The integrals use Gauss-Legendre quadrature over +-6 standard deviations (``n_quad_*`` nodes,
    by default :func:`quadrature_order` of the ASD, or of ``ASD_MAX_TRACED`` when the ASD is
    traced); accurate to 1e-5 or better; differentiable in the angles and ASDs.
    """
    n_antennas = V.positive_int("n_antennas", n_antennas)
    for name, v in (("asd_azimuth", asd_azimuth), ("asd_elevation", asd_elevation)):
        if v is not None:
            V.finite(name, v, nonneg=True)
    V.finite("azimuth", azimuth)
    V.finite("elevation", elevation)
    if not spacing > 0:
        raise ValueError(f"spacing must be positive, got {spacing}")
    na = 1 if _is_zero(asd_azimuth) else _order(n_quad_azimuth, n_antennas, asd_azimuth, spacing)
    ne = (
        1
        if _is_zero(asd_elevation)
        else _order(n_quad_elevation, n_antennas, asd_elevation, spacing)
    )
    asd_az = 0.0 if asd_azimuth is None else asd_azimuth
    asd_el = 0.0 if asd_elevation is None else asd_elevation
    return _local_scattering(n_antennas, na, ne, spacing, azimuth, elevation, asd_az, asd_el)


def _local_scattering(N, na, ne, spacing, azimuth, elevation, asd_az, asd_el):
    dtype = jnp.result_type(azimuth, elevation, float)
    cdtype = jnp.result_type(dtype, jnp.complex64)
    xa, wa = (np.zeros(1), np.ones(1)) if na == 1 else _nodes(na)
    xe, we = (np.zeros(1), np.ones(1)) if ne == 1 else _nodes(ne)
    azimuth = jnp.asarray(azimuth, dtype)
    elevation = jnp.asarray(elevation, dtype)
    asd_az = jnp.asarray(asd_az, dtype)
    asd_el = jnp.asarray(asd_el, dtype)
    # sin(az + delta) over azimuth nodes, cos(el + eps) over elevation nodes.
    s = jnp.sin(azimuth[..., None] + asd_az[..., None] * jnp.asarray(xa, dtype))  # [..., na]
    c = jnp.cos(elevation[..., None] + asd_el[..., None] * jnp.asarray(xe, dtype))  # [..., ne]
    u = s[..., :, None] * c[..., None, :]  # [..., na, ne]
    w = jnp.asarray(np.outer(wa, we), dtype)  # [na, ne]
    d = spacing * jnp.arange(N, dtype=dtype)  # [N]
    phase = 2.0 * jnp.pi * d[:, None, None] * u[..., None, :, :]  # [..., N, na, ne]
    row = jnp.sum(w * jax.lax.complex(jnp.cos(phase), jnp.sin(phase)), axis=(-2, -1))
    row = row.astype(cdtype)  # [..., N], row[0] == 1
    return toeplitz_hermitian(row)


def toeplitz_hermitian(row):
    """Hermitian Toeplitz matrix with first row ``row[..., N]``: ``[..., N, N]``.

    ``R[m, n] = row[n - m]`` for ``n >= m`` and ``conj(row[m - n])`` otherwise.
    """
    N = row.shape[-1]
    idx = jnp.arange(N)
    lag = idx[None, :] - idx[:, None]  # n - m
    upper = jnp.take(row, jnp.abs(lag), axis=-1)
    return jnp.where(lag >= 0, upper, jnp.conj(upper))

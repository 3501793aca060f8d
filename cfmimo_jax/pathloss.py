"""Path loss, correlated shadow fading and noise power (book section 5.3 setup, eq. (5.42))."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .fastmath import sincos
from .linalg import cholesky


def noise_power_dbm(bandwidth_hz: float = 20e6, noise_figure_db: float = 7.0) -> float:
    """Noise power in dBm: ``-174 + 10 log10(B) + NF`` (book eq. (5.43) setting)."""
    if not bandwidth_hz > 0:
        raise ValueError(f"bandwidth_hz must be positive, got {bandwidth_hz}")
    return float(-174.0 + 10.0 * np.log10(bandwidth_hz) + noise_figure_db)


def pathloss_db(distance_m):
    """Channel gain in dB without shadowing: ``-30.5 - 36.7 log10(d / 1 m)`` (book eq. (5.42)).

    ``distance_m[...]`` (3-D distance in metres) -> same shape.
    """
    return -30.5 - 36.7 * jnp.log10(distance_m)


def shadowing_covariance(ue_pos, std_db: float = 4.0, decorrelation_m: float = 9.0):
    """Covariance between the shadowing of UEs seen from one AP, ``[K, K]``.

    ``E[F_lk F_li] = std^2 2^(-delta_ki / decorrelation)`` with ``delta`` the Euclidean UE
    distance (book eq. (5.44)). ``ue_pos[K, 2]``.
    """
    diff = ue_pos[:, None, :] - ue_pos[None, :, :]
    delta = jnp.sqrt(jnp.sum(diff**2, axis=-1) + 1e-30)
    delta = jnp.where(jnp.eye(ue_pos.shape[0], dtype=bool), 0.0, delta)
    return std_db**2 * 2.0 ** (-delta / decorrelation_m)


def correlated_shadowing(
    key, n_aps: int, ue_pos, std_db: float = 4.0, decorrelation_m: float = 9.0
):
    """Shadow fading ``F[L, K]`` in dB: independent over APs, correlated over UEs (eq. (5.44)).

    Draws ``F[l, :] = chol(Sigma) z_l`` with ``z_l ~ N(0, I_K)``; a relative jitter of 1e-6 on
    the diagonal keeps the Cholesky factor finite when two UEs coincide.
    """
    sigma = shadowing_covariance(ue_pos, std_db, decorrelation_m)
    K = ue_pos.shape[0]
    chol = cholesky(sigma + 1e-6 * std_db**2 * jnp.eye(K, dtype=sigma.dtype))
    z = jax.random.normal(key, (n_aps, K), dtype=sigma.dtype)
    return z @ chol.T


def uma_los_pathloss_db(d2d_m, ap_height_m=20.0, ue_height_m=1.5, carrier_ghz=2.0):
    """3GPP TR 38.901 (Table 7.4.1-1) urban-macro LoS path loss in dB (a loss, positive).

    With ``d3D = sqrt(d2D^2 + (h_BS - h_UT)^2)``, the breakpoint
    ``d'_BP = 4 (h_BS - 1) (h_UT - 1) f_c / c`` (``f_c`` in Hz), and ``f_c`` in GHz below:
    ``PL1 = 28 + 22 log10(d3D) + 20 log10(f_c)`` for ``d2D <= d'_BP``,
    ``PL2 = 28 + 40 log10(d3D) + 20 log10(f_c) - 9 log10(d'_BP^2 + (h_BS - h_UT)^2)`` beyond.
    ``d2D`` is clamped to at least 10 m (the model's validity range). ``d2d_m[...]`` -> same.
    The effective heights ``h - 1 m`` are floored at 0.1 m so a UE at 1 m keeps a breakpoint.
    """
    dh = ap_height_m - ue_height_m
    d2 = jnp.maximum(d2d_m, 10.0)
    d3 = jnp.sqrt(d2**2 + dh**2)
    hb = jnp.maximum(ap_height_m - 1.0, 0.1)
    hu = jnp.maximum(ue_height_m - 1.0, 0.1)
    d_bp = 4.0 * hb * hu * carrier_ghz * 1e9 / 299_792_458.0
    fc = 20.0 * jnp.log10(carrier_ghz)
    pl1 = 28.0 + 22.0 * jnp.log10(d3) + fc
    pl2 = 28.0 + 40.0 * jnp.log10(d3) + fc - 9.0 * jnp.log10(d_bp**2 + dh**2)
    return jnp.where(d2 <= d_bp, pl1, pl2)


def shadowing_field(key, n_aps: int, n_terms: int = 64, correlation_m: float = 37.0, dtype=None):
    """Spatially correlated shadowing fields, one per AP, as a property of position.

    Random Fourier features (Rahimi and Recht 2007) in their weight-space form:
    ``F_l(x) = sum_s [a_ls cos(w_s . x) + b_ls sin(w_s . x)] / sqrt(S)`` with frequencies
    ``w_s ~ N(0, I / correlation_m^2)`` shared by the APs and weights ``a_ls, b_ls ~ N(0, 1)``
    independent per AP. Given the frequencies each ``F_l`` is exactly a zero-mean Gaussian
    field, independent across APs, with correlation ``(1/S) sum_s cos(w_s . (x - x'))``, whose
    mean over frequency draws is ``exp(-|x - x'|^2 / (2 correlation_m^2))`` (unit variance at
    ``x = x'`` exactly). Multiply by the shadowing std (``evaluate_shadowing``). A UE moving
    through the field sees smoothly varying shadowing. Sharing the frequencies makes one
    evaluation cost ``K S`` sines and cosines and an ``[L, 2S] x [2S, K]`` product instead of
    ``L K S`` cosines.

    Returns ``(w[S, 2], a[L, S], b[L, S])``.
    """
    dtype = dtype or jnp.result_type(float)
    kw, ka, kb = jax.random.split(key, 3)
    w = jax.random.normal(kw, (n_terms, 2), dtype=dtype) / correlation_m
    a = jax.random.normal(ka, (n_aps, n_terms), dtype=dtype)
    b = jax.random.normal(kb, (n_aps, n_terms), dtype=dtype)
    return w, a, b


def evaluate_shadowing(field, ue_pos, std_db):
    """Shadowing in dB ``F[..., L, K]`` of the fields ``(w[S, 2], a[L, S], b[L, S])`` at
    ``ue_pos[..., K, 2]`` (leading axes: e.g. several time slots, evaluated as one product):
    ``F_lk = std_db sum_s [a_ls cos(w_s . x_k) + b_ls sin(w_s . x_k)] / sqrt(S)``
    (see ``shadowing_field``).
    """
    w, a, b = field
    arg = ue_pos[..., 0:1] * w[:, 0] + ue_pos[..., 1:2] * w[:, 1]  # [..., K, S]
    sin, cos = sincos(arg)  # float32: cfmimo_jax.fastmath's vectorised pair
    # Two [..., K, S] x [S, L] products (no concatenated [..., K, 2S] features to materialise),
    # UE axis major, then transposed: on XLA's CPU backend about 1.4-1.7x faster than one
    # "ls,...ks->...lk" product of the concatenated features.
    F = jnp.einsum("...ks,ls->...kl", cos, a) + jnp.einsum("...ks,ls->...kl", sin, b)
    return (std_db / jnp.sqrt(w.shape[0])) * jnp.swapaxes(F, -1, -2)

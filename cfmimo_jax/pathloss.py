"""Path loss, correlated shadow fading and noise power (book section 5.3 setup, eq. (5.42))."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

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

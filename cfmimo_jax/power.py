"""Power allocation heuristics (book section 7.1)."""

from __future__ import annotations

import jax.numpy as jnp

from . import _validate as V


def fractional_downlink(gain, D, rho_max, exponent: float = 0.5):
    """Distributed fractional downlink power allocation (book eq. (7.47)): ``-> rho[L, K]``.

    ``rho_lk = rho_max gain_lk^exponent / sum_{i served by l} gain_li^exponent`` if AP ``l``
    serves UE ``k`` (``D[l, k]``), else 0, so every AP spends exactly ``rho_max`` (mW) when it
    serves someone. ``gain[L, K]`` is linear (normalised by the noise), ``D[L, K]`` bool,
    ``rho_max`` a scalar or ``[L]``.
    """
    if jnp.ndim(gain) != 2:
        raise ValueError(f"gain must have shape [L, K], got {jnp.shape(gain)}")
    L, K = jnp.shape(gain)
    V.serving("D", D, L, K)
    V.finite("gain", gain, nonneg=True)
    V.finite("rho_max", rho_max, nonneg=True)
    D = jnp.asarray(D, bool)
    weights = jnp.where(D, jnp.asarray(gain) ** exponent, 0.0)
    total = jnp.sum(weights, axis=1, keepdims=True)
    rho_max = jnp.reshape(jnp.asarray(rho_max, weights.dtype), (-1, 1))
    return rho_max * weights / jnp.where(total > 0, total, 1.0)


def ap_power_consumption(active, tx_power_w, amp_efficiency, circuit_power_w):
    """Power drawn by each AP in watts (seed 003 eq. (9); Ngo et al. 2018 model).

    ``P_l = a_l (P_circuit + P_tx / eta)``: an AP that serves at least one UE (``active[L]``)
    transmits at full power ``P_tx`` through an amplifier of efficiency ``eta`` and pays its
    constant circuit power; an AP that serves nobody is switched off and draws nothing.
    ``active[..., L]`` bool -> ``[..., L]``.
    """
    per_ap = circuit_power_w + tx_power_w / amp_efficiency
    return jnp.asarray(active, jnp.result_type(float)) * per_ap

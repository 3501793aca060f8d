"""Pilot assignment and user-centric serving sets (book section 4.4, Algorithm 4.1; the
threshold clusters of [AP-COOP] eq. (2))."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from . import _validate as V


def master_aps(gain_db):
    """Master AP of every UE, the AP with the largest gain: ``gain_db[L, K] -> [K]`` int32."""
    return jnp.argmax(gain_db, axis=0).astype(jnp.int32)


def assign_pilots(gain_db, tau_p: int):
    """Pilot assignment of book Algorithm 4.1: ``gain_db[L, K] -> pilot[K]`` (int32, 0-based).

    UEs ``k < tau_p`` get pilot ``k``; each later UE (in index order) takes the pilot with the
    least received power ``sum_{i < k, pilot_i = t} 10^(gain_db[master_k, i] / 10)`` at its
    master AP (ties to the lowest index). Implemented as a ``lax.scan`` over UEs (the algorithm
    is sequential); jittable and vmappable over setups.
    """
    V.positive_int("tau_p", tau_p)
    if jnp.ndim(gain_db) != 2:
        raise ValueError(f"gain_db must have shape [L, K], got {jnp.shape(gain_db)}")
    V.finite("gain_db", gain_db)
    return _assign_pilots(jnp.asarray(gain_db), tau_p)


def _assign_pilots(gain_db, tau_p):
    L, K = gain_db.shape
    master = master_aps(gain_db)
    gain_master = 10.0 ** (gain_db[master, :] / 10.0)  # [K(k), K(i)]: gain of UE i at k's master

    def body(pilot, k):
        onehot = jax.nn.one_hot(pilot, tau_p, dtype=gain_master.dtype)  # [K, tau_p], -1 -> 0
        before = (jnp.arange(K) < k)[:, None]
        interference = jnp.sum(jnp.where(before, onehot, 0.0) * gain_master[k][:, None], axis=0)
        chosen = jnp.where(k < tau_p, k, jnp.argmin(interference)).astype(jnp.int32)
        return pilot.at[k].set(chosen), None

    pilot0 = jnp.full((K,), -1, dtype=jnp.int32)
    pilot, _ = jax.lax.scan(body, pilot0, jnp.arange(K))
    return pilot


def dcc(gain_db, pilot, tau_p: int):
    """Dynamic cooperation clustering (book section 4.4): ``-> D[L, K]`` bool.

    ``D[master_k, k] = True`` for every UE; then every AP serves, on each pilot in use, the UE
    with the largest gain among those sharing that pilot. ``gain_db[L, K]``, ``pilot[K]``.
    """
    V.positive_int("tau_p", tau_p)
    if jnp.ndim(gain_db) != 2:
        raise ValueError(f"gain_db must have shape [L, K], got {jnp.shape(gain_db)}")
    V.finite("gain_db", gain_db)
    V.pilots("pilot", pilot, gain_db.shape[1], tau_p)
    return _dcc(jnp.asarray(gain_db), jnp.asarray(pilot), tau_p)


def _dcc(gain_db, pilot, tau_p):
    L, K = gain_db.shape
    onehot = jax.nn.one_hot(pilot, tau_p, dtype=bool)  # [K, tau_p]
    masked = jnp.where(onehot[None, :, :], gain_db[:, :, None], -jnp.inf)  # [L, K, tau_p]
    best = jnp.argmax(masked, axis=1)  # [L, tau_p]
    used = jnp.any(onehot, axis=0)  # [tau_p]
    strongest = jax.nn.one_hot(best, K, dtype=bool) & used[None, :, None]  # [L, tau_p, K]
    D = jnp.any(strongest, axis=1)
    master = jax.nn.one_hot(master_aps(gain_db), L, dtype=bool).T  # [L, K]
    return D | master


def _check_delta(delta) -> None:
    if jnp.ndim(delta) != 0:
        raise ValueError(f"delta must be a scalar, got shape {jnp.shape(delta)}")
    d = V.concrete(delta)
    if d is None:
        return
    if not np.isfinite(d) or not (0.0 < float(d) <= 1.0):
        raise ValueError(f"delta must lie in (0, 1], got {float(d)!r}")


def threshold_clusters(gain, delta, max_aps: int):
    """User-centric serving sets by a gain threshold ([AP-COOP] eq. (2)): ``-> D[M, K]`` bool.

    ``gain[M, K]``: linear large-scale gains ``beta_mk`` (noise-normalised, >= 0; the rule is
    scale-free, so any common unit works; from ``gain_db`` use ``10 ** (gain_db / 10)``).
    ``D[m, k]`` is true when AP ``m`` serves UE ``k``:

        M_k = {m : beta_mk >= delta * max_m' beta_m'k}                          eq. (2)

    capped at the ``max_aps`` strongest APs of each UE (the paper's "maximum serving APs per
    user", 5 in its Table I). Reading chosen: the cap keeps the ``max_aps`` largest
    ``beta_mk`` among the APs that pass the threshold (equal gains: the lower AP index first);
    with ``max_aps >= M`` the rule is eq. (2) alone. The threshold is relative in linear
    units, ``>=`` (an AP exactly at ``delta`` times the best is served). Every UE is served by
    at least its strongest AP (the master AP, ties to the lowest index), which passes any
    threshold ``delta <= 1``; it is also forced inside ``jit``.

    ``delta`` in ``(0, 1]`` (a scalar; may be traced, e.g. vmapped over a sweep);
    ``max_aps >= 1`` a static Python int. Checked when concrete: ``gain`` finite and
    non-negative of shape ``[M, K]``, ``delta`` in ``(0, 1]``, ``max_aps`` an integer >= 1.
    Inside ``jit`` a ``delta`` above 1 selects only the strongest AP (not checked).
    """
    if jnp.ndim(gain) != 2:
        raise ValueError(f"gain must have shape [M, K], got {jnp.shape(gain)}")
    V.finite("gain", gain, nonneg=True)
    _check_delta(delta)
    max_aps = V.positive_int("max_aps", max_aps)
    return _threshold_clusters(jnp.asarray(gain), delta, max_aps)


def _threshold_clusters(gain, delta, max_aps):
    gain = gain.astype(jnp.result_type(gain.dtype, jnp.float32))
    best = jnp.max(gain, axis=0)  # [K]
    order = jnp.argsort(-gain, axis=0, stable=True)  # [M, K]: AP of rank r (ties: lower m)
    rank = jnp.argsort(order, axis=0)  # [M, K]: rank of AP m for UE k (0 = strongest)
    passes = gain >= jnp.asarray(delta, gain.dtype) * best[None, :]
    return (passes & (rank < max_aps)) | (rank == 0)

"""Dynamic AP cooperation ([AP-COOP] sections II-C, II-D and III): the interference coupling
between APs, the high-interference neighbour sets, cooperation clusters from the APs' mutual
agreements, and the downlink SINR and sum rate of given precoders.

Shapes (one network realization; batch with ``jax.vmap``): ``M`` APs with ``N`` antennas,
``K`` single-antenna UEs; channels ``H[M, K, N]`` (``H[m, k] = h_mk``), precoders
``W[M, K, N]`` (``W[m, k] = w_mk``, unit norm or 0), transmit powers ``rho[M, K]`` (mW),
serving mask ``D[M, K]`` (``K_m = {k : D[m, k]}``, ``M_k = {m : D[m, k]}``), interference
metric ``I[M, M]``, neighbour tables ``idx[M, Q]`` / ``mask[M, Q]`` (``Q`` = the largest number
of neighbours, 4 in the paper), cooperation vectors ``coop[M, Q]`` (bool), cluster labels
``[M]`` (int32). As in the rest of :mod:`cfmimo_jax`, channels are normalised by the noise
standard deviation, so ``|h^H w|^2`` times a power in mW is a signal-to-noise ratio and the
noise power of eq. (9) is 1 (``noise=1.0``).

The precoders of a cluster (joint RZF, eqs. (14)-(17); MRT, eq. (18)) are
:func:`cfmimo_jax.processing.cluster_rzf`; the serving sets of eq. (2) are
:func:`cfmimo_jax.pilots.threshold_clusters`. Beyond the paper, :func:`central_precoders` gives
the cell-free book's centralized P-RZF / P-MMSE precoders on the same serving sets, with each
AP's segment normalised as eq. (17) does (an upper reference for the cooperation policies).
Conventions: ``docs/kernels.md``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from . import _validate as V
from .estimation import as_complex, real_dtype
from .processing import _unit_columns, central_scaled_all

MAX_NEIGHBOURS = 4  # [AP-COOP] Table I: maximum neighbours per AP
CENTRAL_SCHEMES = ("p_rzf", "p_mmse")  # centralized references (book eqs. (5.18), (5.16))
NEIGHBOUR_RATIO = 0.05  # [AP-COOP] Table I: gamma_th = 0.05 x max(I)


def _abs2(x):
    return jnp.real(x) ** 2 + jnp.imag(x) ** 2


def _check_channels(H, W, rho, D=None):
    if jnp.ndim(H) != 3:
        raise ValueError(f"H must have shape [M, K, N], got {jnp.shape(H)}")
    M, K, N = jnp.shape(H)
    V.shape("W", W, (M, K, N))
    V.shape("rho", rho, (M, K))
    V.finite("H", H)
    V.finite("W", W)
    V.finite("rho", rho, nonneg=True)
    if D is not None:
        V.serving("D", D, M, K)


def _scalar(name, x, *, positive=False, nonneg=False):
    if jnp.ndim(x) != 0:
        raise ValueError(f"{name} must be a scalar, got shape {jnp.shape(x)}")
    a = V.concrete(x)
    if a is None:
        return
    if np.iscomplexobj(a) or not np.isfinite(a):
        raise ValueError(f"{name} must be a finite real number, got {a!r}")
    if positive and float(a) <= 0:
        raise ValueError(f"{name} must be positive, got {float(a)!r}")
    if nonneg and float(a) < 0:
        raise ValueError(f"{name} must be non-negative, got {float(a)!r}")


def _bool_matrix(name, x, shape):
    V.shape(name, x, shape)
    a = V.concrete(x)
    if a is not None and a.dtype != np.bool_ and not np.all((a == 0) | (a == 1)):
        raise ValueError(f"{name} must be boolean (or 0/1)")


# --------------------------------------------------------------------------------------------
# Interference coupling and neighbours, eqs. (7) and (11)


def interference_metric(H, W, rho, D, *, exclude_desired: bool = False):
    """Average interference power AP ``n`` causes to the UEs of AP ``m`` ([AP-COOP] eq. (7)).

        I_mn = 1 / |K_m| sum_{k in K_m} sum_{j in K_n} rho_nj |h_nk^H w_nj|^2

    ``H[M, K, N]`` channels (the true ``h`` of eq. (7); pass estimates for what the APs can
    compute themselves), ``W[M, K, N]`` precoders, ``rho[M, K]`` powers (mW), ``D[M, K]``
    serving mask giving both ``K_m`` and ``K_n``; ``-> I[M, M]`` (noise-normalised, i.e. an
    interference-to-noise ratio). Pairs ``(n, j)`` outside ``D`` contribute nothing whatever
    ``W`` and ``rho`` hold there; ``I_mn = 0`` when AP ``m`` serves no UE, and the diagonal is
    set to 0 (an AP is not its own neighbour).

    Reading of eq. (7): as printed, the inner sum runs over all ``j in K_n``, so when AP ``n``
    also serves UE ``k`` its desired signal to ``k`` (``j = k``) is counted too (the default).
    ``exclude_desired=True`` drops the ``j = k`` terms, counting only the power meant for
    other UEs. With ``D`` the cluster-extended sets (``processing.cluster_serving``), this is
    the coupling under cooperation.
    """
    _check_channels(H, W, rho, D)
    H, W = as_complex(H), as_complex(W)
    return _interference_metric(
        H, W, jnp.asarray(rho), jnp.asarray(D).astype(bool), exclude_desired
    )


def _interference_metric(H, W, rho, D, exclude_desired=False):
    return _metric_from_power(_interference_power(H, W, rho, D, exclude_desired), D)


def _interference_power(H, W, rho, D, exclude_desired=False):
    """``T[n, k] = sum_{j in K_n} rho_nj |h_nk^H w_nj|^2`` (the inner sums of eq. (7)),
    ``H, W[M, K, N]``, ``rho, D[M, K]`` ``-> T[M, K]`` (real).

    Computed as ``h_nk^H R_n h_nk`` with the ``N x N`` transmit covariance
    ``R_n = sum_{j in K_n} rho_nj w_nj w_nj^H`` (``O(M K N^2)`` in two batched dots, instead of
    the ``[M, K, K]`` cross Gram, a ``K``-fold reduction into which XLA fuses, and so
    recomputes, whatever produced ``H``); ``exclude_desired`` subtracts the ``j = k`` terms
    ``rho_nk |h_nk^H w_nk|^2`` (clipped at 0 against round-off)."""
    rdt = real_dtype(H)
    q = (rho.astype(rdt) * D.astype(rdt)).astype(H.dtype)  # [n, j]
    R = jnp.einsum("mja,mjb->mab", W * q[..., None], jnp.conj(W))  # [M, N, N]
    u = jnp.einsum("mab,mkb->mka", R, H)  # R_n h_nk
    T = jnp.sum(jnp.real(jnp.conj(H) * u), axis=-1)  # [n, k]
    if exclude_desired:
        d = jnp.sum(jnp.conj(H) * W, axis=-1)  # h_nk^H w_nk
        T = jnp.maximum(T - jnp.real(q) * _abs2(d), 0.0)
    return T


def _metric_from_power(T, D):
    """``I_mn = 1 / |K_m| sum_{k in K_m} T[n, k]`` with the diagonal zeroed (eq. (7)):
    ``T[M, K]`` (:func:`_interference_power`, or its mean over draws), ``D[M, K]`` ``->
    I[M, M]``."""
    M = T.shape[0]
    rdt = T.dtype
    Df = D.astype(rdt)
    count = jnp.sum(Df, axis=1)  # |K_m|
    I = (Df @ T.T) / jnp.maximum(count, 1.0)[:, None]
    return I * (1.0 - jnp.eye(M, dtype=rdt))


def interference_neighbours(
    I, max_neighbours: int = MAX_NEIGHBOURS, ratio=NEIGHBOUR_RATIO, *, per_ap: bool = False
):
    """High-interference neighbours of every AP ([AP-COOP] eq. (11)) as a fixed-size table.

        N_m = {n != m : I_mn > gamma_th},  gamma_th = ratio * max_{m', n' != m'} I_m'n'

    with ``ratio = 0.05`` ([AP-COOP] Table I, ``0.05 x max(I_AP)``), capped at the
    ``max_neighbours`` largest ``I_mn`` (Table I: 4). Readings chosen: eq. (11) writes one
    threshold ``gamma_th`` for all APs, so the maximum is over the whole matrix (its diagonal
    ignored); ``per_ap=True`` uses each AP's own maximum ``max_n I_mn`` instead. The
    comparison is strict (``>``), so an all-zero row has no neighbours.

    ``I[M, M]`` (non-negative, e.g. :func:`interference_metric`; the diagonal is ignored)
    ``-> (idx[M, Q], mask[M, Q])`` with ``Q = max_neighbours``: ``idx[m, :|N_m|]`` are the
    neighbours, strongest first (equal values: lower index first), ``mask`` marks them; the
    padding entries hold ``m`` itself with ``mask`` false. ``max_neighbours`` is static.
    """
    if jnp.ndim(I) != 2 or jnp.shape(I)[0] != jnp.shape(I)[1]:
        raise ValueError(f"I must have shape [M, M], got {jnp.shape(I)}")
    V.finite("I", I, nonneg=True)
    Q = V.positive_int("max_neighbours", max_neighbours)
    _scalar("ratio", ratio, nonneg=True)
    return _neighbours(jnp.asarray(I), Q, ratio, bool(per_ap))


def _neighbours(I, Q, ratio, per_ap=False):
    M = I.shape[0]
    I = I.astype(jnp.result_type(I.dtype, jnp.float32))
    off = ~jnp.eye(M, dtype=bool)
    vals = jnp.where(off, I, -jnp.inf)
    top = jnp.max(vals, axis=1, keepdims=True) if per_ap else jnp.max(vals)
    thr = jnp.asarray(ratio, I.dtype) * jnp.maximum(top, 0.0)
    q = min(Q, M)
    v, idx = lax.top_k(vals, q)  # descending; equal values: lower index first
    self_idx = jnp.broadcast_to(jnp.arange(M, dtype=jnp.int32)[:, None], (M, q))
    mask = (v > thr) & (idx != self_idx)
    idx = jnp.where(mask, idx.astype(jnp.int32), self_idx)
    if q < Q:  # fewer APs than table slots: pad with the AP itself
        pad = jnp.broadcast_to(jnp.arange(M, dtype=jnp.int32)[:, None], (M, Q - q))
        idx = jnp.concatenate([idx, pad], axis=1)
        mask = jnp.concatenate([mask, jnp.zeros((M, Q - q), bool)], axis=1)
    return idx, mask


# --------------------------------------------------------------------------------------------
# Agreements -> clusters (section III-B: "a set of APs that have mutually agreed to cooperate")


def agreement_matrix(idx, mask, coop):
    """Mutual cooperation links from the APs' binary cooperation vectors ``-> [M, M]`` bool.

    ``idx[M, Q]``, ``mask[M, Q]``: neighbour tables (:func:`interference_neighbours`);
    ``coop[M, Q]``: the action ``a_m`` of each AP over its neighbour list ([AP-COOP]
    section III-1, ``a_mn = 1``: AP ``m`` wants to cooperate with ``n``). AP ``m`` wants
    ``n`` when ``coop[m, q] & mask[m, q]`` for the slot ``q`` with ``idx[m, q] = n`` (entries
    on padding slots are ignored). The link ``m - n`` exists only if both want it:
    ``A = want & want^T``, symmetric with a false diagonal.
    """
    if jnp.ndim(idx) != 2:
        raise ValueError(f"idx must have shape [M, Q], got {jnp.shape(idx)}")
    M, Q = jnp.shape(idx)
    if not jnp.issubdtype(jnp.result_type(idx), jnp.integer):
        raise ValueError(f"idx must be an integer array, got dtype {jnp.result_type(idx)}")
    a = V.concrete(idx)
    if a is not None and (np.any(a < 0) or np.any(a >= M)):
        raise ValueError(f"idx entries must lie in [0, M={M})")
    _bool_matrix("mask", mask, (M, Q))
    _bool_matrix("coop", coop, (M, Q))
    return _agreement_matrix(
        jnp.asarray(idx), jnp.asarray(mask).astype(bool), jnp.asarray(coop).astype(bool)
    )


def _agreement_matrix(idx, mask, coop):
    M = idx.shape[0]
    onehot = jax.nn.one_hot(idx, M, dtype=bool)  # [M, Q, M]
    want = jnp.any(onehot & (mask & coop)[:, :, None], axis=1)  # [M, M]
    return want & want.T & ~jnp.eye(M, dtype=bool)


def clusters_from_agreements(agree):
    """Cooperation clusters: connected components of the mutual links ``-> labels[M]`` int32.

    ``agree[M, M]`` bool: ``agree[m, n]`` means AP ``m`` wants to cooperate with AP ``n``
    (e.g. :func:`agreement_matrix`, already mutual). A link ``m - n`` exists only if
    ``agree[m, n] & agree[n, m]`` (the diagonal is ignored). Reading of [AP-COOP]
    section III-B ("a set of APs that have mutually agreed to cooperate"): a cluster is a
    connected component of the links, so ``m - n`` and ``n - p`` put ``m, n, p`` in one
    cluster even without ``m - p``. The label of a component is its smallest AP index; an AP
    without links keeps its own index (a cluster of one, MRT in
    :func:`cfmimo_jax.processing.cluster_rzf`).

    Min-label propagation with pointer jumping, ``l <- l'[l']`` with
    ``l' = min(l, min_{n linked to m} l_n)``, in a ``lax.while_loop`` that stops at a fixed
    point (at most ``M`` sweeps of ``O(M^2)``; labels only decrease and stay inside the
    component, so the fixed point is the component minimum). Jittable and vmappable.
    """
    if jnp.ndim(agree) != 2 or jnp.shape(agree)[0] != jnp.shape(agree)[1]:
        raise ValueError(f"agree must have shape [M, M], got {jnp.shape(agree)}")
    _bool_matrix("agree", agree, jnp.shape(agree))
    return _clusters(jnp.asarray(agree).astype(bool))


def _clusters(agree):
    M = agree.shape[0]
    adj = agree & agree.T & ~jnp.eye(M, dtype=bool)
    init = jnp.arange(M, dtype=jnp.int32)

    def sweep(lab):
        nb = jnp.min(jnp.where(adj, lab[None, :], M), axis=1).astype(jnp.int32)
        lab = jnp.minimum(lab, nb)
        return lab[lab]

    def cond(c):
        lab, prev, it = c
        return (it < M) & jnp.any(lab != prev)

    def body(c):
        lab, _, it = c
        return sweep(lab), lab, it + 1

    lab, _, _ = lax.while_loop(cond, body, (sweep(init), init, jnp.int32(1)))
    return lab


def cooperation_clusters(idx, mask, coop):
    """``clusters_from_agreements(agreement_matrix(idx, mask, coop))``: the cluster labels
    ``[M]`` of the APs' cooperation vectors over their neighbour tables."""
    return clusters_from_agreements(agreement_matrix(idx, mask, coop))


# --------------------------------------------------------------------------------------------
# Centralized reference: the book's P-RZF / P-MMSE on the serving sets, per-AP normalised


def central_precoders(Hhat, C, D, p, scheme: str, max_serving=None):
    """Centralized partial precoders on the user-centric serving sets, each AP's segment
    normalised ``-> W[M, K, N]`` (unit-norm ``w_mk`` on ``D``, 0 elsewhere).

    Beyond [AP-COOP]: the CPU processes every UE jointly over all the APs that serve it
    (Demir, Björnson, Sanguinetti, "Foundations of User-Centric Cell-Free Massive MIMO",
    section 6.3: the downlink precoders are the centralized uplink combiners). With
    ``D_k = diag(D[:, k] ⊗ I_N)`` and ``P_k = {i : UE i shares a serving AP with UE k}``
    (book eq. (5.15)), the combining vector of UE ``k`` over its serving APs is

        P-MMSE (book eq. (5.16)):
            v_k = p_k (sum_{i in P_k} p_i D_k hhat_i hhat_i^H D_k + D_k Z_k D_k)^+ D_k hhat_k,
            Z_k = sum_{i in P_k} p_i C_i + I  (noise power 1)
        P-RZF (book eq. (5.18)): the same without ``Z_k``, in the dual form
            v_k = D_k Hhat_Pk (Hhat_Pk^H D_k Hhat_Pk + diag(p)^{-1})^{-1} e_k (over P_k),

    computed by :func:`cfmimo_jax.processing.central_scaled_all` (the Woodbury form, one
    ``K x K`` system per UE). The book scales ``v_k`` by one norm over all of ``M_k`` (a total
    power per UE); here, as eq. (17) of [AP-COOP] does for the cluster RZF, each AP's
    ``N``-segment is normalised, ``w_mk = [v_k]_m / ||[v_k]_m||``, so that with the powers
    ``rho[M, K]`` of the caller (e.g. ``P / |K_m|`` on ``K_m``) every AP meets its own budget
    ``sum_k rho_mk ||w_mk||^2 <= P`` exactly, whatever the channel.

    ``Hhat[M, K, N]`` channel estimates (one realization; a real ``Hhat`` is promoted to
    complex), ``C[M, K, N, N]`` their error correlations (book eq. (4.9); ``beta_mk - B_mk``
    times ``I_N`` for i.i.d. Rayleigh), ``D[M, K]`` serving mask, ``p`` scalar or ``[K]`` the
    uplink powers the combiners are computed with (mW, noise-normalised channels), ``scheme``
    in :data:`CENTRAL_SCHEMES`, ``max_serving`` a static cap ``>= max_k |M_k|`` for P-MMSE's
    serving tables (``None``: all ``M`` APs; see :func:`cfmimo_jax.processing.serving_table`).
    A zero segment (a zero estimate) gives ``w_mk = 0``.
    """
    if scheme not in CENTRAL_SCHEMES:
        raise ValueError(f"scheme must be one of {CENTRAL_SCHEMES}, got {scheme!r}")
    if jnp.ndim(Hhat) != 3:
        raise ValueError(f"Hhat must have shape [M, K, N], got {jnp.shape(Hhat)}")
    M, K, N = jnp.shape(Hhat)
    V.finite("Hhat", Hhat)
    V.shape("C", C, (M, K, N, N))
    V.correlation("C", C)
    V.serving("D", D, M, K)
    V.shape("p", p, (K,), allow_scalar=True)
    V.finite("p", p, nonneg=True)
    if max_serving is not None:
        max_serving = V.positive_int("max_serving", max_serving)
        Dc = V.concrete(D)
        if Dc is not None:
            need = int(np.max(np.sum(np.asarray(Dc, bool), axis=0), initial=0))
            if max_serving < need:
                raise ValueError(f"max_serving={max_serving} is smaller than max_k |M_k| = {need}")
    Hhat = as_complex(Hhat)
    C = as_complex(C).astype(Hhat.dtype)
    return _central_precoders(Hhat, C, jnp.asarray(D).astype(bool), p, scheme, max_serving)


def _central_precoders(Hhat, C, D, p, scheme, max_serving=None):
    v = central_scaled_all(Hhat[None], C, D, p, (scheme,), max_serving=max_serving)[scheme][0]
    return _unit_columns(v * D.astype(v.dtype)[..., None])


# --------------------------------------------------------------------------------------------
# SINR and sum rate, eqs. (8)-(9)


def downlink_sinr(H, W, rho, noise=1.0):
    """Instantaneous downlink SINR of every UE ([AP-COOP] eq. (9)) ``-> [K]``.

        SINR_k = |sum_m sqrt(rho_mk) h_mk^H w_mk|^2
                 / (sum_{j != k} |sum_m sqrt(rho_mj) h_mk^H w_mj|^2 + sigma^2)

    ``H[M, K, N]`` true channels, ``W[M, K, N]`` precoders (unit norm, eq. (5);
    e.g. :func:`cfmimo_jax.processing.cluster_rzf` of the estimates), ``rho[M, K]`` powers
    (mW), ``noise`` = ``sigma^2`` in the units of ``|h|^2 rho`` (1 for the noise-normalised
    channels of :mod:`cfmimo_jax`). The serving sets ``M_j`` of eq. (9) are where
    ``rho[m, j] w_mj != 0``: a pair outside them must have ``rho = 0`` or ``w = 0`` (as
    ``cluster_rzf`` gives), so the sums run over all APs. Coherent joint transmission: the
    signals of all APs add as amplitudes before ``|.|^2``.
    """
    _check_channels(H, W, rho)
    _scalar("noise", noise, positive=True)
    H, W = as_complex(H), as_complex(W)
    return _downlink_sinr(H, W, jnp.asarray(rho), noise)


def _downlink_sinr(H, W, rho, noise=1.0):
    K = H.shape[1]
    rdt = real_dtype(H)
    V = jnp.sqrt(rho.astype(rdt)).astype(H.dtype)[..., None] * W  # sqrt(rho_mj) w_mj
    # A[k, j] = sum_m sqrt(rho_mj) h_mk^H w_mj: one [K, M N] x [M N, K] matmul
    A = jnp.einsum("mka,mja->kj", jnp.conj(H), V)
    P = _abs2(A)
    eye = jnp.eye(K, dtype=bool)
    signal = jnp.diagonal(P)
    interference = jnp.sum(jnp.where(eye, 0.0, P), axis=1)
    return signal / (interference + jnp.asarray(noise, rdt))


def rates(sinr):
    """``log2(1 + SINR_k)`` in bit/s/Hz (the summand of [AP-COOP] eq. (8); no prelog)."""
    return jnp.log2(1.0 + sinr)


def sum_rate(H, W, rho, noise=1.0):
    """Sum rate ``sum_k log2(1 + SINR_k)`` (bit/s/Hz) of eq. (8) with the SINR of eq. (9)
    (:func:`downlink_sinr`; same arguments) ``->`` scalar."""
    return jnp.sum(rates(downlink_sinr(H, W, rho, noise)))

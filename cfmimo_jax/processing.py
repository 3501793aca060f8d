"""Receive combining and transmit precoding (book sections 5.1-5.2 and 6.1), and the cluster
precoders of [AP-COOP] eqs. (14)-(18) (:func:`cluster_rzf`).

The combining kernels act on a batch of realizations ``Hhat[n, L, K, N]`` of one setup and
return the combining vectors ``V[n, L, K, N]`` with ``V[:, l, k] = 0`` when AP ``l`` does not
serve UE ``k`` (``D[l, k]`` false); the cluster precoders take one realization ``H[M, K, N]``.

Centralized schemes never build the ``|M_k| N``-dimensional system of UE ``k``. With
``Z = blkdiag_l(Z_l)`` the error-plus-noise matrix of the scheme and ``Hs = Hhat P^{1/2}``, the
Woodbury identity gives ``(Z + Hs Hs^H)^{-1} Hs = Z^{-1} Hs (I_K + G)^{-1}`` with the ``K x K``
Gram ``G = sum_{l in M_k} Hs_l^H Z_l^{-1} Hs_l``, a masked sum of per-AP ``K x K`` blocks. So
``v_k = sqrt(p_k) Z^{-1} Hs tau_k`` with ``tau_k = (I + G_k)^{-1} e_k`` (a Cholesky solve of size
``K``), exactly the book's vector for MMSE (5.11), P-MMSE (5.16) and P-RZF (5.18).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from . import _validate as V
from .estimation import as_complex, powers, real_dtype
from .linalg import _cholesky_last, _from_last, _substitute_last, _to_last, chol_solve, inv_chol

CENTRALIZED = ("mmse", "p_mmse", "p_rzf", "mr")
DISTRIBUTED = ("l_mmse", "lp_mmse", "mr")


def partial_mask(D):
    """``P[k, i]``: UE ``i`` is served by at least one AP that serves UE ``k`` (book eq. (5.15)).

    ``D[L, K] -> [K, K]`` bool.
    """
    Df = D.astype(jnp.float32)
    return (Df.T @ Df) > 0


def masked_sum(D, X):
    """``Y[n, k, ...] = sum_l D[l, k] X[n, l, ...]`` as a real matmul (no complex upcast of ``D``).

    ``D[L, K]`` real or bool, ``X[n, L, *rest]`` -> ``[n, K, *rest]``.
    """
    Dr = D.astype(real_dtype(X))
    if jnp.iscomplexobj(X):
        re = jnp.einsum("lk,nl...->nk...", Dr, X.real)
        im = jnp.einsum("lk,nl...->nk...", Dr, X.imag)
        return jax.lax.complex(re, im)
    return jnp.einsum("lk,nl...->nk...", Dr, X)


def pack_hermitian(G):
    """Hermitian ``G[..., K, K]`` -> real ``P[..., K, K]``: ``Re G`` on and above the diagonal,
    ``-Im G`` below it (all the information, half the reals; linear, so it commutes with sums)."""
    K = G.shape[-1]
    upper = jnp.arange(K)[:, None] <= jnp.arange(K)[None, :]
    return jnp.where(upper, jnp.real(G), -jnp.imag(G))


def unpack_hermitian(P):
    """Inverse of :func:`pack_hermitian`: ``P[..., K, K]`` (real) -> Hermitian ``G``."""
    K = P.shape[-1]
    i, j = jnp.arange(K)[:, None], jnp.arange(K)[None, :]
    Pt = jnp.swapaxes(P, -1, -2)
    re = jnp.where(i <= j, P, Pt)
    im = jnp.where(i > j, -P, jnp.where(i < j, Pt, 0.0))
    return jax.lax.complex(re, im)


def error_noise_matrices(C, D, p):
    """Per-AP error-plus-noise matrices used by the schemes.

    Returns ``(Z_full[L, N, N], Z_served[L, N, N], Z_partial[L, K, N, N])``:
    ``Z_full_l = sum_{all i} p_i C_li + I`` (MMSE, L-MMSE; also the true impairment in every SINR),
    ``Z_served_l = sum_{i in S_l} p_i C_li + I`` (LP-MMSE),
    ``Z_partial_lk = sum_{i in P_k} p_i C_li + I`` (P-MMSE).
    """
    L, K, N, _ = C.shape
    p = powers(p, K, real_dtype(C)).astype(C.dtype)
    eye = jnp.eye(N, dtype=C.dtype)
    pC = p[None, :, None, None] * C
    z_full = jnp.sum(pC, axis=1) + eye
    z_served = jnp.einsum("lk,lkab->lab", D.astype(C.dtype), pC) + eye
    z_partial = jnp.einsum("ki,liab->lkab", partial_mask(D).astype(C.dtype), pC) + eye
    return z_full, z_served, z_partial


def serving_cap(D, multiple: int = 4):
    """Static cap ``M >= max_k |M_k|`` for :func:`serving_table`, or ``None`` if ``D`` is traced.

    ``D[L, K]``; the largest number of serving APs of a UE rounded up to ``multiple`` (fewer
    distinct compiled shapes), at most ``L``: :func:`serving_caps` with one group.
    """
    caps = serving_caps(D, 1, multiple)
    return None if caps is None else caps[0]


def _group_sizes(K: int, groups: int):
    """Sizes of ``groups`` contiguous near-equal groups of ``K`` UEs (larger groups first)."""
    return [len(a) for a in np.array_split(np.arange(K), min(groups, K))]


def serving_caps(D, groups: int = 4, multiple: int = 4):
    """Per-group static caps for :func:`grouped_serving_tables`, or ``None`` if ``D`` is traced.

    The UEs sorted by ``|M_k|`` (ascending, stable) are split into ``groups`` contiguous groups
    of near-equal size (``numpy.array_split``); ``caps[g] >= max |M_k|`` over group ``g``,
    rounded up to ``multiple``, at most ``L``. ``D[L, K]`` -> ``tuple[int, ...]``. With these
    caps the padded tables hold about ``mean_k |M_k|`` APs per UE instead of ``max_k |M_k|``.
    """
    Dc = V.concrete(D)
    if Dc is None:
        return None
    L, K = Dc.shape
    counts = np.sort(np.sum(np.asarray(Dc, bool), axis=0), kind="stable")
    caps, start = [], 0
    for size in _group_sizes(K, groups):
        m = max(int(counts[start + size - 1]), 1)
        caps.append(int(min(L, -(-m // multiple) * multiple)))
        start += size
    return tuple(caps)


def check_cap(D, max_serving):
    """Validate a user-supplied ``max_serving`` (``None``, an int, or a tuple of per-group caps
    as from :func:`serving_caps`) against a concrete ``D``; returns it as an int or tuple."""
    if max_serving is None:
        return None
    if isinstance(max_serving, (tuple, list)):
        caps = tuple(V.positive_int("max_serving", c) for c in max_serving)
        if not caps:
            raise ValueError("max_serving must not be an empty tuple")
        Dc = V.concrete(D)
        if Dc is not None:
            K = Dc.shape[1]
            if len(caps) > K:
                raise ValueError(f"max_serving has {len(caps)} groups for K={K} UEs")
            need = serving_caps(Dc, len(caps), multiple=1)
            for g, (c, n) in enumerate(zip(caps, need, strict=True)):
                if c < n:
                    raise ValueError(
                        f"max_serving[{g}]={c} is smaller than the largest |M_k| = {n} of UE "
                        f"group {g} (UEs sorted by |M_k|)"
                    )
        return caps
    M = V.positive_int("max_serving", max_serving)
    Dc = V.concrete(D)
    if Dc is not None:
        need = int(np.max(np.sum(np.asarray(Dc, bool), axis=0), initial=0))
        if M < need:
            raise ValueError(f"max_serving={M} is smaller than max_k |M_k| = {need}")
    return M


def serving_table(D, max_serving=None):
    """Serving APs of each UE in a static-size table.

    ``D[L, K]`` -> ``(idx[K, M], mask[K, M])``: ``idx[k, :|M_k|]`` are the APs serving UE ``k``
    (ascending), the remaining entries distinct non-serving APs with ``mask`` false. ``M`` is
    ``max_serving`` (static, must be ``>= max_k |M_k|``; not checked inside ``jit``) or ``L``
    when ``None`` (then ``idx[k] = 0..L-1`` and ``mask = D^T``).
    """
    L, K = D.shape
    M = L if max_serving is None else min(int(max_serving), L)
    if M == L:
        return jnp.broadcast_to(jnp.arange(L, dtype=jnp.int32), (K, L)), D.T
    order = jnp.argsort(jnp.logical_not(D).astype(jnp.int32), axis=0, stable=True)[:M]  # [M, K]
    return order.T.astype(jnp.int32), jnp.take_along_axis(D, order, axis=0).T


def grouped_serving_tables(D, caps):
    """Serving tables of groups of UEs sorted by ``|M_k|``, each padded to its own cap.

    ``D[L, K]``, ``caps``: static ``int``/``None`` (one group, UEs in order, as
    :func:`serving_table`) or a tuple from :func:`serving_caps`. Returns a list of
    ``(ues[K_g], idx[K_g, M_g], mask[K_g, M_g])``; the ``ues`` of all groups are a permutation
    of ``0..K-1`` (``argsort`` of ``|M_k|``, stable). A cap below a group's largest ``|M_k|``
    silently drops serving APs inside ``jit`` (checked by :func:`check_cap` when ``D`` is
    concrete).
    """
    L, K = D.shape
    if caps is None or isinstance(caps, int):
        idx, mask = serving_table(D, caps)
        return [(jnp.arange(K), idx, mask)]
    order = jnp.argsort(jnp.sum(D.astype(jnp.int32), axis=0), stable=True)
    out, start = [], 0
    for size, cap in zip(_group_sizes(K, len(caps)), caps, strict=True):
        ues = order[start : start + size]
        idx, mask = serving_table(D[:, ues], cap)
        out.append((ues, idx, mask))
        start += size
    return out


def bmm(A, B):
    """Batched ``A[..., p, r] @ B[..., r, q]`` for a small ``r`` (antennas), as a broadcast product
    summed over ``r``: XLA fuses it into one loop, whereas its CPU batched dot is slow for such
    small matrices (``N x N`` by ``N x K``: 10-20x here)."""
    return jnp.sum(A[..., :, :, None] * B[..., None, :, :], axis=-2)


def gram_small(Y):
    """``Y^H Y`` over a small second-to-last axis (``Y[..., N, K] -> [..., K, K]``, fused)."""
    return jnp.sum(jnp.conj(Y)[..., :, :, None] * Y[..., :, None, :], axis=-3)


def gram_cross(X, Y):
    """``g[..., l, k, i] = X_lk^H Y_li`` over the last (antenna) axis of ``X, Y[..., L, K, N]``."""
    Xt, Yt = jnp.swapaxes(X, -1, -2), jnp.swapaxes(Y, -1, -2)  # [..., L, N, K]
    return jnp.sum(jnp.conj(Xt)[..., :, :, None] * Yt[..., :, None, :], axis=-3)


def gram(Y):
    """``Y^H Y`` over the second-to-last axis: ``Y[..., r, K] -> [..., K, K]``.

    Complex ``Y = A + iB`` uses three real matmuls (XLA's real GEMM is faster than its complex
    one): ``Re = A^T A + B^T B``, ``Im = X - X^T`` with ``X = A^T B``.
    """
    if not jnp.iscomplexobj(Y):
        return jnp.einsum("...ri,...rj->...ij", Y, Y)
    A, B = jnp.real(Y), jnp.imag(Y)
    re = jnp.einsum("...ri,...rj->...ij", A, A) + jnp.einsum("...ri,...rj->...ij", B, B)
    X = jnp.einsum("...ri,...rj->...ij", A, B)
    return jax.lax.complex(re, X - jnp.swapaxes(X, -1, -2))


def _unit_solve(G):
    """``tau[..., k, :] = (I + G[..., k, :, :])^{-1} e_k`` (Cholesky); ``G[..., K, K, K]``."""
    K = G.shape[-1]
    eye = jnp.eye(K, dtype=G.dtype)
    rhs = jnp.broadcast_to(eye[:, :, None], G.shape[:-1] + (1,))
    return chol_solve(G + eye, rhs)[..., 0]


def _scatter_serving(out, vg, ues, idx):
    """Write ``vg[n, K_g, M, N]`` (UEs ``ues[K_g]``, table ``idx[K_g, M]``) into the dense
    ``out[n, L, K, N]``; table entries are distinct per UE, padding entries carry zeros."""
    k = jnp.broadcast_to(ues[:, None], idx.shape)
    return out.at[:, idx, k].set(vg, unique_indices=True)


def _gathered_whitened(Hs, W, ues, idx, mask):
    """P-MMSE quantities on a serving table: ``Wg[K_g, M, N, N]`` (zero on padding) and
    ``Yg[n, K_g, M, N, K] = W_{l k} Hs_l`` for ``k = ues[g]``, ``l = idx[g, m]``."""
    Wg = W[idx, ues[:, None]] * mask.astype(W.dtype)[:, :, None, None]
    HgT = jnp.swapaxes(Hs, -1, -2)[:, idx]  # [n, K_g, M, N, K(i)]
    return Wg, bmm(Wg[None], HgT)


def _per_ue_whitened(Hs, W, D, caps):
    """Gram and combiner of a centralized scheme whose whitening ``W[L, K, N, N]`` depends on
    the UE (P-MMSE): each UE's Gram ``sum_{l in M_k} (W_lk Hs_l)^H (W_lk Hs_l)`` over its
    serving table (grouped by ``caps``, see :func:`grouped_serving_tables`).

    Returns ``(grams[n, K, K, K], finish)``, the Grams in the UEs' own order and
    ``finish(tau[n, K, K]) -> v'[n, L, K, N]`` (``v'_k = W^H W Hs tau_k`` on ``M_k``).
    """
    n, L, K, N = Hs.shape
    tables = grouped_serving_tables(D, caps)
    parts = [(ues, idx, *_gathered_whitened(Hs, W, ues, idx, sm)) for ues, idx, sm in tables]
    G = jnp.concatenate([gram(Yg.reshape(n, len(ues), -1, K)) for ues, _, _, Yg in parts], 1)
    if len(parts) > 1:  # back to the UEs' own order
        inv = jnp.argsort(jnp.concatenate([ues for ues, *_ in parts]))
        G = G[:, inv]

    def finish(tau):
        out = jnp.zeros((n, L, K, N), Hs.dtype)
        for ues, idx, Wg, Yg in parts:
            out = _scatter_serving(out, _unwhiten_gathered(Yg, Wg, tau[:, ues]), ues, idx)
        return out

    return G, finish


def _unwhiten(Y, W, tau):
    """``v'[n, l, k] = W_l^H Y_l tau_k`` (``W = None``: identity): ``[n, L, K, N]``."""
    v = jnp.einsum("nlai,nki->nlka", Y, tau)
    if W is None:
        return v
    return jnp.sum(jnp.conj(W)[None, :, None] * v[..., :, None], axis=-2)


def _unwhiten_gathered(Yg, Wg, tau):
    """``v'[n, k, m] = W_{lk}^H Y_{lk} tau_k`` on the serving table: ``[n, K, M, N]``."""
    ug = jnp.sum(Yg * tau[:, :, None, None, :], axis=-1)  # [n, K, M, N]
    return jnp.sum(jnp.conj(Wg)[None] * ug[..., :, None], axis=-2)


def central_scaled_all(Hhat, C, D, p, schemes=CENTRALIZED, max_serving=None):
    """``{scheme: v'}`` for centralized schemes; ``v = sqrt(p_k) v'`` (``mr``: ``v' = hhat``).

    MMSE and P-RZF sum per-AP ``K x K`` Grams over ``M_k`` with one masked matmul; P-MMSE (whose
    whitening depends on the UE) builds each UE's Gram over its serving-AP table
    (``max_serving``: an int cap or per-group caps, see :func:`serving_caps`). All ``K x K``
    systems are solved together.
    """
    n, L, K, N = Hhat.shape
    p = powers(p, K, real_dtype(Hhat))
    Hs = Hhat * jnp.sqrt(p).astype(Hhat.dtype)[None, None, :, None]
    z_full, _, z_partial = error_noise_matrices(C, D, p)
    pmask = partial_mask(D)
    Dc = D.astype(Hhat.dtype)
    # per-AP whitened channels Y_l [n, L, N, K] of the schemes with AP-only whitening
    per_ap = {}
    if "mmse" in schemes:
        Wf = inv_chol(z_full)
        per_ap["mmse"] = bmm(Wf[None], jnp.swapaxes(Hs, -1, -2))
    if "p_rzf" in schemes:
        per_ap["p_rzf"] = jnp.swapaxes(Hs, -1, -2)
    grams, masks = [], []
    if per_ap:
        Ys = jnp.stack(list(per_ap.values()), axis=2)  # [n, L, S, N, K]
        Gs = unpack_hermitian(masked_sum(D, pack_hermitian(gram_small(Ys))))  # [n, K, S, K, K]
        for s, name in enumerate(per_ap):
            grams.append(Gs[:, :, s])
            masks.append(pmask if name == "p_rzf" else jnp.ones_like(pmask))
    if "p_mmse" in schemes:
        G_pm, finish_pm = _per_ue_whitened(Hs, inv_chol(z_partial), D, max_serving)
        grams.append(G_pm)
        masks.append(pmask)
    out = {}
    if grams:
        G = jnp.stack(grams)  # [S, n, K, K, K]
        m = jnp.stack(masks).astype(G.dtype)[:, None]  # [S, 1, K, K]
        G = G * m[..., :, None] * m[..., None, :]
        taus = _unit_solve(G)  # [S, n, K(k), K(i)]
        for s, name in enumerate(per_ap):
            v = _unwhiten(per_ap[name], Wf if name == "mmse" else None, taus[s])
            out[name] = v * Dc[None, :, :, None]
        if "p_mmse" in schemes:
            out["p_mmse"] = finish_pm(taus[-1])
    if "mr" in schemes:
        out["mr"] = Hhat * Dc[None, :, :, None]
    return {s: out[s] for s in CENTRALIZED if s in out}


def distributed_all(Hhat, C, D, p, schemes=DISTRIBUTED):
    """``{scheme: V}`` for the distributed schemes (book (5.29), (5.39), (5.32)); exact scale."""
    n, L, K, N = Hhat.shape
    p = powers(p, K, real_dtype(Hhat))
    pc = p.astype(Hhat.dtype)
    Dc = D.astype(Hhat.dtype)
    Hs = Hhat * jnp.sqrt(pc)[None, None, :, None]
    z_full, z_served, _ = error_noise_matrices(C, D, p)
    HhT = jnp.swapaxes(Hhat, -1, -2)  # [n, L, N, K]
    out = {}
    for name, z, sel in (("l_mmse", z_full, None), ("lp_mmse", z_served, Dc)):
        if name not in schemes:
            continue
        Hsel = Hs if sel is None else Hs * sel[None, :, :, None]
        A = z[None] + gram_small(jnp.conj(Hsel))  # sum_i hs_li hs_li^H
        X = chol_solve(A, HhT)  # [n, L, N, K]
        out[name] = jnp.swapaxes(X, -1, -2) * (pc[None, :] * Dc)[None, :, :, None]
    if "mr" in schemes:
        out["mr"] = Hhat * Dc[None, :, :, None]
    return out


def _check(Hhat, C, D, p):
    if Hhat.ndim != 4:
        raise ValueError(f"Hhat must have shape [n, L, K, N], got {Hhat.shape}")
    n, L, K, N = Hhat.shape
    V.shape("C", C, (L, K, N, N))
    V.correlation("C", C)
    V.serving("D", D, L, K)
    V.shape("p", p, (K,), allow_scalar=True)
    V.finite("p", p, nonneg=True)
    V.finite("Hhat", Hhat)


def centralized_combiners(Hhat, C, D, p, scheme: str):
    """Centralized combining vectors ``V[n, L, K, N]`` (book eqs. (5.11), (5.16), (5.18), (5.19)).

    ``scheme`` in ``"mmse"``, ``"p_mmse"``, ``"p_rzf"``, ``"mr"``; e.g. MMSE:
    ``v_k = p_k (sum_i p_i (hhat_i hhat_i^H + C_i) + I)^{-1} hhat_k`` over the APs serving ``k``.
    ``Hhat[n, L, K, N]`` estimates, ``C[L, K, N, N]`` error correlations, ``D[L, K]``, ``p[K]``;
    a real ``Hhat`` or ``C`` is promoted to the matching complex dtype.
    """
    if scheme not in CENTRALIZED:
        raise ValueError(f"scheme must be one of {CENTRALIZED}, got {scheme!r}")
    _check(Hhat, C, D, p)
    Hhat, C = as_complex(Hhat), as_complex(C)
    M = serving_caps(D)
    D = jnp.asarray(D, bool)
    v = central_scaled_all(Hhat, C, D, p, (scheme,), max_serving=M)[scheme]
    if scheme == "mr":
        return v
    K = Hhat.shape[2]
    sp = jnp.sqrt(powers(p, K, real_dtype(Hhat))).astype(Hhat.dtype)
    return v * sp[None, None, :, None]


def distributed_combiners(Hhat, C, D, p, scheme: str):
    """Distributed (local) combining vectors ``V[n, L, K, N]`` (book eqs. (5.29), (5.39), (5.32)).

    ``scheme`` in ``"l_mmse"``, ``"lp_mmse"``, ``"mr"``; e.g. L-MMSE at AP ``l``:
    ``v_lk = p_k (sum_i p_i (hhat_li hhat_li^H + C_li) + I_N)^{-1} hhat_lk``; a real ``Hhat``
    or ``C`` is promoted to the matching complex dtype.
    """
    if scheme not in DISTRIBUTED:
        raise ValueError(f"scheme must be one of {DISTRIBUTED}, got {scheme!r}")
    _check(Hhat, C, D, p)
    Hhat, C = as_complex(Hhat), as_complex(C)
    return distributed_all(Hhat, C, jnp.asarray(D, bool), p, (scheme,))[scheme]


# --------------------------------------------------------------------------------------------
# Cooperation clusters: joint RZF over a cluster, MRT for an AP alone ([AP-COOP] section III-B)


def _unit_columns(W):
    """``W[..., N] / ||W[..., N]||`` over the antenna axis; an all-zero vector stays zero (and
    has zero gradient, no NaN)."""
    n2 = jnp.sum(jnp.real(W) ** 2 + jnp.imag(W) ** 2, axis=-1, keepdims=True)
    ok = n2 > 0
    inv = jnp.where(ok, jax.lax.rsqrt(jnp.where(ok, n2, 1.0)), 0.0)
    return W * inv.astype(W.dtype)


def same_cluster(cluster):
    """``S[m, n]``: APs ``m`` and ``n`` carry the same cluster label. ``cluster[M] -> [M, M]``."""
    return cluster[:, None] == cluster[None, :]


def cluster_serving(cluster, D):
    """The UEs each AP transmits to under cluster cooperation: ``-> [M, K]`` bool.

    ``S[m, k] = k in K_C(m) = union_{n in C(m)} K_n`` ([AP-COOP] section III-B), where
    ``C(m)`` is the cluster of AP ``m`` (the APs with its label) and ``K_n = {k : D[n, k]}``;
    for an AP alone this is ``D[m]``. These are the pairs where :func:`cluster_rzf` returns a
    non-zero precoder (for non-zero channels). ``cluster[M]`` int, ``D[M, K]`` bool.
    """
    S = same_cluster(jnp.asarray(cluster)).astype(jnp.float32)
    return (S @ jnp.asarray(D).astype(jnp.float32)) > 0


def mrt_precoders(H, D):
    """Normalised MRT ``w_mk = hhat_mk / ||hhat_mk||`` for ``D[m, k]``, else 0 ([AP-COOP]
    eq. (18)). ``H[M, K, N]`` estimates, ``D[M, K]`` -> ``W[M, K, N]``; a zero channel gives
    ``w = 0``. A real ``H`` is promoted to complex."""
    H = as_complex(H)
    return _unit_columns(H * jnp.asarray(D).astype(H.dtype)[..., None])


def _check_cluster_rzf(H, cluster, D, alpha):
    if jnp.ndim(H) != 3:
        raise ValueError(f"H must have shape [M, K, N], got {jnp.shape(H)}")
    M, K, _ = jnp.shape(H)
    V.finite("H", H)
    V.shape("cluster", cluster, (M,))
    if not jnp.issubdtype(jnp.result_type(cluster), jnp.integer):
        raise ValueError(
            f"cluster must be an integer array of labels, got dtype {jnp.result_type(cluster)}"
        )
    V.serving("D", D, M, K)
    if jnp.ndim(alpha) != 0:
        raise ValueError(f"alpha must be a scalar, got shape {jnp.shape(alpha)}")
    a = V.concrete(alpha)
    if a is not None and (not np.isfinite(a) or np.iscomplexobj(a) or float(a) <= 0):
        raise ValueError(f"alpha must be a positive real number, got {a!r}")


def cluster_rzf(H, cluster, D, alpha):
    """Cluster precoders: joint RZF within each cooperation cluster, MRT for APs alone
    ([AP-COOP] eqs. (14)-(18)). ``-> W[M, K, N]``, unit-norm ``w_mk`` or 0.

    ``H[M, K, N]`` channel estimates ``hhat_mk`` (noise-normalised; a real ``H`` is promoted
    to complex), ``cluster[M]`` integer labels (APs with equal labels form one cluster; any
    integers, e.g. from :func:`cfmimo_jax.cooperation.clusters_from_agreements`; an AP alone
    has a label no other AP has), ``D[M, K]`` serving mask (``K_m = {k : D[m, k]}``),
    ``alpha > 0`` the regularisation of eq. (16).

    For a cluster ``C`` of at least two APs, with ``K_C = union_{m in C} K_m`` and
    ``H_C = [h_k^C]_{k in K_C}`` (``|C| N x |K_C|``, eqs. (14)-(15)), the precoder of UE
    ``k_j`` is the ``j``-th column of

        W_C^H = (H_C H_C^H + alpha I_{|C|N})^{-1} H_C = H_C (H_C^H H_C + alpha I_{|K_C|})^{-1},

    i.e. eq. (16) read with the users as rows: eq. (16) as printed,
    ``H_C^H (H_C H_C^H + alpha I)^{-1}``, is ``|K_C| x |C|N``, and its conjugate transpose is
    the standard RZF precoder whose columns are the ``|C|N``-vectors that eq. (17) splits (so
    that ``h_k^{C,H} w_k^C`` is real and positive). The dual, ``|K_C| x |K_C|`` form is
    computed (Cholesky), from the per-AP Grams ``H_m^H H_m`` summed over the cluster. Each
    AP's ``N``-segment is then normalised, eq. (17): ``w_mk = [w_k^C]_m / ||[w_k^C]_m||``.
    Every AP of the cluster transmits to every UE of ``K_C`` (joint transmission; an AP of
    the cluster that serves no UE itself still transmits to the cluster's UEs; see
    :func:`cluster_serving`); multiply by ``D[..., None]`` for precoders on ``D`` alone.
    For an AP alone (a cluster of one AP, "non-cooperating"): MRT on its own UEs, eq. (18)
    (:func:`mrt_precoders`). ``w_mk = 0`` for every other pair and wherever a segment is
    zero.

    Static shapes: the clusters of at least two APs (at most ``R = M // 2`` of them) are
    gathered into a table of ``R`` slots by their root (the lowest AP index of the label);
    each slot's cluster Gram ``sum_{n in C} H_n^H H_n`` (a segment sum of the per-AP Grams over
    the roots; users outside ``K_C`` masked to identity rows) is factored once (Cholesky), and
    every AP solves with its cluster's factor for its own ``N`` right-hand sides,
    ``W_C[m]^T = (A_C^{-1} conj(H_m))^*`` (``A_C`` Hermitian), instead of forming
    ``A_C^{-1}``. Cost ``O(M K^2 N + (M / 2) K^3)`` per realization. Inside ``jit`` the inputs
    are assumed valid (integer labels, finite ``H``, ``alpha > 0``; checked here when
    concrete). In float32, a small ``alpha`` relative to the Gram (``|K_C| > |C| N`` or nearly
    collinear users) loses accuracy.
    """
    _check_cluster_rzf(H, cluster, D, alpha)
    H = as_complex(H)
    return _cluster_rzf(H, jnp.asarray(cluster), jnp.asarray(D).astype(bool), alpha)


_SOLVE_BLOCK = 8


def _blocked_substitute(Lc, B, adjoint: bool = False):
    """Triangular solve with the batch last: ``Lc X = B`` (``adjoint=False``, forward) or
    ``Lc^H X = B`` (``adjoint``, backward), ``Lc[n, n, Bt]`` lower triangular (a Cholesky
    factor, e.g. of :func:`cfmimo_jax.linalg.cholesky`), ``B[n, m, Bt]`` ``-> X[n, m, Bt]``.

    Blocked substitution: a static loop over the ``ceil(n / 8)`` diagonal blocks; each block's
    rows are solved by :mod:`cfmimo_jax.linalg`'s row substitution (a ``fori_loop`` over at
    most 8 rows), then subtracted from all the remaining right-hand sides at once,
    ``B_rest -= L_rest,j X_j`` (forward; ``L_j,rest^H X_j`` backward). About ``n^2 m / 2``
    multiply-adds per matrix (the unblocked loop reads all ``n`` rows at every step: 4x slower
    for ``n = 40``, ``m = 4`` here).
    """
    n = Lc.shape[0]
    starts = list(range(0, n, _SOLVE_BLOCK))
    out = []
    if not adjoint:
        for j0 in starts:
            j1 = min(j0 + _SOLVE_BLOCK, n)
            Xj = _substitute_last(Lc[j0:j1, j0:j1], B[: j1 - j0], lower=True)
            out.append(Xj)
            if j1 < n:
                B = B[j1 - j0 :] - jnp.sum(Lc[j1:, j0:j1, None] * Xj[None], axis=1)
        return jnp.concatenate(out, axis=0)
    for j0 in starts[::-1]:
        j1 = min(j0 + _SOLVE_BLOCK, n)
        Xj = _substitute_last(Lc[j0:j1, j0:j1], B[j0:], lower=False, adjoint=True)
        out.append(Xj)
        if j0 > 0:
            B = B[:j0] - jnp.sum(jnp.conj(Lc[j0:j1, :j0])[:, :, None] * Xj[:, None], axis=0)
    return jnp.concatenate(out[::-1], axis=0)


def _cluster_rzf(H, cluster, D, alpha):
    M, K, N = H.shape
    rdt = real_dtype(H)
    S = same_cluster(cluster)  # [M, M]
    size = jnp.sum(S, axis=1)  # [M]
    root = jnp.argmax(S, axis=1).astype(jnp.int32)  # lowest AP index with the same label
    # per-root cluster Gram sum_{n in C} H_n^H H_n and K_C (zero / false off the roots)
    G = jnp.einsum("mjn,mkn->mjk", jnp.conj(H), H)  # [M, K, K]: H_m^H H_m (a batched dot)
    Gr = jax.ops.segment_sum(pack_hermitian(G), root, num_segments=M)  # packed real: 4x faster
    ur = jax.ops.segment_max(D.astype(jnp.int32), root, num_segments=M) > 0  # [M, K]
    # the clusters of >= 2 APs in R = M // 2 slots (padding slots: identity systems)
    R = max(M // 2, 1)
    multi = (root == jnp.arange(M, dtype=jnp.int32)) & (size >= 2)
    (ridx,) = jnp.nonzero(multi, size=R, fill_value=0)
    valid = jnp.arange(R) < jnp.sum(multi)
    u = (ur[ridx] & valid[:, None]).astype(rdt)  # [R, K]
    eye = jnp.eye(K, dtype=rdt)
    diag = jnp.asarray(alpha, rdt) * u + (1.0 - u)  # alpha on K_C, identity rows elsewhere
    uu = (u[:, :, None] * u[:, None, :]).astype(H.dtype)
    A = unpack_hermitian(Gr[ridx]) * uu + (diag[:, :, None] * eye)
    Lc = _cholesky_last(_to_last(A))  # [K, K, R]
    # every AP solves with its cluster's factor: Y_m = A_C^{-1} conj(H_m) on K_C
    slot = jnp.clip((jnp.cumsum(multi) - 1)[root], 0, R - 1)  # [M]
    Lm = Lc[:, :, slot]  # [K, K, M]
    rhs = jnp.conj(H) * ur[root].astype(H.dtype)[:, :, None]  # [M, K(j), N]
    Y = _blocked_substitute(Lm, _blocked_substitute(Lm, _to_last(rhs)), adjoint=True)
    W_rzf = jnp.conj(_from_last(Y, (M,)))  # [M, K(k), N]: AP m's segment of w_k^C
    W = jnp.where((size >= 2)[:, None, None], W_rzf, H * D.astype(H.dtype)[..., None])
    return _unit_columns(W)

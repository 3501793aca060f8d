"""Receive combining and transmit precoding (book sections 5.1-5.2 and 6.1; seed 001 RZF).

All kernels act on a batch of realizations ``Hhat[n, L, K, N]`` of one setup and return the
combining vectors ``V[n, L, K, N]`` with ``V[:, l, k] = 0`` when AP ``l`` does not serve UE ``k``
(``D[l, k]`` false).

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

from . import _validate as V
from .estimation import powers, real_dtype
from .linalg import chol_solve, inv_chol

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


def centralized_scaled(Hs, D, W=None, per_ue_w=False, mask=None):
    """Centralized MMSE-type combiners up to the factor ``sqrt(p_k)``: ``v'[n, L, K, N]``.

    ``v'_k = (Z + Hs_M Hs_M^H)^{-1} Hs e_k`` over the APs ``M_k`` of UE ``k`` (book (5.11),
    (5.16), (5.18)), computed by Woodbury as ``Z^{-1} Hs (I + G_k)^{-1} e_k``.

    Args:
      Hs: ``Hhat * sqrt(p)``, ``[n, L, K, N]``.
      D: ``[L, K]`` serving sets.
      W: whitening ``W^H W = Z^{-1}``: ``[L, N, N]`` (per AP) or, with ``per_ue_w``,
        ``[L, K, N, N]`` (per AP and UE, as in P-MMSE); ``None`` means ``Z = I``.
      mask: ``[K, K]`` bool, UEs ``i`` included in UE ``k``'s combiner (``P_k``); ``None``: all.
    """
    n, L, K, N = Hs.shape
    Dc = D.astype(Hs.dtype)
    if W is None:
        Y = jnp.swapaxes(Hs, -1, -2)  # [n, L, N, K]
        G = masked_sum(D, jnp.einsum("nlai,nlaj->nlij", jnp.conj(Y), Y))
    elif not per_ue_w:
        Y = jnp.einsum("lab,nlib->nlai", W, Hs)
        G = masked_sum(D, jnp.einsum("nlai,nlaj->nlij", jnp.conj(Y), Y))
    else:
        Y = jnp.einsum("lkab,nlib->nlkai", W, Hs) * Dc[None, :, :, None, None]
        G = jnp.einsum("nlkai,nlkaj->nkij", jnp.conj(Y), Y)
    eye = jnp.eye(K, dtype=Hs.dtype)
    if mask is not None:
        m = mask.astype(Hs.dtype)
        G = G * m[:, :, None] * m[:, None, :]
    M = G + eye  # [n, K(k), K, K]
    rhs = jnp.broadcast_to(eye[:, :, None], (n, K, K, 1))
    tau = chol_solve(M, rhs)[..., 0]  # [n, K(k), K(i)]
    if W is None:
        v = jnp.einsum("nlai,nki->nlka", Y, tau)
    elif not per_ue_w:
        u = jnp.einsum("nlai,nki->nlka", Y, tau)
        v = jnp.einsum("lba,nlkb->nlka", jnp.conj(W), u)
    else:
        u = jnp.einsum("nlkai,nki->nlka", Y, tau)
        v = jnp.einsum("lkba,nlkb->nlka", jnp.conj(W), u)
    return v * Dc[None, :, :, None]


def central_scaled_all(Hhat, C, D, p, schemes=CENTRALIZED):
    """``{scheme: v'}`` for centralized schemes; ``v = sqrt(p_k) v'`` (``mr``: ``v' = hhat``)."""
    K = Hhat.shape[2]
    p = powers(p, K, real_dtype(Hhat))
    Hs = Hhat * jnp.sqrt(p).astype(Hhat.dtype)[None, None, :, None]
    z_full, _, z_partial = error_noise_matrices(C, D, p)
    out = {}
    if "mmse" in schemes:
        out["mmse"] = centralized_scaled(Hs, D, inv_chol(z_full))
    if "p_mmse" in schemes:
        out["p_mmse"] = centralized_scaled(
            Hs, D, inv_chol(z_partial), per_ue_w=True, mask=partial_mask(D)
        )
    if "p_rzf" in schemes:
        out["p_rzf"] = centralized_scaled(Hs, D, None, mask=partial_mask(D))
    if "mr" in schemes:
        out["mr"] = Hhat * D.astype(Hhat.dtype)[None, :, :, None]
    return out


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
        A = z[None] + jnp.einsum("nlia,nlib->nlab", Hsel, jnp.conj(Hsel))
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
    ``Hhat[n, L, K, N]`` estimates, ``C[L, K, N, N]`` error correlations, ``D[L, K]``, ``p[K]``.
    """
    if scheme not in CENTRALIZED:
        raise ValueError(f"scheme must be one of {CENTRALIZED}, got {scheme!r}")
    _check(Hhat, C, D, p)
    D = jnp.asarray(D, bool)
    v = central_scaled_all(Hhat, C, D, p, (scheme,))[scheme]
    if scheme == "mr":
        return v
    K = Hhat.shape[2]
    sp = jnp.sqrt(powers(p, K, real_dtype(Hhat))).astype(Hhat.dtype)
    return v * sp[None, None, :, None]


def distributed_combiners(Hhat, C, D, p, scheme: str):
    """Distributed (local) combining vectors ``V[n, L, K, N]`` (book eqs. (5.29), (5.39), (5.32)).

    ``scheme`` in ``"l_mmse"``, ``"lp_mmse"``, ``"mr"``; e.g. L-MMSE at AP ``l``:
    ``v_lk = p_k (sum_i p_i (hhat_li hhat_li^H + C_li) + I_N)^{-1} hhat_lk``.
    """
    if scheme not in DISTRIBUTED:
        raise ValueError(f"scheme must be one of {DISTRIBUTED}, got {scheme!r}")
    _check(Hhat, C, D, p)
    return distributed_all(Hhat, C, jnp.asarray(D, bool), p, (scheme,))[scheme]


def rzf(H, alpha, user_mask=None):
    """Regularised zero-forcing precoder ``W = H (H^H H + alpha I)^{-1}`` (seed 001, dual form).

    ``H[..., M, K]`` (columns: the users' stacked channels over the cooperating antennas),
    ``alpha > 0``; users with ``user_mask[..., K]`` false are excluded (their columns of ``H`` and
    ``W`` are zero). The inverse is ``K x K`` (number of users), solved by Cholesky. Returns
    ``W[..., M, K]`` (unnormalised).
    """
    if jnp.ndim(H) < 2:
        raise ValueError(f"H must have shape [..., M, K], got {jnp.shape(H)}")
    V.finite("alpha", alpha, positive=True)
    K = H.shape[-1]
    if user_mask is not None:
        H = H * jnp.asarray(user_mask, H.dtype)[..., None, :]
    gram = jnp.conj(jnp.swapaxes(H, -1, -2)) @ H
    A = gram + jnp.asarray(alpha, H.dtype)[..., None, None] * jnp.eye(K, dtype=H.dtype)
    X = chol_solve(A, jnp.broadcast_to(jnp.eye(K, dtype=H.dtype), A.shape))
    return H @ X

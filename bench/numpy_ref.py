"""Vectorised NumPy reference for the spectral-efficiency kernels of one network setup.

This is the benchmark's reference implementation of everything ``cfmimo_jax.se.all_se``
computes, written the way a careful researcher ports the book's MATLAB code to NumPy
(Demir, Bjornson, Sanguinetti, "Foundations of User-Centric Cell-Free Massive MIMO", 2021):

- vectorised over Monte-Carlo realizations (batched ``matmul`` and ``np.linalg.solve``);
- centralized combiners (MMSE, P-MMSE, P-RZF, MR): a Python loop over UEs, each UE's system
  built directly over its serving APs, i.e. of the actual dimension ``|M_k| N`` (no masked
  ``L N`` system, no Woodbury identity);
- distributed combiners (L-MMSE, LP-MMSE, MR): one batched ``N x N`` solve per AP and
  realization;
- second moments of the distributed schemes with the independence-over-APs estimator of
  ``docs/kernels.md`` (``E[g g^H] = m m^H + diag(s)``).

Exact definitions are those of ``docs/kernels.md``; the keys of the returned dicts are
``cfmimo_jax.se.UPLINK_SCHEMES`` / ``DOWNLINK_SCHEMES`` (no aliases). Everything runs in
``complex128`` by default; pass ``dtype=np.complex64`` for single precision (the heavy
operations then run in single precision; the Monte-Carlo sums are accumulated in double).

Realizations are processed in chunks of ``chunk`` so that memory stays bounded.
"""

from __future__ import annotations

import numpy as np

from cfmimo_jax.se import DOWNLINK_SCHEMES, UPLINK_SCHEMES

__all__ = [
    "estimation_statistics",
    "sample_channels",
    "mmse_estimates",
    "all_se_from_realizations",
    "all_se",
    "uplink_se_mr_closed_form",
    "downlink_se_mr_closed_form",
]


# --------------------------------------------------------------------------------------------
# helpers


def _real_dtype(dtype):
    return np.finfo(np.dtype(dtype)).dtype


def _powers(p, K):
    return np.broadcast_to(np.asarray(p, dtype=np.float64), (K,)).copy()


def _herm(A):
    return np.conj(np.swapaxes(A, -1, -2))


def _psi(R, pilot, p, tau_p):
    """``Psi[l, t] = sum_{i: pilot_i = t} p_i tau_p R[l, i] + I`` -> [L, tau_p, N, N]."""
    L, K, N, _ = R.shape
    onehot = (pilot[:, None] == np.arange(tau_p)[None, :]).astype(np.float64)  # [K, tau_p]
    w = (onehot * (p[:, None] * tau_p)).astype(R.dtype)
    # [L, N, N, K] @ [K, tau_p] -> [L, N, N, tau_p]
    Psi = np.moveaxis(np.moveaxis(R, 1, -1) @ w, -1, 1)
    return Psi + np.eye(N, dtype=R.dtype)


def _block_diag(blocks):
    """[m, N, N] -> [m N, m N] block diagonal."""
    m, N, _ = blocks.shape
    out = np.zeros((m, N, m, N), dtype=blocks.dtype)
    idx = np.arange(m)
    out[idx, :, idx, :] = blocks
    return out.reshape(m * N, m * N)


# --------------------------------------------------------------------------------------------
# estimation


def estimation_statistics(R, pilot, p, tau_p, dtype=np.complex128):
    """MMSE estimate and error correlation matrices ``(B, C)``, each [L, K, N, N]."""
    R = np.asarray(R).astype(dtype)
    pilot = np.asarray(pilot)
    K = R.shape[1]
    p = _powers(p, K)
    Psi = _psi(R, pilot, p, tau_p)
    PsiinvR = np.linalg.solve(Psi[:, pilot], R)  # Psi_{l,t_k}^{-1} R_lk
    B = (p * tau_p).astype(_real_dtype(dtype))[None, :, None, None] * (R @ PsiinvR)
    B = 0.5 * (B + _herm(B))
    return B, R - B


def _sqrtm_psd(R):
    lam, U = np.linalg.eigh(R)
    return (U * np.sqrt(np.maximum(lam, 0.0))[..., None, :]) @ _herm(U)


def sample_channels(rng, R, n, dtype=np.complex128):
    """``H [n, L, K, N]``, ``h_lk ~ CN(0, R_lk)`` (symmetric square root of ``R``)."""
    R = np.asarray(R).astype(dtype)
    L, K, N, _ = R.shape
    rdt = _real_dtype(dtype)
    W = rng.standard_normal((L, K, N, n), dtype=rdt) + 1j * rng.standard_normal(
        (L, K, N, n), dtype=rdt
    )
    W = (W * np.sqrt(0.5)).astype(dtype)
    H = _sqrtm_psd(R) @ W  # [L, K, N, n]
    return np.ascontiguousarray(np.moveaxis(H, -1, 0))


def mmse_estimates(rng, H, R, pilot, p, tau_p, dtype=np.complex128):
    """MMSE estimates ``Hhat [n, L, K, N]`` from a fresh received pilot signal."""
    H = np.asarray(H).astype(dtype)
    R = np.asarray(R).astype(dtype)
    pilot = np.asarray(pilot)
    n, L, K, N = H.shape
    p = _powers(p, K)
    rdt = _real_dtype(dtype)
    onehot = (pilot[:, None] == np.arange(tau_p)[None, :]).astype(np.float64)
    w = (onehot * (np.sqrt(p)[:, None] * tau_p)).astype(dtype)  # [K, tau_p]
    # Y[n, L, N, tau_p] = sum_{i: pilot_i = t} sqrt(p_i) tau_p h_li + sqrt(tau_p) noise
    Y = np.swapaxes(H, -1, -2) @ w
    noise = rng.standard_normal(Y.shape, dtype=rdt) + 1j * rng.standard_normal(Y.shape, dtype=rdt)
    Y += (np.sqrt(tau_p / 2.0) * noise).astype(dtype)
    Psi = _psi(R, pilot, p, tau_p)
    # P_lk = sqrt(p_k) R_lk Psi_{l,t_k}^{-1} = sqrt(p_k) (Psi^{-1} R_lk)^H
    P = np.sqrt(p).astype(rdt)[None, :, None, None] * _herm(np.linalg.solve(Psi[:, pilot], R))
    Ysel = np.moveaxis(Y[..., pilot], 0, -1)  # [L, N, K, n]
    Ysel = np.ascontiguousarray(np.swapaxes(Ysel, 1, 2))  # [L, K, N, n]
    Hhat = P @ Ysel  # [L, K, N, n]
    return np.ascontiguousarray(np.moveaxis(Hhat, -1, 0))


# --------------------------------------------------------------------------------------------
# SE from the Monte-Carlo moments


def _uplink_distributed_sinr(m, s, F, D, p, k, a=None):
    """SINR of UE k (Thm 5.4) from m[l, k, i], s[l, k, i], F[l, k]; ``a=None``: optimal LSFD."""
    Mk = np.flatnonzero(D[:, k])
    mk = m[Mk, k, :]  # [|M_k|, K]
    sk = s[Mk, k, :]
    Fk = F[Mk, k]
    mkk = mk[:, k]
    if a is None:
        Mat = (mk * p) @ _herm(mk) + np.diag(sk @ p + Fk) - p[k] * np.outer(mkk, mkk.conj())
        a = np.linalg.solve(Mat, mkk)
    else:
        a = np.ones(len(Mk), dtype=mk.dtype)
    sig = p[k] * np.abs(np.vdot(a, mkk)) ** 2
    aHm = a.conj() @ mk  # [K]
    tot = np.sum(p * (np.abs(aHm) ** 2 + (np.abs(a) ** 2) @ sk))
    return sig / (tot - sig + np.sum(np.abs(a) ** 2 * Fk))


def _uplink_distributed_se(m, s, F, D, p, prelog):
    K = D.shape[1]
    se_1 = np.array([_uplink_distributed_sinr(m, s, F, D, p, k, a=1) for k in range(K)])
    se_o = np.array([_uplink_distributed_sinr(m, s, F, D, p, k) for k in range(K)])
    return prelog * np.log2(1.0 + se_1), prelog * np.log2(1.0 + se_o)


def _downlink_distributed_se(m, s, F, D, rho, prelog):
    """Thm 6.1, ``w_li = sqrt(rho_li) v_li / sqrt(E||v_li||^2)``; m[l, i, k] = E[v_li^H h_lk]."""
    with np.errstate(divide="ignore", invalid="ignore"):
        c2 = np.where(D & (F > 0), rho / np.where(F > 0, F, 1.0), 0.0)  # [L, K(i)]
    c = np.sqrt(c2)
    E = np.einsum("li,lik->ki", c, np.conj(m))  # E[h_k^H w_i]
    V = np.einsum("li,lik->ki", c2, s)
    tot = np.sum(np.abs(E) ** 2 + V, axis=1)
    sig = np.abs(np.diagonal(E)) ** 2
    return prelog * np.log2(1.0 + sig / (tot - sig + 1.0))


def _downlink_centralized_se(mG, mG2, vn2, rho_k, prelog):
    """mG[j, k] = E[h_j^H v_k], mG2 = E|h_j^H v_k|^2, vn2[k] = E||v_k||^2."""
    c2 = np.where(vn2 > 0, rho_k / np.where(vn2 > 0, vn2, 1.0), 0.0)
    sig = c2 * np.abs(np.diagonal(mG)) ** 2
    tot = mG2 @ c2
    return prelog * np.log2(1.0 + sig / (tot - sig + 1.0))


# --------------------------------------------------------------------------------------------
# Monte-Carlo SE


def all_se_from_realizations(H, Hhat, C, D, p, rho, tau_p, tau_c, dtype=np.complex128, chunk=100):
    """All uplink and downlink SEs of one setup from given realizations.

    ``H, Hhat [n, L, K, N]``, error correlations ``C [L, K, N, N]`` (the only estimation
    statistics the Monte-Carlo SEs need); returns ``{"uplink": {key: [K]}, "downlink":
    {key: [K]}}`` with the keys ``UPLINK_SCHEMES`` / ``DOWNLINK_SCHEMES`` and the definitions
    of ``docs/kernels.md``.
    """
    rdt = _real_dtype(dtype)
    H = np.asarray(H)
    Hhat = np.asarray(Hhat)
    C = np.asarray(C).astype(dtype)
    D = np.asarray(D).astype(bool)
    rho = np.asarray(rho, dtype=np.float64)
    n, L, K, N = H.shape
    p = _powers(p, K)
    p_c = p.astype(rdt)
    prelog = (tau_c - tau_p) / tau_c
    eye = np.eye(N, dtype=dtype)

    # per-AP blocks of sum_i p_i C_li + I, over all UEs and over the UEs served by AP l
    pC = p_c[None, :, None, None] * C  # [L, K, N, N]
    Z_all = pC.sum(axis=1) + eye  # [L, N, N]
    Z_loc = np.einsum("lk,lkab->lab", D.astype(rdt), pC) + eye  # S_l only (LP-MMSE)

    # per-UE index sets (centralized)
    M = [np.flatnonzero(D[:, k]) for k in range(K)]
    P = [np.flatnonzero(D[M[k]].any(axis=0)) for k in range(K)]
    Zbd_all = [_block_diag(Z_all[M[k]]) for k in range(K)]
    Zbd_p = []
    for k in range(K):
        blocks = np.einsum("i,liab->lab", p_c[P[k]], C[M[k]][:, P[k]]) + eye
        Zbd_p.append(_block_diag(blocks))

    cent = ("mmse", "p_mmse", "p_rzf", "mr")
    dist = ("l_mmse", "lp_mmse", "mr")
    acc_ul = {s: np.zeros(K) for s in cent}
    acc_G = {s: np.zeros((K, K), np.complex128) for s in cent[:3]}  # [j, k]: h_j^H v_k
    acc_G2 = {s: np.zeros((K, K)) for s in cent[:3]}
    acc_vn = {s: np.zeros(K) for s in cent[:3]}
    acc_g = {s: np.zeros((L, K, K), np.complex128) for s in dist}  # [l, k, i]: v_lk^H h_li
    acc_g2 = {s: np.zeros((L, K, K)) for s in dist}
    acc_F = {s: np.zeros((L, K)) for s in dist}

    Dc = D.astype(rdt)[:, None, :]  # [L, 1, K]
    for start in range(0, n, chunk):
        # [c, L, N, K] layout: per AP, the K channel vectors as columns
        Ht = np.swapaxes(H[start : start + chunk], -1, -2).astype(dtype)
        Hht = np.swapaxes(Hhat[start : start + chunk], -1, -2).astype(dtype)
        c = Ht.shape[0]

        # ---------------- centralized: loop over UEs, system over the serving APs ------------
        for k in range(K):
            Mk, Pk = M[k], P[k]
            d = len(Mk) * N
            Hs = Hht[:, Mk].reshape(c, d, K)  # stacked estimates over M_k
            Htrue = Ht[:, Mk].reshape(c, d, K)
            hk = Hs[:, :, k : k + 1]
            for s in cent:
                if s == "mr":
                    v = hk
                else:
                    if s == "mmse":
                        A = (Hs * p_c) @ _herm(Hs) + Zbd_all[k]
                    else:
                        HP = Hs[:, :, Pk]
                        A = (HP * p_c[Pk]) @ _herm(HP)
                        A += Zbd_p[k] if s == "p_mmse" else np.eye(d, dtype=dtype)
                    v = p_c[k] * np.linalg.solve(A, hk)  # [c, d, 1]
                v = v[:, :, 0]
                vH = np.conj(v)
                q = np.einsum("cd,cdi->ci", vH, Hs)  # v^H hhat_i
                sig = p[k] * np.abs(q[:, k]) ** 2
                interf = np.abs(q) ** 2 @ p - sig
                noise = np.real(np.einsum("cd,cd->c", vH, v @ Zbd_all[k].T))
                acc_ul[s][k] += np.sum(np.log2(1.0 + sig / (interf + noise)))
                if s != "mr":
                    G = np.einsum("cdj,cd->cj", np.conj(Htrue), v)  # h_j^H v_k
                    acc_G[s][:, k] += G.sum(axis=0)
                    acc_G2[s][:, k] += np.sum(np.abs(G) ** 2, axis=0)
                    acc_vn[s][k] += np.sum(np.abs(v) ** 2)

        # ---------------- distributed: batched N x N solves per AP and realization ----------
        HhP = Hht * p_c  # p_i hhat_li as columns
        for s in dist:
            if s == "mr":
                V = Hht
            else:
                if s == "l_mmse":
                    A = HhP @ _herm(Hht) + Z_all
                else:
                    A = (HhP * Dc) @ _herm(Hht) + Z_loc
                V = np.linalg.solve(A, HhP)  # v_lk = p_k A_l^{-1} hhat_lk, [c, L, N, K]
            V = V * Dc  # v_lk = 0 for APs not serving k
            g = _herm(V) @ Ht  # [c, L, K, K]: g[l, k, i] = v_lk^H h_li
            acc_g[s] += g.sum(axis=0)
            acc_g2[s] += np.sum(np.abs(g) ** 2, axis=0)
            acc_F[s] += np.sum(np.abs(V) ** 2, axis=2).sum(axis=0)

    # ---------------- finalize ---------------------------------------------------------------
    up, dl = {}, {}
    for s in cent:
        up["mr_central" if s == "mr" else s] = prelog * acc_ul[s] / n
    rho_k = rho.sum(axis=0)
    for s in cent[:3]:
        dl[s] = _downlink_centralized_se(acc_G[s] / n, acc_G2[s] / n, acc_vn[s] / n, rho_k, prelog)
    for s in dist:
        m = acc_g[s] / n
        sv = np.maximum(acc_g2[s] / n - np.abs(m) ** 2, 0.0)
        F = acc_F[s] / n
        name = "mr_dist" if s == "mr" else s
        up[name], up[name + "_lsfd"] = _uplink_distributed_se(m, sv, F, D, p, prelog)
        dl[name] = _downlink_distributed_se(m, sv, F, D, rho, prelog)
    return {
        "uplink": {key: up[key] for key in UPLINK_SCHEMES},
        "downlink": {key: dl[key] for key in DOWNLINK_SCHEMES},
    }


def all_se(rng, R, pilot, D, p, rho, tau_p, tau_c, n, dtype=np.complex128, chunk=100):
    """Draw ``n`` channel and estimate realizations and return all SEs (see above)."""
    if isinstance(rng, int | np.integer):
        rng = np.random.default_rng(rng)
    R = np.asarray(R).astype(dtype)
    _, C = estimation_statistics(R, pilot, p, tau_p, dtype=dtype)
    H = sample_channels(rng, R, n, dtype=dtype)
    Hhat = mmse_estimates(rng, H, R, pilot, p, tau_p, dtype=dtype)
    return all_se_from_realizations(H, Hhat, C, D, p, rho, tau_p, tau_c, dtype=dtype, chunk=chunk)


# --------------------------------------------------------------------------------------------
# MR closed forms (Cor. 5.6 and Cor. 6.3), for validation


def _trace_products(X, Y):
    """T[l, k, i] = tr(X_lk Y_li)."""
    return np.einsum("lkab,liba->lki", X, Y)


def uplink_se_mr_closed_form(R, B, pilot, D, p, tau_p, tau_c, lsfd=False):
    """Distributed MR uplink SE in closed form; ``lsfd=True``: optimal LSFD weights."""
    R = np.asarray(R, dtype=np.complex128)
    B = np.asarray(B, dtype=np.complex128)
    pilot = np.asarray(pilot)
    D = np.asarray(D, dtype=bool)
    K = R.shape[1]
    p = _powers(p, K)
    Psi = _psi(R, pilot, p, tau_p)
    Q = _herm(np.linalg.solve(Psi[:, pilot], R))  # R_lk Psi_{l,t_k}^{-1}
    same = pilot[:, None] == pilot[None, :]
    m = (p * tau_p)[None, :, None] * _trace_products(Q, R) * same[None]
    s = np.real(_trace_products(B, R))
    F = np.real(np.trace(B, axis1=-2, axis2=-1))
    prelog = (tau_c - tau_p) / tau_c
    one, opt = _uplink_distributed_se(m, s, F, D, p, prelog)
    return opt if lsfd else one


def downlink_se_mr_closed_form(R, B, pilot, D, rho, p, tau_p, tau_c):
    """Distributed MR downlink SE in closed form (Cor. 6.3); ``p`` the pilot powers."""
    R = np.asarray(R, dtype=np.complex128)
    B = np.asarray(B, dtype=np.complex128)
    pilot = np.asarray(pilot)
    D = np.asarray(D, dtype=bool)
    rho = np.asarray(rho, dtype=np.float64)
    K = R.shape[1]
    p = _powers(p, K)
    Psi = _psi(R, pilot, p, tau_p)
    Q = _herm(np.linalg.solve(Psi[:, pilot], R))  # R_li Psi_{l,t_i}^{-1}
    b = np.real(np.trace(B, axis1=-2, axis2=-1))  # [L, K]
    bs = np.where(D, b, 1.0)
    signal = np.sum(np.where(D, np.sqrt(rho * b), 0.0), axis=0)
    tBR = np.real(_trace_products(B, R))  # [l, i, k] = tr(B_li R_lk)
    interf = np.einsum("li,lik->k", np.where(D, rho / bs, 0.0), tBR)
    same = pilot[:, None] == pilot[None, :]
    tQR = _trace_products(Q, R)  # [l, i, k] = tr(R_li Psi^{-1} R_lk)
    wgt = np.where(D, np.sqrt(rho) * p[None, :] * tau_p / np.sqrt(bs), 0.0)  # [l, i]
    cont = np.einsum("li,lik->ki", wgt, tQR) * same  # [k, i]
    sinr = signal**2 / (interf + np.sum(np.abs(cont) ** 2, axis=1) - signal**2 + 1.0)
    return (tau_c - tau_p) / tau_c * np.log2(1.0 + sinr)

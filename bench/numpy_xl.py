"""Vectorised NumPy implementation of one drop of the cell-free XL-MIMO uplink of [XL-FUZZY].

The benchmark's reference for ``bench/bench_xl.py``: the same equations as the JAX path
(``cfmimo_jax.nearfield.drop_large_scale`` + ``sample_channels`` for the channels,
``cfmimo_jax.se.uplink_se_log_det`` for the SE), written the way a researcher vectorises them
in NumPy: batched ``matmul`` over realizations, BSs and UEs, ``np.linalg.solve`` for the
L-MMSE combiners, ``np.linalg.slogdet`` for eq. (8); no Python loop over BSs, UEs, antennas
or realizations.

- Large-scale fading ([XL-FUZZY] section V; book eqs. (5.42)-(5.44)): BSs and UEs uniform in a
  ``side x side`` square with wrap-around, 3-D distance with a height difference, path loss
  ``-30.5 - 36.7 log10(d)``, shadow fading ``F ~ N(0, 4^2)`` correlated over UEs as
  ``std^2 2^(-delta / decorrelation)`` (or i.i.d.), over the noise ``-174 + 10 log10(B) + NF``
  dBm: :func:`drop_large_scale`.
- Small-scale fading ([XL-FUZZY] eqs. (1)-(4)): ``H_mk = A_r diag(sqrt(var_r)) W_mk
  diag(sqrt(var_s)) A_s^T`` with ``W_mk`` i.i.d. ``CN(0, 1)``, ``G_mk = sqrt(beta_mk) H_mk``:
  :func:`sample_channels`. The wavenumber lattice and its variances are geometry only; they
  come from ``cfmimo_jax.nearfield.wavenumber_lattice`` / ``response_matrix`` (NumPy float64
  functions, computed once at construction: :func:`plane_wave_bases`); the per-drop random
  draw and the steering-vector sums are NumPy here.
- SE ([XL-FUZZY] Corollary 1, eq. (8)), written literally:
  ``E_k = sqrt(p_k) sum_m E{V_mk^H G_mk}``,
  ``Psi_k = sum_l p_l sum_m sum_m' E{V_mk^H G_ml G_m'l^H V_m'k} - E_k E_k^H
  + sum_m E{V_mk^H V_mk}``, ``SE_k = log2 det(I + E_k^H Psi_k^{-1} E_k)``, with MR
  ``V_mk = G_mk`` or L-MMSE ``V_mk = (sum_l p_l G_ml G_ml^H + I)^{-1} G_mk`` (the ``N_r x N_r``
  system solved directly, as the paper writes it), expectations as sample means over the
  realizations; ``estimator="independent"`` takes the cross-BS terms (``m != m'``) as the
  product of two sample means, ``"sample"`` the sample mean of the whole product (the two
  readings of ``cfmimo_jax.se.uplink_se_log_det``): :func:`uplink_se_log_det`.

Precision: complex128 / float64 by default (NumPy's natural precision); ``dtype=np.complex64``
runs the channel draw, the combiners and the products in single precision (the final
``N_s x N_s`` algebra of eq. (8) stays in double).
"""

from __future__ import annotations

import math

import numpy as np

from cfmimo_jax.nearfield import planar_positions, response_matrix, wavenumber_lattice

__all__ = [
    "plane_wave_bases",
    "drop_large_scale",
    "sample_channels",
    "combiner_products",
    "uplink_se_log_det",
    "COMBINERS",
    "ESTIMATORS",
]

COMBINERS = ("mr", "l_mmse")
ESTIMATORS = ("independent", "sample")


def _herm(A):
    return np.conj(np.swapaxes(A, -1, -2))


def _real(dtype):
    return np.finfo(np.dtype(dtype)).dtype


def _check_dtype(dtype):
    dtype = np.dtype(dtype)
    if dtype not in (np.complex64, np.complex128):
        raise ValueError(f"dtype must be complex64 or complex128, got {dtype}")
    return dtype


# --------------------------------------------------------------------------------------------
# geometry (once per array pair)


def plane_wave_bases(
    bs_array=(9, 9),
    ue_array=(3, 3),
    spacing=1.0 / 3.0,
    ue_spacing=None,
    *,
    lattice="cover",
    prune_tol=1e-6,
    dtype=np.complex128,
):
    """Scaled responses ``(B_r[N_r, n_r], B_s[N_s, n_s])``, ``B = A diag(sqrt(var))``.

    ``A`` are the unit-modulus responses of [XL-FUZZY] eqs. (1)-(3) and ``var`` the isotropic
    spectral variances (each side summing to 1) of ``cfmimo_jax.nearfield.wavenumber_lattice``,
    so ``H = B_r W B_s^T`` with ``W`` i.i.d. ``CN(0, 1)`` is eq. (3)'s series with
    ``E|H_ij|^2 = 1``. ``bs_array``, ``ue_array``: ``(N_V, N_H)``; spacings in wavelengths.
    """
    dtype = _check_dtype(dtype)
    ss = spacing if ue_spacing is None else ue_spacing
    out = []
    for name, shape, s in (("bs_array", bs_array, spacing), ("ue_array", ue_array, ss)):
        try:
            nv, nh = (int(x) for x in shape)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a pair (N_V, N_H), got {shape!r}") from None
        index, var = wavenumber_lattice(nv, nh, s, lattice=lattice, prune_tol=prune_tol)
        a = response_matrix(index, planar_positions(nv, nh, s), nv, nh, s)
        out.append((a * np.sqrt(var)[None, :]).astype(dtype))
    return out[0], out[1]


# --------------------------------------------------------------------------------------------
# large-scale fading of one drop


def _wraparound_distance(bs_pos, ue_pos, side, height):
    """3-D distance ``[M, K]``: the nearest of the nine copies ``BS + s``,
    ``s in {-side, 0, side}^2`` (book section 5.3), and the height difference."""
    shifts = np.array([-side, 0.0, side])
    s = np.stack(np.meshgrid(shifts, shifts, indexing="ij"), axis=-1).reshape(9, 2)
    disp = ue_pos[None, :, None, :] - (bs_pos[:, None, None, :] + s[None, None])  # [M, K, 9, 2]
    d2 = np.min(np.sum(disp**2, axis=-1), axis=-1)
    return np.sqrt(d2 + height**2)


def drop_large_scale(
    rng,
    M=9,
    K=6,
    *,
    bs_layout="random",
    side=1000.0,
    height=10.0,
    shadow_std_db=4.0,
    decorrelation_m=9.0,
    bandwidth_hz=20e6,
    noise_figure_db=7.0,
):
    """``(beta[M, K], beta_db[M, K])`` of one drop ([XL-FUZZY] section V), float64.

    ``beta_db = -30.5 - 36.7 log10(d_mk) + F_mk - noise_dBm`` (book eq. (5.42)),
    ``noise_dBm = -174 + 10 log10(bandwidth_hz) + noise_figure_db``; ``d_mk`` the wrap-around
    3-D distance; ``F[m, :] = chol(Sigma) z_m``, ``Sigma_ki = std^2 2^(-delta_ki / dcorr)``
    (book eq. (5.44); relative jitter 1e-6 on the diagonal) or i.i.d. ``N(0, std^2)`` when
    ``decorrelation_m`` is None (``F = 0`` when ``shadow_std_db = 0``). ``bs_layout``:
    ``"random"`` (uniform) or ``"grid"`` (``M`` a square number, cell centres). ``rng``: a
    ``numpy.random.Generator``; draws, in order, the BS positions (random layout), the UE
    positions and the shadowing's normals.
    """
    if not isinstance(M, int) or M < 1:
        raise ValueError(f"M must be a positive int, got {M!r}")
    if not isinstance(K, int) or K < 1:
        raise ValueError(f"K must be a positive int, got {K!r}")
    if not (np.isfinite(side) and side > 0):
        raise ValueError(f"side must be positive, got {side!r}")
    if not (np.isfinite(shadow_std_db) and shadow_std_db >= 0):
        raise ValueError(f"shadow_std_db must be non-negative, got {shadow_std_db!r}")
    if decorrelation_m is not None and not (np.isfinite(decorrelation_m) and decorrelation_m > 0):
        raise ValueError(f"decorrelation_m must be positive or None, got {decorrelation_m!r}")
    if bs_layout == "random":
        bs_pos = side * rng.random((M, 2))
    elif bs_layout == "grid":
        n = math.isqrt(M)
        if n * n != M:
            raise ValueError(f"M={M} must be a square number for bs_layout='grid'")
        c = (np.arange(n) + 0.5) * side / n
        bs_pos = np.stack(np.meshgrid(c, c, indexing="ij"), axis=-1).reshape(M, 2)
    else:
        raise ValueError(f"bs_layout must be 'random' or 'grid', got {bs_layout!r}")
    ue_pos = side * rng.random((K, 2))
    d = _wraparound_distance(bs_pos, ue_pos, side, height)
    if shadow_std_db == 0:
        F = np.zeros((M, K))
    elif decorrelation_m is None:
        F = shadow_std_db * rng.standard_normal((M, K))
    else:
        delta = np.sqrt(np.sum((ue_pos[:, None] - ue_pos[None]) ** 2, axis=-1))
        sigma = shadow_std_db**2 * 2.0 ** (-delta / decorrelation_m)
        chol = np.linalg.cholesky(sigma + 1e-6 * shadow_std_db**2 * np.eye(K))
        F = rng.standard_normal((M, K)) @ chol.T
    noise_dbm = -174.0 + 10.0 * np.log10(bandwidth_hz) + noise_figure_db
    beta_db = -30.5 - 36.7 * np.log10(d) + F - noise_dbm
    return 10.0 ** (beta_db / 10.0), beta_db


# --------------------------------------------------------------------------------------------
# small-scale fading


def sample_channels(rng, Br, Bs, beta, n, dtype=None):
    """``n`` realizations ``G[n, M, K, N_r, N_s]`` of [XL-FUZZY] eqs. (3)-(4).

    ``G_mk = sqrt(beta_mk) B_r W_mk B_s^T``, ``W_mk[n_r, n_s]`` i.i.d. ``CN(0, 1)``
    (``(x + i y) / sqrt(2)``, ``x, y ~ N(0, 1)``), independent over realizations and BS-UE
    pairs. ``Br[N_r, n_r]``, ``Bs[N_s, n_s]`` from :func:`plane_wave_bases`; ``beta[M, K]``
    linear (over the noise); ``dtype`` defaults to that of ``Br``.
    """
    dtype = _check_dtype(Br.dtype if dtype is None else dtype)
    beta = np.asarray(beta, np.float64)
    if beta.ndim != 2:
        raise ValueError(f"beta must have shape [M, K], got {beta.shape}")
    if not np.all(np.isfinite(beta)) or np.any(beta < 0):
        raise ValueError("beta must be finite and non-negative")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    M, K = beta.shape
    shape = (n, M, K, Br.shape[1], Bs.shape[1])
    rd = _real(dtype)
    W = rng.standard_normal(shape, dtype=rd) + 1j * rng.standard_normal(shape, dtype=rd)
    W = W.astype(dtype, copy=False)
    # the sqrt(1/2) of CN(0, 1) and sqrt(beta) folded into the smaller factor
    Bs_t = Bs.astype(dtype).T  # [n_s, N_s]
    scale = (np.sqrt(0.5 * beta)).astype(rd)[None, :, :, None, None]
    return (Br.astype(dtype) @ (W @ Bs_t)) * scale


# --------------------------------------------------------------------------------------------
# SE of eq. (8)


def _powers(p, K):
    p = np.asarray(p, np.float64)
    if p.ndim == 0:
        p = np.full((K,), float(p))
    if p.shape != (K,):
        raise ValueError(f"p must be a scalar or have shape ({K},), got {p.shape}")
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise ValueError("p must be finite and non-negative")
    return p


def combiner_products(G, p, combiner="mr"):
    """Per-realization products of the combiners: ``(A, VV)``.

    ``A[n, M, K, N_s, K, N_s]``: block ``[j, m, k, :, l, :] = V_mk^H G_ml``;
    ``VV[n, M, K, N_s, N_s] = V_mk^H V_mk``. MR ``V_mk = G_mk``; L-MMSE
    ``V_mk = Phi_m^{-1} G_mk``, ``Phi_m = sum_l p_l G_ml G_ml^H + I_Nr`` ([XL-FUZZY] section
    II-B, the ``N_r x N_r`` system by ``np.linalg.solve``; the paper's leading ``p_k`` cancels in
    eq. (8) and is left out). ``G[n, M, K, N_r, N_s]``, ``p[K]`` per-antenna powers.
    """
    n, M, K, Nr, Ns = G.shape
    d = K * Ns
    Gf = np.swapaxes(G, 2, 3).reshape(n, M, Nr, d)  # column (k, a) = antenna a of UE k
    if combiner == "mr":
        Vf = Gf
    elif combiner == "l_mmse":
        pr = np.repeat(p, Ns).astype(_real(G.dtype))
        Phi = (Gf * pr) @ _herm(Gf)
        Phi += np.eye(Nr, dtype=G.dtype)
        Vf = np.linalg.solve(Phi, Gf)
    else:
        raise ValueError(f"combiner must be one of {COMBINERS}, got {combiner!r}")
    A = (_herm(Vf) @ Gf).reshape(n, M, K, Ns, K, Ns)
    if combiner == "mr":  # V_mk^H V_mk = G_mk^H G_mk: the diagonal blocks of A
        return A, np.einsum("nmkakb->nmkab", A)
    Vb = Vf.reshape(n, M, Nr, K, Ns).transpose(0, 1, 3, 2, 4)  # [n, M, K, N_r, N_s]
    VV = _herm(Vb) @ Vb
    return A, VV


def uplink_se_log_det(G, p, combiner="mr", *, estimator="independent"):
    """SE ``[K]`` (bit/s/Hz) of [XL-FUZZY] eq. (8) on the realizations ``G[n, M, K, N_r, N_s]``
    (over the noise) with per-antenna powers ``p[K]`` (or a scalar); module docstring.

    The sample means are over the ``n`` realizations; the final ``N_s x N_s`` algebra
    (``Psi_k``, its solve and the log-det) in complex128.
    """
    G = np.asarray(G)
    if G.ndim != 5:
        raise ValueError(f"G must have shape [n, M, K, N_r, N_s], got {G.shape}")
    if not np.iscomplexobj(G):
        G = G.astype(np.complex128)
    if not np.all(np.isfinite(G)):
        raise ValueError("G must be finite")
    n, M, K, Nr, Ns = G.shape
    p = _powers(p, K)
    if combiner not in COMBINERS:
        raise ValueError(f"combiner must be one of {COMBINERS}, got {combiner!r}")
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    A, VV = combiner_products(G, p, combiner)
    A = A.astype(np.complex128, copy=False)
    mu = A.mean(axis=0)  # E{V_mk^H G_ml}: [M, K, N_s, K, N_s]
    smu = mu.sum(axis=0)  # sum_m E{V_mk^H G_ml}: [K, N_s, K, N_s]
    kk = np.arange(K)
    ebar = smu[kk, :, kk, :]  # E_k / sqrt(p_k): [K, N_s, N_s]
    # X[..., k, l, a, b] = (V_mk^H G_ml)[a, b]
    if estimator == "independent":
        X = A.transpose(1, 2, 4, 3, 0, 5).reshape(M, K, K, Ns, n * Ns)
        second = (X @ _herm(X)) / n  # E{A_mkl A_mkl^H}: [M, K, K, N_s, N_s]
        mu_kl = mu.transpose(0, 1, 3, 2, 4)  # [M, K, K, N_s, N_s]
        smu_kl = smu.transpose(0, 2, 1, 3)  # [K, K, N_s, N_s]
        # sum_m sum_m' = (sum_m mu_m)(sum_m' mu_m')^H + sum_m (E{A_m A_m^H} - mu_m mu_m^H)
        T = smu_kl @ _herm(smu_kl) + np.sum(second - mu_kl @ _herm(mu_kl), axis=0)
    else:
        S = A.sum(axis=1)  # sum_m V_mk^H G_ml: [n, K, N_s, K, N_s]
        X = S.transpose(1, 3, 2, 0, 4).reshape(K, K, Ns, n * Ns)
        T = (X @ _herm(X)) / n  # [K, K, N_s, N_s]
    Psi = np.einsum("l,klad->kad", p, T)
    Psi -= p[:, None, None] * (ebar @ _herm(ebar))  # - E_k E_k^H
    Psi += VV.astype(np.complex128).mean(axis=0).sum(axis=0)  # + sum_m E{V_mk^H V_mk}
    Psi = 0.5 * (Psi + _herm(Psi))
    E = np.sqrt(p)[:, None, None] * ebar
    Mk = np.eye(Ns) + _herm(E) @ np.linalg.solve(Psi, E)
    sign, logdet = np.linalg.slogdet(0.5 * (Mk + _herm(Mk)))
    return logdet / np.log(2.0)

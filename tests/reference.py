"""Independent NumPy float64 reference implementation of the physics kernels.

Written directly from ``docs/kernels.md`` and the book (Demir, Björnson, Sanguinetti,
*Foundations of User-Centric Cell-Free Massive MIMO*, 2021).  Clarity over speed: explicit
loops over APs, UEs and realizations, the centralized combiners built as the full stacked
``|M_k| N``-dimensional system of each UE and solved with ``numpy.linalg.solve`` (no Woodbury,
no Cholesky tricks).  Nothing here imports ``cfmimo_jax``.

Shapes (AP axis first): ``gain_db[L, K]``, ``R[L, K, N, N]``, ``H[n, L, K, N]``, ``pilot[K]``,
``D[L, K]`` (bool), ``p[K]`` (or scalar), ``rho[L, K]``.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

SIDE = 1000.0
HEIGHT = 10.0

UPLINK_CENTRALIZED = ("mmse", "p_mmse", "p_rzf", "mr")
UPLINK_DISTRIBUTED = ("l_mmse", "lp_mmse", "mr")
UPLINK_KEYS = (
    "mmse",
    "p_mmse",
    "p_rzf",
    "mr",
    "l_mmse",
    "lp_mmse",
    "mr_dist",
    "l_mmse_lsfd",
    "lp_mmse_lsfd",
    "mr_dist_lsfd",
)
DOWNLINK_DISTRIBUTED = ("l_mmse", "lp_mmse", "mr")
DOWNLINK_CENTRALIZED = ("mmse", "p_mmse", "p_rzf")
DOWNLINK_KEYS = DOWNLINK_DISTRIBUTED + DOWNLINK_CENTRALIZED


def _powers(p, K):
    """Uplink powers as a float64 vector of length K (``p`` may be a scalar)."""
    return np.broadcast_to(np.asarray(p, dtype=np.float64), (K,)).copy()


# ----------------------------------------------------------------------------------------------
# Path loss, noise, geometry, shadowing (book section 5.3 / 5.4 simulation setup)
# ----------------------------------------------------------------------------------------------


def noise_power_dbm(bandwidth_hz=20e6, noise_figure_db=7.0):
    """Noise power ``-174 dBm/Hz + 10 log10(B) + NF`` (book section 5.3 simulation setup)."""
    return -174.0 + 10.0 * np.log10(bandwidth_hz) + noise_figure_db


def pathloss_db(distance_m):
    """3GPP Urban Microcell path loss ``-30.5 - 36.7 log10(d / 1 m)`` (book section 5.3)."""
    return -30.5 - 36.7 * np.log10(np.asarray(distance_m, dtype=np.float64))


def wrapped_geometry(ap_pos, ue_pos, side=SIDE, height=HEIGHT):
    """Wrap-around distance and angles, loop over every AP-UE pair and the nine shifts.

    Returns ``distance[L, K]`` (3-D, metres), ``azimuth[L, K]`` (``atan2(dy, dx)`` of the
    shortest horizontal displacement AP -> UE) and ``elevation[L, K] = asin(height / d)``.
    """
    ap_pos = np.asarray(ap_pos, dtype=np.float64)
    ue_pos = np.asarray(ue_pos, dtype=np.float64)
    L, K = ap_pos.shape[0], ue_pos.shape[0]
    distance = np.zeros((L, K))
    azimuth = np.zeros((L, K))
    elevation = np.zeros((L, K))
    for l in range(L):
        for k in range(K):
            best = None
            for sx in (-side, 0.0, side):
                for sy in (-side, 0.0, side):
                    dx = ue_pos[k, 0] - (ap_pos[l, 0] + sx)
                    dy = ue_pos[k, 1] - (ap_pos[l, 1] + sy)
                    r = np.hypot(dx, dy)
                    if best is None or r < best[0]:
                        best = (r, dx, dy)
            r, dx, dy = best
            d = np.sqrt(r**2 + height**2)
            distance[l, k] = d
            azimuth[l, k] = np.arctan2(dy, dx)
            elevation[l, k] = np.arcsin(height / d)
    return distance, azimuth, elevation


def shadowing_covariance(ue_pos, std_db=4.0, decorrelation_m=9.0):
    """``Sigma[k, i] = 4^2 2^(-delta_ki / 9 m)``, plain Euclidean UE distance (book sec. 5.3)."""
    ue_pos = np.asarray(ue_pos, dtype=np.float64)
    K = ue_pos.shape[0]
    Sigma = np.zeros((K, K))
    for k in range(K):
        for i in range(K):
            delta = np.linalg.norm(ue_pos[k] - ue_pos[i])
            Sigma[k, i] = std_db**2 * 2.0 ** (-delta / decorrelation_m)
    return Sigma


def gain_db_from_geometry(distance, shadowing_db, bandwidth_hz=20e6, noise_figure_db=7.0):
    """``gain_db = -30.5 - 36.7 log10 d + F - noise_dBm`` (gain over noise)."""
    return pathloss_db(distance) + shadowing_db - noise_power_dbm(bandwidth_hz, noise_figure_db)


# ----------------------------------------------------------------------------------------------
# Local scattering spatial correlation (book eq. (2.18) and its 2-D extension)
# ----------------------------------------------------------------------------------------------


def _gaussian_nodes(asd, n_grid, width):
    """Trapezoid nodes and weights for ``E[f(delta)]``, ``delta ~ N(0, asd^2)``.

    The weights are the Gaussian density times the trapezoid step, renormalised to sum to one
    (the truncation at ``width`` standard deviations removes < 1e-30 of the mass).
    """
    if asd == 0.0:
        return np.zeros(1), np.ones(1)
    x = np.linspace(-width * asd, width * asd, n_grid)
    w = np.exp(-(x**2) / (2.0 * asd**2))
    w[0] *= 0.5
    w[-1] *= 0.5
    return x, w / w.sum()


def local_scattering_first_row(
    n_antennas, azimuth, elevation, asd_azimuth, asd_elevation, spacing=0.5, n_grid=481, width=12.0
):
    """First row ``[R]_{1,n} = E[exp(j 2 pi d_n sin(az + delta) cos(el + eps))]``.

    Direct numerical integration over a dense 2-D grid (trapezoid rule with Gaussian weights),
    ``d_n = (n - 1) * spacing``.  For the Gaussian-weighted analytic integrand the trapezoid
    rule converges geometrically; ``n_grid=481`` over +-12 std is converged to ~1e-14 for the
    array sizes used in the tests (checked against scipy quadrature in the tests).
    """
    dx, wx = _gaussian_nodes(float(asd_azimuth), n_grid, width)
    ex, we = _gaussian_nodes(float(asd_elevation), n_grid, width)
    s = np.sin(azimuth + dx)[:, None] * np.cos(elevation + ex)[None, :]
    w = wx[:, None] * we[None, :]
    row = np.zeros(n_antennas, dtype=np.complex128)
    for n in range(n_antennas):
        row[n] = np.sum(w * np.exp(1j * 2.0 * np.pi * n * spacing * s))
    return row


def toeplitz_hermitian(first_row):
    """Hermitian Toeplitz matrix with ``R[m, n] = row[n - m]`` (n >= m), ``R[n, m] = conj``."""
    N = len(first_row)
    R = np.zeros((N, N), dtype=np.complex128)
    for m in range(N):
        for n in range(N):
            R[m, n] = first_row[n - m] if n >= m else np.conj(first_row[m - n])
    return R


def local_scattering(
    n_antennas, azimuth, elevation, asd_azimuth, asd_elevation, spacing=0.5, n_grid=481
):
    """Normalised local-scattering correlation matrix, ``tr(R) = N`` (book eq. (2.18))."""
    row = local_scattering_first_row(
        n_antennas, azimuth, elevation, asd_azimuth, asd_elevation, spacing, n_grid
    )
    return toeplitz_hermitian(row)


# ----------------------------------------------------------------------------------------------
# Pilot assignment and dynamic cooperation clustering (book Algorithm 4.1, section 4.4)
# ----------------------------------------------------------------------------------------------


def master_aps(gain_db):
    """Master AP of each UE: its strongest AP."""
    gain_db = np.asarray(gain_db)
    return np.array([int(np.argmax(gain_db[:, k])) for k in range(gain_db.shape[1])])


def assign_pilots(gain_db, tau_p):
    """Book Algorithm 4.1: UE k < tau_p gets pilot k; each later UE (in index order) takes the
    pilot with the least received power ``sum_{i<k, pilot_i=t} 10^(gain_db[master_k, i]/10)``
    at its master AP, ties to the lowest pilot index."""
    gain_db = np.asarray(gain_db, dtype=np.float64)
    L, K = gain_db.shape
    pilot = np.full(K, -1, dtype=np.int64)
    for k in range(K):
        if k < tau_p:
            pilot[k] = k
            continue
        master = int(np.argmax(gain_db[:, k]))
        power = np.zeros(tau_p)
        for t in range(tau_p):
            for i in range(k):
                if pilot[i] == t:
                    power[t] += 10.0 ** (gain_db[master, i] / 10.0)
        best = 0
        for t in range(1, tau_p):
            if power[t] < power[best]:
                best = t
        pilot[k] = best
    return pilot


def dcc(gain_db, pilot, tau_p):
    """Book section 4.4: ``D[master_k, k] = 1``; each AP serves, on every used pilot, the UE
    with the largest gain among those sharing that pilot (first index on ties)."""
    gain_db = np.asarray(gain_db, dtype=np.float64)
    L, K = gain_db.shape
    D = np.zeros((L, K), dtype=bool)
    for k in range(K):
        D[int(np.argmax(gain_db[:, k])), k] = True
    for l in range(L):
        for t in range(tau_p):
            best = None
            for k in range(K):
                if pilot[k] == t and (best is None or gain_db[l, k] > gain_db[l, best]):
                    best = k
            if best is not None:
                D[l, best] = True
    return D


# ----------------------------------------------------------------------------------------------
# Channel estimation (book section 4.2)
# ----------------------------------------------------------------------------------------------


def psi_matrices(R, pilot, p, tau_p):
    """``Psi[l, t] = sum_{i: pilot_i = t} p_i tau_p R_li + I_N`` (book section 4.2)."""
    L, K, N, _ = R.shape
    p = _powers(p, K)
    Psi = np.zeros((L, tau_p, N, N), dtype=np.complex128)
    for l in range(L):
        for t in range(tau_p):
            Psi[l, t] = np.eye(N)
            for i in range(K):
                if pilot[i] == t:
                    Psi[l, t] += p[i] * tau_p * R[l, i]
    return Psi


def estimation_statistics(R, pilot, p, tau_p):
    """``B_lk = p_k tau_p R_lk Psi_{l,t_k}^{-1} R_lk``, ``C_lk = R_lk - B_lk`` (book sec. 4.2)."""
    L, K, N, _ = R.shape
    p = _powers(p, K)
    Psi = psi_matrices(R, pilot, p, tau_p)
    B = np.zeros_like(R, dtype=np.complex128)
    for l in range(L):
        for k in range(K):
            B[l, k] = p[k] * tau_p * R[l, k] @ np.linalg.solve(Psi[l, pilot[k]], R[l, k])
    return B, R - B


def mmse_from_pilot_signal(Y, R, pilot, p, tau_p):
    """MMSE estimate ``hhat_lk = sqrt(p_k) R_lk Psi_{l,t_k}^{-1} y_{l,t_k}`` (book section 4.2)."""
    n, L, _, N = Y.shape
    K = R.shape[1]
    p = _powers(p, K)
    Psi = psi_matrices(R, pilot, p, tau_p)
    Hhat = np.zeros((n, L, K, N), dtype=np.complex128)
    for r in range(n):
        for l in range(L):
            for k in range(K):
                t = pilot[k]
                Hhat[r, l, k] = np.sqrt(p[k]) * R[l, k] @ np.linalg.solve(Psi[l, t], Y[r, l, t])
    return Hhat


def ls_from_pilot_signal(Y, pilot, p, tau_p):
    """Least-squares estimate ``hhat_lk = y_{l,t_k} / (sqrt(p_k) tau_p)`` (book section 4.2, LS)."""
    n, L, _, N = Y.shape
    K = len(pilot)
    p = _powers(p, K)
    Hhat = np.zeros((n, L, K, N), dtype=np.complex128)
    for r in range(n):
        for l in range(L):
            for k in range(K):
                Hhat[r, l, k] = Y[r, l, pilot[k]] / (np.sqrt(p[k]) * tau_p)
    return Hhat


def sample_channels(rng, R, n):
    """NumPy draws ``h_lk ~ CN(0, R_lk)`` (independent over APs, UEs, realizations)."""
    L, K, N, _ = R.shape
    H = np.zeros((n, L, K, N), dtype=np.complex128)
    for l in range(L):
        for k in range(K):
            w, U = np.linalg.eigh(R[l, k])
            sq = U * np.sqrt(np.clip(w, 0.0, None))
            z = (rng.standard_normal((n, N)) + 1j * rng.standard_normal((n, N))) / np.sqrt(2.0)
            H[:, l, k] = z @ sq.T
    return H


def pilot_signal(rng, H, pilot, p, tau_p):
    """``y_{l,t} = sum_{i: pilot_i = t} sqrt(p_i) tau_p h_li + sqrt(tau_p) n``, ``n ~ CN(0, I)``."""
    n, L, K, N = H.shape
    p = _powers(p, K)
    noise = (rng.standard_normal((n, L, tau_p, N)) + 1j * rng.standard_normal((n, L, tau_p, N))) / (
        np.sqrt(2.0)
    )
    Y = np.sqrt(tau_p) * noise
    for i in range(K):
        Y[:, :, pilot[i]] += np.sqrt(p[i]) * tau_p * H[:, :, i]
    return Y


# ----------------------------------------------------------------------------------------------
# Setup generator (NumPy, for test fixtures)
# ----------------------------------------------------------------------------------------------


def make_setup(
    rng,
    L,
    K,
    N,
    tau_p,
    asd_azimuth=None,
    asd_elevation=None,
    side=SIDE,
    height=HEIGHT,
    ap_pos=None,
    ue_pos=None,
):
    """Book-style random setup with NumPy: uniform positions, correlated shadowing (Cholesky of
    ``Sigma`` per AP), wrap-around path loss, local-scattering ``R`` (or ``gain * I``),
    Algorithm 4.1 pilots and DCC.  Returns a dict."""
    if ap_pos is None:
        ap_pos = rng.uniform(0.0, side, (L, 2))
    if ue_pos is None:
        ue_pos = rng.uniform(0.0, side, (K, 2))
    distance, azimuth, elevation = wrapped_geometry(ap_pos, ue_pos, side, height)
    Sigma = shadowing_covariance(ue_pos)
    chol = np.linalg.cholesky(Sigma + 1e-12 * np.eye(K))
    shadowing_db = rng.standard_normal((L, K)) @ chol.T
    gain_db = gain_db_from_geometry(distance, shadowing_db)
    gain = 10.0 ** (gain_db / 10.0)
    R = np.zeros((L, K, N, N), dtype=np.complex128)
    for l in range(L):
        for k in range(K):
            if asd_azimuth is None:
                R[l, k] = gain[l, k] * np.eye(N)
            else:
                R[l, k] = gain[l, k] * local_scattering(
                    N, azimuth[l, k], elevation[l, k], asd_azimuth, asd_elevation or 0.0
                )
    pilot = assign_pilots(gain_db, tau_p)
    D = dcc(gain_db, pilot, tau_p)
    return dict(
        ap_pos=ap_pos,
        ue_pos=ue_pos,
        distance=distance,
        azimuth=azimuth,
        elevation=elevation,
        shadowing_db=shadowing_db,
        gain_db=gain_db,
        gain=gain,
        R=R,
        pilot=pilot,
        D=D,
        master=master_aps(gain_db),
    )


# ----------------------------------------------------------------------------------------------
# Combining (book sections 5.1-5.2)
# ----------------------------------------------------------------------------------------------


def serving_aps(D, k):
    """``M_k``: APs serving UE k."""
    return np.flatnonzero(D[:, k])


def partial_users(D, k):
    """``P_k``: UEs served by at least one AP in ``M_k`` (book section 5.1)."""
    Mk = serving_aps(D, k)
    return [i for i in range(D.shape[1]) if D[Mk, i].any()]


def centralized_combiners(Hhat, C, D, p, scheme):
    """Centralized combining vectors, stacked over ``M_k`` (zero outside):

    - ``mmse``  (5.11): ``v_k = p_k (sum_all p_i (hhat_i hhat_i^H + C_i) + I)^{-1} hhat_k``
    - ``p_mmse`` (5.16): same with the sums over ``P_k``
    - ``p_rzf`` (5.18): ``v_k = p_k (sum_{P_k} p_i hhat_i hhat_i^H + I)^{-1} hhat_k``
    - ``mr``    (5.19): ``v_k = hhat_k``

    Each system is built as the full ``|M_k| N``-dimensional matrix and solved directly.
    """
    n, L, K, N = Hhat.shape
    p = _powers(p, K)
    V = np.zeros_like(Hhat, dtype=np.complex128)
    for k in range(K):
        Mk = serving_aps(D, k)
        if len(Mk) == 0:
            continue
        if scheme == "mr":
            V[:, Mk, k] = Hhat[:, Mk, k]
            continue
        if scheme == "mmse":
            users = list(range(K))
        elif scheme in ("p_mmse", "p_rzf"):
            users = partial_users(D, k)
        else:
            raise ValueError(scheme)
        dim = len(Mk) * N
        Cterm = np.zeros((dim, dim), dtype=np.complex128)
        if scheme != "p_rzf":
            for i in users:
                Cterm += p[i] * scipy.linalg.block_diag(*[C[l, i] for l in Mk])
        for r in range(n):
            Z = np.eye(dim, dtype=np.complex128) + Cterm
            for i in users:
                h = Hhat[r, Mk, i].reshape(dim)
                Z += p[i] * np.outer(h, h.conj())
            v = p[k] * np.linalg.solve(Z, Hhat[r, Mk, k].reshape(dim))
            V[r, Mk, k] = v.reshape(len(Mk), N)
    return V


def distributed_combiners(Hhat, C, D, p, scheme):
    """Local combining at each AP ``l`` for the UEs it serves (zero otherwise):

    - ``l_mmse``  (5.29): ``v_lk = p_k (sum_all p_i (hhat_li hhat_li^H + C_li) + I)^{-1} hhat_lk``
    - ``lp_mmse`` (5.39): same with the sums over ``S_l`` (UEs served by AP l)
    - ``mr``      (5.32): ``v_lk = hhat_lk``
    """
    n, L, K, N = Hhat.shape
    p = _powers(p, K)
    V = np.zeros_like(Hhat, dtype=np.complex128)
    for l in range(L):
        Sl = np.flatnonzero(D[l])
        if scheme == "mr":
            for k in Sl:
                V[:, l, k] = Hhat[:, l, k]
            continue
        if scheme == "l_mmse":
            users = list(range(K))
        elif scheme == "lp_mmse":
            users = list(Sl)
        else:
            raise ValueError(scheme)
        for r in range(n):
            Z = np.eye(N, dtype=np.complex128)
            for i in users:
                Z += p[i] * (np.outer(Hhat[r, l, i], Hhat[r, l, i].conj()) + C[l, i])
            for k in Sl:
                V[r, l, k] = p[k] * np.linalg.solve(Z, Hhat[r, l, k])
    return V


# ----------------------------------------------------------------------------------------------
# Uplink SE
# ----------------------------------------------------------------------------------------------


def prelog(tau_p, tau_c):
    return (tau_c - tau_p) / tau_c


def centralized_uplink_se(H, Hhat, V, C, D, p, tau_p, tau_c, genie=False):
    """Book Theorem 5.1 with the combiners ``V``; inner products over ``M_k``:

    ``SINR_k = p_k |v^H hhat_k|^2 / (sum_{i!=k} p_i |v^H hhat_i|^2 + v^H (sum_i p_i C_i + I) v)``,
    ``SE_k = prelog * mean_n log2(1 + SINR_k)``.  With ``genie``: the instantaneous SINR
    ``p_k |v^H h_k|^2 / (sum_{i!=k} p_i |v^H h_i|^2 + ||v||^2)`` with the true channels.
    """
    n, L, K, N = Hhat.shape
    p = _powers(p, K)
    se = np.zeros(K)
    for k in range(K):
        Mk = serving_aps(D, k)
        dim = len(Mk) * N
        Z = np.eye(dim, dtype=np.complex128)
        for i in range(K):
            Z += p[i] * scipy.linalg.block_diag(*[C[l, i] for l in Mk])
        total = 0.0
        for r in range(n):
            v = V[r, Mk, k].reshape(dim)
            chan = H if genie else Hhat
            gains = [np.vdot(v, chan[r, Mk, i].reshape(dim)) for i in range(K)]
            signal = p[k] * abs(gains[k]) ** 2
            interf = sum(p[i] * abs(gains[i]) ** 2 for i in range(K) if i != k)
            noise = np.vdot(v, v).real if genie else np.vdot(v, Z @ v).real
            total += np.log2(1.0 + signal / (interf + noise))
        se[k] = prelog(tau_p, tau_c) * total / n
    return se


def distributed_uplink_samples(H, V, D):
    """Per-realization ``g[n, k, i, l] = v_lk^H h_li`` (zero for ``l`` not in ``M_k``) and
    ``vnorm2[n, k, l] = ||v_lk||^2`` (book Theorem 5.4)."""
    g = np.einsum("rlkn,rlin->rkil", V.conj(), H)
    g = g * D.T[None, :, None, :]
    vnorm2 = np.einsum("rlkn,rlkn->rkl", V.conj(), V).real * D.T[None]
    return g, vnorm2


def distributed_uplink_sinr(m, q, F, D, p, lsfd):
    """UatF SINR of book Theorem 5.4 from the moments
    ``m[k, i, l] = E[g_ki[l]]``, ``q[k, i, l] = E|g_ki[l]|^2``, ``F[k, l] = E||v_lk||^2``.

    ``s_ki = q - |m|^2``, ``E[g g^H] = m m^H + diag(s)`` (independence over APs).  ``a = 1`` on
    ``M_k`` or the optimal LSFD vector (book eq. (5.30))
    ``a = (sum_i p_i E[g_ki g_ki^H] - p_k m_kk m_kk^H + F_k)^{-1} m_kk``.
    Returns ``(sinr[K], a)`` with ``a`` a list of vectors over ``M_k``.
    """
    K = m.shape[0]
    p = _powers(p, K)
    sinr = np.zeros(K)
    a_all = []
    for k in range(K):
        Mk = serving_aps(D, k)
        mk = m[k][:, Mk]  # [K(i), |M_k|]
        sk = q[k][:, Mk].real - np.abs(mk) ** 2
        Fk = np.diag(F[k, Mk])
        if lsfd:
            A = Fk - p[k] * np.outer(mk[k], mk[k].conj())
            for i in range(K):
                A = A + p[i] * (np.outer(mk[i], mk[i].conj()) + np.diag(sk[i]))
            a = np.linalg.solve(A, mk[k])
        else:
            a = np.ones(len(Mk), dtype=np.complex128)
        signal = p[k] * abs(np.vdot(a, mk[k])) ** 2
        denom = -signal + np.vdot(a, Fk @ a).real
        for i in range(K):
            denom += p[i] * (abs(np.vdot(a, mk[i])) ** 2 + np.sum(np.abs(a) ** 2 * sk[i]))
        sinr[k] = signal / denom
        a_all.append(a)
    return sinr, a_all


def distributed_uplink_se(H, V, D, p, tau_p, tau_c, lsfd, genie=False):
    """Distributed uplink SE, book Theorem 5.4 (UatF bound, statistics from Monte Carlo).

    With ``genie``: per realization ``p_k |a^H g_kk|^2 / (sum_{i!=k} p_i |a^H g_ki|^2 +
    sum_l |a_l|^2 ||v_lk||^2)`` with the same LSFD vector ``a`` as the UatF bound."""
    K = V.shape[2]
    p = _powers(p, K)
    g, vnorm2 = distributed_uplink_samples(H, V, D)
    m = g.mean(axis=0)
    q = (np.abs(g) ** 2).mean(axis=0)
    F = vnorm2.mean(axis=0)
    sinr, a_all = distributed_uplink_sinr(m, q, F, D, p, lsfd)
    if not genie:
        return prelog(tau_p, tau_c) * np.log2(1.0 + sinr)
    n = H.shape[0]
    se = np.zeros(K)
    for k in range(K):
        Mk = serving_aps(D, k)
        a = a_all[k]
        total = 0.0
        for r in range(n):
            gains = [np.vdot(a, g[r, k, i, Mk]) for i in range(K)]
            signal = p[k] * abs(gains[k]) ** 2
            interf = sum(p[i] * abs(gains[i]) ** 2 for i in range(K) if i != k)
            noise = np.sum(np.abs(a) ** 2 * vnorm2[r, k, Mk])
            total += np.log2(1.0 + signal / (interf + noise))
        se[k] = prelog(tau_p, tau_c) * total / n
    return se


def uplink_se(H, Hhat, R, B, C, pilot, D, p, tau_p, tau_c, genie=False):
    """Monte-Carlo uplink SE dict with the keys of ``cfmimo_jax.se.uplink_se``."""
    out = {}
    for scheme in UPLINK_CENTRALIZED:
        V = centralized_combiners(Hhat, C, D, p, scheme)
        out[scheme] = centralized_uplink_se(H, Hhat, V, C, D, p, tau_p, tau_c)
        if genie:
            out[scheme + "_genie"] = centralized_uplink_se(
                H, Hhat, V, C, D, p, tau_p, tau_c, genie=True
            )
    for scheme in UPLINK_DISTRIBUTED:
        V = distributed_combiners(Hhat, C, D, p, scheme)
        base = "mr_dist" if scheme == "mr" else scheme
        for lsfd, key in ((False, base), (True, base + "_lsfd")):
            out[key] = distributed_uplink_se(H, V, D, p, tau_p, tau_c, lsfd)
            if genie:
                out[key + "_genie"] = distributed_uplink_se(
                    H, V, D, p, tau_p, tau_c, lsfd, genie=True
                )
    return out


def uplink_se_mr_closed_form(R, B, pilot, D, p, tau_p, tau_c, lsfd=False, exact_powers=False):
    """Distributed MR closed form (book Corollary 5.6) in the convention of docs/kernels.md:

    ``m_ki[l] = p_k tau_p tr(R_lk Psi_{l,t_k}^{-1} R_li)`` if ``pilot_i = pilot_k`` else 0,
    ``s_ki[l] = tr(B_lk R_li)``, ``F_k = diag(tr(B_lk))``, SINR of Theorem 5.4.

    ``exact_powers=True`` uses ``sqrt(p_k p_i)`` in place of ``p_k`` in ``m_ki`` (what the
    Monte-Carlo expectation ``E[hhat_lk^H h_li]`` actually is; identical when powers are equal).
    """
    L, K, N, _ = R.shape
    p = _powers(p, K)
    Psi = psi_matrices(R, pilot, p, tau_p)
    m = np.zeros((K, K, L), dtype=np.complex128)
    q = np.zeros((K, K, L))
    F = np.zeros((K, L))
    for k in range(K):
        for l in range(L):
            if not D[l, k]:
                continue
            F[k, l] = np.trace(B[l, k]).real
            for i in range(K):
                s = np.trace(B[l, k] @ R[l, i]).real
                if pilot[i] == pilot[k]:
                    pw = np.sqrt(p[k] * p[i]) if exact_powers else p[k]
                    m[k, i, l] = (
                        pw * tau_p * np.trace(R[l, k] @ np.linalg.solve(Psi[l, pilot[k]], R[l, i]))
                    )
                q[k, i, l] = s + abs(m[k, i, l]) ** 2
    sinr, _ = distributed_uplink_sinr(m, q, F, D, p, lsfd)
    return prelog(tau_p, tau_c) * np.log2(1.0 + sinr)


# ----------------------------------------------------------------------------------------------
# Downlink SE (book Theorem 6.1 hardening bound, Corollary 6.3)
# ----------------------------------------------------------------------------------------------


def centralized_precoders(V, rho):
    """``w_k = sqrt(rho_k) v_k / sqrt(mean_n ||v_k||^2)``, ``rho_k = sum_l rho[l, k]``
    (book section 6.2)."""
    n, L, K, N = V.shape
    W = np.zeros_like(V)
    for k in range(K):
        nu = np.mean(np.sum(np.abs(V[:, :, k]) ** 2, axis=(1, 2)))
        rho_k = np.sum(rho[:, k])
        if nu > 0:
            W[:, :, k] = np.sqrt(rho_k / nu) * V[:, :, k]
    return W


def distributed_precoders(V, D, rho):
    """``w_lk = sqrt(rho_lk) v_lk / sqrt(mean_n ||v_lk||^2)`` for ``l in M_k``."""
    n, L, K, N = V.shape
    W = np.zeros_like(V)
    for l in range(L):
        for k in range(K):
            if D[l, k]:
                nu = np.mean(np.sum(np.abs(V[:, l, k]) ** 2, axis=1))
                W[:, l, k] = np.sqrt(rho[l, k] / nu) * V[:, l, k]
    return W


def centralized_downlink_se(H, W, tau_p, tau_c, genie=False):
    """Hardening bound (book Theorem 6.1): ``SINR_k = |E[h_k^H w_k]|^2 /
    (sum_i E|h_k^H w_i|^2 - |E[h_k^H w_k]|^2 + 1)``, expectations as Monte-Carlo means of the
    whole inner products.  Genie: ``|h_k^H w_k|^2 / (sum_{i!=k} |h_k^H w_i|^2 + 1)``."""
    n, L, K, N = H.shape
    e = np.zeros((n, K, K), dtype=np.complex128)  # e[r, k, i] = h_k^H w_i
    for r in range(n):
        for k in range(K):
            for i in range(K):
                e[r, k, i] = np.vdot(H[r, :, k].reshape(-1), W[r, :, i].reshape(-1))
    se = np.zeros(K)
    for k in range(K):
        if genie:
            total = 0.0
            for r in range(n):
                interf = sum(abs(e[r, k, i]) ** 2 for i in range(K) if i != k)
                total += np.log2(1.0 + abs(e[r, k, k]) ** 2 / (interf + 1.0))
            se[k] = prelog(tau_p, tau_c) * total / n
        else:
            signal = abs(np.mean(e[:, k, k])) ** 2
            total_power = sum(np.mean(np.abs(e[:, k, i]) ** 2) for i in range(K))
            sinr = signal / (total_power - signal + 1.0)
            se[k] = prelog(tau_p, tau_c) * np.log2(1.0 + sinr)
    return se


def distributed_downlink_se(H, W, tau_p, tau_c, genie=False):
    """Hardening bound with per-AP moments: ``E|h_k^H w_i|^2 = |sum_l E[h_lk^H w_li]|^2 +
    sum_l (E|h_lk^H w_li|^2 - |E[h_lk^H w_li]|^2)`` (independence over APs)."""
    n, L, K, N = H.shape
    f = np.einsum("rlkn,rlin->rkil", H.conj(), W)  # f[r, k, i, l] = h_lk^H w_li
    se = np.zeros(K)
    for k in range(K):
        if genie:
            e = f.sum(axis=3)
            total = 0.0
            for r in range(n):
                interf = sum(abs(e[r, k, i]) ** 2 for i in range(K) if i != k)
                total += np.log2(1.0 + abs(e[r, k, k]) ** 2 / (interf + 1.0))
            se[k] = prelog(tau_p, tau_c) * total / n
        else:
            mf = f.mean(axis=0)
            qf = (np.abs(f) ** 2).mean(axis=0)
            signal = abs(np.sum(mf[k, k])) ** 2
            total_power = 0.0
            for i in range(K):
                total_power += abs(np.sum(mf[k, i])) ** 2 + np.sum(qf[k, i] - np.abs(mf[k, i]) ** 2)
            sinr = signal / (total_power - signal + 1.0)
            se[k] = prelog(tau_p, tau_c) * np.log2(1.0 + sinr)
    return se


def downlink_se(H, Hhat, R, B, C, pilot, D, p, rho, tau_p, tau_c, genie=False):
    """Monte-Carlo downlink SE dict with the keys of ``cfmimo_jax.se.downlink_se``."""
    out = {}
    for scheme in DOWNLINK_DISTRIBUTED:
        V = distributed_combiners(Hhat, C, D, p, scheme)
        W = distributed_precoders(V, D, rho)
        out[scheme] = distributed_downlink_se(H, W, tau_p, tau_c)
        if genie:
            out[scheme + "_genie"] = distributed_downlink_se(H, W, tau_p, tau_c, genie=True)
    for scheme in DOWNLINK_CENTRALIZED:
        V = centralized_combiners(Hhat, C, D, p, scheme)
        W = centralized_precoders(V, rho)
        out[scheme] = centralized_downlink_se(H, W, tau_p, tau_c)
        if genie:
            out[scheme + "_genie"] = centralized_downlink_se(H, W, tau_p, tau_c, genie=True)
    return out


def downlink_se_mr_closed_form(R, B, pilot, D, rho, tau_p, tau_c, p=None, exact_powers=False):
    """Distributed MR downlink closed form (book Corollary 6.3), docs/kernels.md convention:

    ``b_lk = tr(B_lk)``, ``signal_k = sum_{l in M_k} sqrt(rho_lk b_lk)``,
    ``interf_k = sum_l sum_{i in S_l} rho_li tr(B_li R_lk) / b_li``,
    ``cont_ki = sum_{l in M_i} sqrt(rho_li) p_i tau_p tr(R_li Psi_{l,t_i}^{-1} R_lk) / sqrt(b_li)``
    for ``pilot_i = pilot_k``; ``SINR_k = signal^2 / (interf + sum_i |cont_ki|^2 - signal^2 + 1)``.

    Without ``p``, ``p_i tau_p R_li Psi^{-1}`` is obtained as ``B_li R_li^{-1}``.
    ``exact_powers=True`` (needs ``p``) uses ``sqrt(p_i p_k)`` in place of ``p_i``.
    """
    L, K, N, _ = R.shape
    if p is not None:
        p = _powers(p, K)
        Psi = psi_matrices(R, pilot, p, tau_p)
    b = np.array([[np.trace(B[l, k]).real for k in range(K)] for l in range(L)])

    def cross(l, i, k):
        # p_i tau_p tr(R_li Psi^{-1} R_lk)
        if p is None:
            X = np.linalg.solve(R[l, i], B[l, i]).conj().T  # = B_li R_li^{-1}
            return np.trace(X @ R[l, k])
        pw = np.sqrt(p[i] * p[k]) if exact_powers else p[i]
        return pw * tau_p * np.trace(R[l, i] @ np.linalg.solve(Psi[l, pilot[i]], R[l, k]))

    se = np.zeros(K)
    for k in range(K):
        signal = sum(np.sqrt(rho[l, k] * b[l, k]) for l in range(L) if D[l, k])
        interf = 0.0
        for l in range(L):
            for i in range(K):
                if D[l, i]:
                    interf += rho[l, i] * np.trace(B[l, i] @ R[l, k]).real / b[l, i]
        cont = 0.0
        for i in range(K):
            if pilot[i] != pilot[k]:
                continue
            c = sum(
                np.sqrt(rho[l, i]) * cross(l, i, k) / np.sqrt(b[l, i]) for l in range(L) if D[l, i]
            )
            cont += abs(c) ** 2
        sinr = signal**2 / (interf + cont - signal**2 + 1.0)
        se[k] = prelog(tau_p, tau_c) * np.log2(1.0 + sinr)
    return se


# ----------------------------------------------------------------------------------------------
# Power allocation (book eq. (7.47))
# ----------------------------------------------------------------------------------------------


def fractional_downlink(gain, D, rho_max, exponent=0.5):
    """``rho_lk = rho_max gain_lk^e / sum_{i in S_l} gain_li^e`` for ``D[l, k]``, else 0."""
    L, K = gain.shape
    rho = np.zeros((L, K))
    for l in range(L):
        denom = sum(gain[l, i] ** exponent for i in range(K) if D[l, i])
        for k in range(K):
            if D[l, k]:
                rho[l, k] = rho_max * gain[l, k] ** exponent / denom
    return rho


# ----------------------------------------------------------------------------------------------
# Monte-Carlo error of functions of sample means (for closed form vs Monte Carlo tests)
# ----------------------------------------------------------------------------------------------


def jackknife(fn, samples, n_groups=50):
    """Delete-a-group jackknife for ``fn(means)`` where ``means`` are the sample means (over the
    leading realization axis) of each array in ``samples``.

    Returns ``(estimate, standard_error)``; ``estimate = fn(full means)``.
    """
    n = samples[0].shape[0]
    groups = np.array_split(np.arange(n), n_groups)
    totals = [x.sum(axis=0) for x in samples]
    estimate = np.asarray(fn([t / n for t in totals]))
    loo = []
    for idx in groups:
        means = [(t - x[idx].sum(axis=0)) / (n - len(idx)) for t, x in zip(totals, samples)]
        loo.append(np.asarray(fn(means)))
    loo = np.array(loo)
    G = len(groups)
    stderr = np.sqrt((G - 1) / G * np.sum((loo - loo.mean(axis=0)) ** 2, axis=0))
    return estimate, stderr


def distributed_uplink_se_jackknife(H, V, D, p, tau_p, tau_c, lsfd, n_groups=50):
    """Distributed uplink SE (Theorem 5.4) and its jackknife Monte-Carlo standard error."""
    g, vnorm2 = distributed_uplink_samples(H, V, D)

    def fn(means):
        m, q, F = means
        sinr, _ = distributed_uplink_sinr(m, q.real, F, D, p, lsfd)
        return prelog(tau_p, tau_c) * np.log2(1.0 + sinr)

    return jackknife(fn, [g, np.abs(g) ** 2, vnorm2], n_groups)


def distributed_downlink_se_jackknife(H, V, D, rho, tau_p, tau_c, n_groups=50):
    """Distributed downlink hardening bound with the precoder normalisation recomputed in
    every jackknife replicate; returns ``(se[K], stderr[K])``."""
    n, L, K, N = H.shape
    u = np.einsum("rlkn,rlin->rkil", H.conj(), V)  # h_lk^H v_li
    vnorm2 = np.sum(np.abs(V) ** 2, axis=3)  # [n, L, K]

    def fn(means):
        mu, qu, nu = means
        scale = np.zeros((L, K))
        for l in range(L):
            for i in range(K):
                if D[l, i]:
                    scale[l, i] = np.sqrt(rho[l, i] / nu[l, i])
        se = np.zeros(K)
        for k in range(K):
            signal = abs(np.sum(scale[:, k] * mu[k, k])) ** 2
            total = 0.0
            for i in range(K):
                mf = scale[:, i] * mu[k, i]
                total += abs(np.sum(mf)) ** 2 + np.sum(
                    scale[:, i] ** 2 * qu[k, i] - np.abs(mf) ** 2
                )
            se[k] = prelog(tau_p, tau_c) * np.log2(1.0 + signal / (total - signal + 1.0))
        return se

    return jackknife(fn, [u, np.abs(u) ** 2, vnorm2], n_groups)

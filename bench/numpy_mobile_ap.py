"""The mobile-AP downlink ([MOBILE-AP]) in vectorised NumPy, one environment per object.

The baseline environment of ``bench/bench_mobile_ap.py`` (stepped in a Python loop over
networks, and by ``bench/torch_maddpg.py``): the scenario of
``cfmimo_jax.envs.make("mobile_ap")`` with ``control = "joint"`` (its defaults: ``M = 9`` UAV
APs with ``N = 8``-antenna half-wavelength ULAs, ``K = 6`` UEs, ``tau_p = K`` orthogonal
pilots, ``tau_c = 200``), written the way a paper's code base writes it: one Python object per
network, NumPy vectorised over APs, UEs and antennas, float64 / complex128. No JAX in here.
Equation numbers are [MOBILE-AP]'s (Liu et al., "Mobile Cell-Free Massive MIMO with
Multi-Agent Reinforcement Learning: A Scalable Framework") or the book's (Demir, Björnson,
Sanguinetti, "Foundations of User-Centric Cell-Free Massive MIMO").

One step (``step(actions[M, D])``, ``D = N + 2 + K`` per agent in the order ``antenna, move,
power`` of the flattened action space, each entry in its ``Box``):

* move (:func:`uav_displacement`, :func:`project_positions`): ``a = clip(a_move, -1, 1)``,
  displacement ``max_step a / max(1, |a|)``, then the nearest point of the feasible set of
  (22b) (wrapped horizontal distance ``>= d_min`` to every UE) and (22c) (the square
  ``[0, side]^2``), found among the candidates where a nearest point of that set can lie:
  the clipped point, its radial projections onto the circles of radius ``d_min + tol`` around
  the UEs' nearest images, its feet on the four edges, the four corners, the circle-edge and
  the circle-circle intersections; violation ``v_move = (|x - clip(x)| + sum_k max(d_min -
  d_k(clip(x)), 0)) / max_step``;
* channel statistics at the new positions (:func:`channel`): horizontal wrapped distance
  ``d_mk``, elevation ``asin(dh / sqrt(d^2 + dh^2))``, azimuth ``atan2(dy, dx)``; the
  air-to-ground LoS probability ``P = 1 / (1 + a exp(-b (theta_deg - a)))`` ([A2G-LOS], urban
  ``a = 9.61``, ``b = 0.16``); the COST 231 Walfisch-Ikegami loss ([COST-231] chapter 4,
  :func:`cost231_los_db`, :func:`cost231_nlos_db`) averaged over the LoS state ``PL = P L_LOS +
  (1 - P) L_NLOS`` at the horizontal distance ([MOBILE-AP] eq. (21)); ``beta = 10^((-PL -
  sigma^2_dBm) / 10)``; ``R_mk = beta_mk R_loc(az_mk, el_mk)`` with the local-scattering model
  of book eq. (2.18), a Gaussian azimuth spread and none in elevation
  (:func:`local_scattering`, Gauss-Hermite quadrature); the MMSE statistics of book eq. (4.7)
  ``Psi_{m,t} = sum_{i: t_i = t} p tau_p R_mi + I``, ``B_mk = p tau_p R_mk Psi_{m,t_k}^{-1}
  R_mk`` (:func:`estimation_statistics`);
* powers (:func:`map_actions`): ``rho_mk = P_ap a_mk / max(1, sum_k a_mk)`` (22d), ``q_mn =
  max(clip(a_mn, 0, 1), q_floor)``, mean antenna powers ``P_mn = sum_k rho_mk q_mn [B_mk]_nn /
  tr(Q_m B_mk)``, every ``rho_m.`` scaled by ``min(1, P_an / max_n P_mn)`` (22e);
  violations ``v_power = max(sum_k a_mk - 1, 0)``, ``v_antenna = sum_n max(P_mn - P_an, 0) /
  P_ap``;
* SE (:func:`downlink_se_weighted_mr`): [MOBILE-AP] Theorem 1 (book Cor. 6.3) with the
  precoder ``w_mk = sqrt(rho_mk) Q_m^(1/2) hhat_mk / sqrt(tr(Q_m B_mk))``;
* reward of agent ``m``: ``sum_k SE_k - (penalty_move v_move_m + penalty_power v_power_m +
  penalty_antenna v_antenna_m)``; observations and global state as the JAX environment builds
  them. An episode is ``episode_steps`` moves, then truncated (never terminated); ``step``
  resets automatically and returns the finished episode's last observation and global state in
  ``info``. ``reset`` draws UEs and APs uniformly in the square (this object's own NumPy
  generator) and projects the APs onto (22b)-(22c).

``set_state(ap_pos, ue_pos, rho, q, se, t)`` puts the environment in a given state (the
channel recomputed at ``ap_pos``): the benchmark's parity check and the tests feed it the JAX
environment's state.
"""

from __future__ import annotations

import functools
import math

import numpy as np

__all__ = [
    "MobileAPNumPy",
    "wrapped_displacement",
    "uav_displacement",
    "project_positions",
    "los_probability",
    "cost231_los_db",
    "cost231_nlos_db",
    "local_scattering",
    "quadrature_nodes",
    "estimation_statistics",
    "map_actions",
    "downlink_se_weighted_mr",
]

#: urban parameters ``(a, b)`` of the air-to-ground LoS probability ([A2G-LOS])
A2G_URBAN = (9.61, 0.16)


# ---- geometry -------------------------------------------------------------------------------


def wrapped_displacement(ap, ue, side):
    """``ue_k - ap_m`` on the torus of side ``side`` (the nearest image): ``[M, K, 2]``.

    ``ap[M, 2]``, ``ue[K, 2]``; each coordinate reduced to ``[-side / 2, side / 2)``.
    """
    d = ue[None, :, :] - ap[:, None, :]
    return d - side * np.floor(d / side + 0.5)


def uav_displacement(a, max_step):
    """``a[..., 2]`` -> ``max_step c / max(1, |c|)`` with ``c = clip(a, -1, 1)``, so the
    displacement's length is at most ``max_step``."""
    c = np.clip(a, -1.0, 1.0)
    n = np.sqrt(np.sum(c**2, axis=-1, keepdims=True))
    return max_step * c / np.maximum(n, 1.0)


def project_positions(x, ue, d_min, side, tol):
    """Nearest feasible point of (22b)-(22c) to each proposed position ``x[M, 2]``.

    Feasible: inside ``[0, side]^2`` and at wrapped distance ``>= d_min`` from every UE
    ``ue[K, 2]``. Candidates (module docstring; circles drawn at ``r = d_min + tol``), each UE
    by its image nearest to ``y = clip(x)``; of the feasible candidates the nearest to ``x``
    (ties: the first in the order clip, radial, feet, corners, circle-edge, circle-circle).
    None feasible: ``y`` pushed radially out of its nearest disc, then clipped.
    ``-> (pos[M, 2], area_violation[M], distance_violation[M])``; the violations are
    ``|x - y|`` and ``sum_k max(d_min - d_k(y), 0)``. When every ``x`` is feasible the
    candidate search is skipped (``x`` is its own nearest point).
    """
    M = x.shape[0]
    K = ue.shape[0]
    r = d_min + tol
    y = np.clip(x, 0.0, side)
    area = np.sqrt(np.sum((x - y) ** 2, axis=-1))
    dy = wrapped_displacement(y, ue, side)  # [M, K, 2]
    dist_v = np.sum(np.maximum(d_min - np.sqrt(np.sum(dy**2, axis=-1)), 0.0), axis=-1)
    if not np.any(area) and np.all(np.sum(dy**2, axis=-1) >= d_min**2):
        return x, area, dist_v  # every proposed position is feasible: unchanged
    u = y[:, None, :] + dy  # nearest UE images [M, K, 2]
    cands, valid = [y[:, None, :]], [np.ones((M, 1), bool)]
    # radial projection of x onto each circle (x on a centre: towards the middle of the area)
    w = x[:, None, :] - u
    n2 = np.sum(w**2, axis=-1, keepdims=True)
    inward = 0.5 * side - u
    inward = np.where(np.sum(inward**2, -1, keepdims=True) > 0, inward, np.array([1.0, 0.0]))
    w = np.where(n2 > 0, w, inward)
    radial = u + r * w / np.sqrt(np.sum(w**2, axis=-1, keepdims=True))
    cands.append(radial)
    valid.append(np.ones((M, K), bool))
    lo, hi = 0.0, side
    feet = np.stack(
        [
            np.stack([np.full(M, lo), y[:, 1]], -1),
            np.stack([np.full(M, hi), y[:, 1]], -1),
            np.stack([y[:, 0], np.full(M, lo)], -1),
            np.stack([y[:, 0], np.full(M, hi)], -1),
        ],
        axis=1,
    )
    corners = np.broadcast_to(np.array([[lo, lo], [hi, lo], [lo, hi], [hi, hi]]), (M, 4, 2))
    cands += [feet, corners]
    valid += [np.ones((M, 4), bool), np.ones((M, 4), bool)]
    # circle-edge intersections: x = lo, x = hi, y = lo, y = hi; two signs each
    for axis in (0, 1):
        other = 1 - axis
        for edge in (lo, hi):
            off = edge - u[..., axis]
            rad = r**2 - off**2
            ok = rad >= 0
            h = np.sqrt(np.where(ok, rad, 0.0))
            for sign in (1.0, -1.0):
                p = np.empty_like(u)
                p[..., axis] = edge
                p[..., other] = u[..., other] + sign * h
                cands.append(p)
                valid.append(ok)
    # circle-circle intersections of the pairs i < j whose circles meet
    a_, b_ = u[:, :, None, :], u[:, None, :, :]
    v = b_ - a_
    d2 = np.sum(v**2, axis=-1)  # [M, K, K]
    ok = np.triu(np.ones((K, K), bool), 1)[None] & (d2 > 0) & (d2 <= 4.0 * r**2)
    d2s = np.where(ok, d2, 1.0)
    h = np.sqrt(np.maximum(r**2 - d2s / 4.0, 0.0))
    e = v / np.sqrt(d2s)[..., None]
    perp = np.stack([-e[..., 1], e[..., 0]], axis=-1)
    mid = 0.5 * (a_ + b_)
    pair = np.stack([mid + h[..., None] * perp, mid - h[..., None] * perp], axis=3)
    cands.append(pair.reshape(M, K * K * 2, 2))
    valid.append(np.repeat(ok[..., None], 2, axis=-1).reshape(M, K * K * 2))
    C = np.concatenate(cands, axis=1)  # [M, n_cand, 2]
    ok = np.concatenate(valid, axis=1)
    inside = np.all((C >= lo) & (C <= hi), axis=-1)
    clear = np.all(np.sum((C[:, :, None, :] - u[:, None, :, :]) ** 2, -1) >= d_min**2, -1)
    feasible = ok & inside & clear
    cost = np.where(feasible, np.sum((C - x[:, None, :]) ** 2, axis=-1), np.inf)
    best = np.argmin(cost, axis=1)
    chosen = C[np.arange(M), best]
    near = np.argmin(np.sum((y[:, None, :] - u) ** 2, axis=-1), axis=1)
    fallback = np.clip(radial[np.arange(M), near], lo, hi)
    pos = np.where(np.any(feasible, axis=1)[:, None], chosen, fallback)
    return pos, area, dist_v


# ---- path loss ------------------------------------------------------------------------------


def los_probability(elevation, a=A2G_URBAN[0], b=A2G_URBAN[1]):
    """Air-to-ground LoS probability ``1 / (1 + a exp(-b (theta - a)))``, ``theta`` in degrees
    ([A2G-LOS]); ``elevation`` in radians, any shape."""
    return 1.0 / (1.0 + a * np.exp(-b * (np.degrees(elevation) - a)))


def cost231_los_db(d_m, f_ghz):
    """COST 231 WI line of sight ([COST-231] ch. 4): ``42.6 + 26 log10(d_km) + 20 log10(f_MHz)``,
    ``d`` clamped to >= 20 m."""
    d_km = np.maximum(d_m, 20.0) / 1000.0
    return 42.6 + 26.0 * np.log10(d_km) + 20.0 * np.log10(1000.0 * f_ghz)


def cost231_nlos_db(
    d_m,
    f_ghz,
    h_ap,
    h_ue,
    h_roof=12.0,
    w=25.0,
    b=50.0,
    phi=30.0,
    metropolitan=True,
):
    """COST 231 WI non-line of sight ([COST-231] ch. 4), ``d`` clamped to >= 20 m:
    ``L_0 + max(L_rts + L_msd, 0)`` with free space ``L_0 = 32.4 + 20 log10 d_km + 20 log10
    f_MHz``, rooftop-to-street ``L_rts = -16.9 - 10 log10 w + 10 log10 f + 20 log10(h_roof -
    h_ue) + L_ori(phi)`` and multi-screen ``L_msd = L_bsh + k_a + k_d log10 d + k_f log10 f -
    9 log10 b`` (``L_bsh = -18 log10(1 + dh)``, ``k_a = 54``, ``k_d = 18`` for ``dh = h_ap -
    h_roof > 0``; ``54 - 0.8 dh (min(d, 0.5 km) / 0.5)``, ``18 - 15 dh / h_roof`` otherwise;
    ``k_f = -4 + c (f / 925 - 1)``, ``c = 1.5`` metropolitan, else 0.7)."""
    d = np.maximum(d_m, 20.0) / 1000.0
    f = 1000.0 * f_ghz
    ld, lf = np.log10(d), np.log10(f)
    l0 = 32.4 + 20.0 * ld + 20.0 * lf
    if phi < 35.0:
        l_ori = -10.0 + 0.354 * phi
    elif phi < 55.0:
        l_ori = 2.5 + 0.075 * (phi - 35.0)
    else:
        l_ori = 4.0 - 0.114 * (phi - 55.0)
    l_rts = -16.9 - 10.0 * math.log10(w) + 10.0 * lf + 20.0 * math.log10(h_roof - h_ue) + l_ori
    dh = h_ap - h_roof
    if dh > 0:
        l_bsh, k_a, k_d = -18.0 * math.log10(1.0 + dh), 54.0, 18.0
    else:
        l_bsh, k_d = 0.0, 18.0 - 15.0 * dh / h_roof
        k_a = np.where(d >= 0.5, 54.0 - 0.8 * dh, 54.0 - 0.8 * dh * d / 0.5)
    k_f = -4.0 + (1.5 if metropolitan else 0.7) * (f / 925.0 - 1.0)
    l_msd = l_bsh + k_a + k_d * ld + k_f * lf - 9.0 * math.log10(b)
    return l0 + np.maximum(l_rts + l_msd, 0.0)


# ---- correlation and estimation -------------------------------------------------------------


@functools.cache
def _hermite(n_quad):
    """Gauss-Hermite nodes and weights for ``E[f(x / sqrt(2))]``, ``x ~ N(0, 1)``:
    ``int exp(-x^2) f(x) dx / sqrt(pi)``."""
    x, w = np.polynomial.hermite.hermgauss(n_quad)
    return x, w / np.sqrt(np.pi)


def quadrature_nodes(n, asd):
    """Gauss-Hermite nodes for :func:`local_scattering`: ``ceil(24 d_max asd) + 24`` points
    (``d_max = (n - 1) / 2`` wavelengths, about 2 per radian of the integrand's phase over
    +-6 standard deviations, plus 24), at least 1 (``1``: no spread)."""
    return 1 if asd == 0 else int(math.ceil(24.0 * 0.5 * (n - 1) * asd)) + 24


def local_scattering(n, azimuth, elevation, asd, n_quad=None):
    """Normalised ULA correlation of book eq. (2.18), ``[..., n, n]`` (``tr = n``):
    ``[R]_{a,b} = E[exp(j pi (b - a) sin(az + delta) cos(el))]``, ``delta ~ N(0, asd^2)``
    (radians; half-wavelength spacing, no elevation spread), the expectation by
    ``n_quad``-point Gauss-Hermite quadrature (default :func:`quadrature_nodes`); the lags'
    phasors as powers ``z^l`` of ``z = exp(j pi sin(az + delta) cos(el))``; Hermitian
    Toeplitz."""
    n_quad = quadrature_nodes(n, asd) if n_quad is None else int(n_quad)
    x, wts = _hermite(n_quad)
    s = np.sin(azimuth[..., None] + math.sqrt(2.0) * asd * x) * np.cos(elevation)[..., None]
    z = np.exp(1j * np.pi * s)  # [..., n_quad]
    pw = np.empty(s.shape[:-1] + (n, n_quad), complex)
    pw[..., 0, :] = 1.0
    for lag in range(1, n):  # z^lag (a loop over the n lags, not over links)
        pw[..., lag, :] = pw[..., lag - 1, :] * z
    row = pw @ wts  # [..., n], row[0] = 1
    lag = np.arange(n)
    idx = lag[None, :] - lag[:, None]  # b - a
    upper = row[..., np.abs(idx)]
    return np.where(idx >= 0, upper, np.conj(upper))


def estimation_statistics(R, pilot, p, tau_p):
    """MMSE statistics (book eq. (4.7)): ``(B[M, K, N, N], X[M, K, N, N] = Psi_{m,t_k}^{-1}
    R_mk)`` with ``Psi_{m,t} = sum_{i: t_i = t} p tau_p R_mi + I``, pilot power ``p`` (mW)."""
    M, K, N, _ = R.shape
    onehot = (pilot[:, None] == np.arange(tau_p)[None, :]).astype(float)  # [K, tau_p]
    Psi = p * tau_p * np.einsum("kt,mkab->mtab", onehot, R) + np.eye(N)
    X = np.linalg.solve(Psi[:, pilot], R)
    B = p * tau_p * (R @ X)
    return 0.5 * (B + np.conj(np.swapaxes(B, -1, -2))), X


# ---- powers and SE --------------------------------------------------------------------------


def antenna_powers(B, rho, q):
    """Mean antenna powers ``P[M, N] = sum_k rho_mk q_mn [B_mk]_nn / tr(Q_m B_mk)`` (mW)."""
    shaped = q[:, None, :] * np.real(np.diagonal(B, axis1=-2, axis2=-1))  # [M, K, N]
    total = np.sum(shaped, axis=-1, keepdims=True)
    share = np.where(total > 0, shaped / np.where(total > 0, total, 1.0), 0.0)
    return np.einsum("mk,mkn->mn", rho, share)


def map_actions(B, a_power, a_antenna, p_ap, q_floor):
    """Power and antenna actions -> ``(rho[M, K], q[M, N], v_power[M], v_antenna[M])``
    ((22d), (22e); module docstring)."""
    N = B.shape[-1]
    p_an = p_ap / N
    a = np.clip(a_power, 0.0, 1.0)
    s = np.sum(a, axis=-1)
    rho = p_ap * a / np.maximum(1.0, s)[:, None]
    v_power = np.maximum(s - 1.0, 0.0)
    q = np.maximum(np.clip(a_antenna, 0.0, 1.0), q_floor)
    pw = antenna_powers(B, rho, q)
    v_antenna = np.sum(np.maximum(pw - p_an, 0.0), axis=-1) / p_ap
    peak = np.max(pw, axis=-1)
    scale = np.where(peak > p_an, p_an / np.where(peak > 0, peak, 1.0), 1.0)
    return rho * scale[:, None], q, v_power, v_antenna


def downlink_se_weighted_mr(R, B, X, pilot, p, tau_p, tau_c, rho, q):
    """Per-UE SE ``[K]`` of distributed MR with antenna weights ([MOBILE-AP] Theorem 1, book
    Cor. 6.3; every AP serves every UE), ``b_mk = tr(Q_m B_mk)``, ``c_mk = sqrt(rho_mk /
    b_mk)``::

        mean_ki = sum_m c_mi p tau_p tr(Q_m^(1/2) R_mi Psi_{m,t_i}^{-1} R_mk)   (t_i = t_k)
        var_ki  = sum_m c_mi^2 tr(Q_m^(1/2) B_mi Q_m^(1/2) R_mk)
        SINR_k  = |mean_kk|^2 / (sum_i (|mean_ki|^2 + var_ki) - |mean_kk|^2 + 1)
        SE_k    = (1 - tau_p / tau_c) log2(1 + SINR_k)

    ``X = Psi^{-1} R`` of :func:`estimation_statistics`, equal pilot powers ``p``."""
    M, K, N, _ = R.shape
    qs = np.sqrt(q)  # [M, N]
    same = pilot[:, None] == pilot[None, :]
    # tr(Q^1/2 R_mi Psi^-1 R_mk) = sum_ab sqrt(q_a) conj(X_mi)[b, a] R_mk[b, a]
    Xc = np.conj(X).reshape(M, K, N * N)
    Rw = (R * qs[:, None, None, :]).reshape(M, K, N * N)
    cross = p * tau_p * (Xc @ np.swapaxes(Rw, -1, -2)) * same[None]  # [M, i, k]
    BQ = qs[:, None, :, None] * B * qs[:, None, None, :]
    Rt = np.swapaxes(R, -1, -2).reshape(M, K, N * N)
    var = np.real(BQ.reshape(M, K, N * N) @ np.swapaxes(Rt, -1, -2))  # [M, i, k]
    bq = np.einsum("mn,mknn->mk", q, np.real(B))
    c = np.where(bq > 0, np.sqrt(rho / np.where(bq > 0, bq, 1.0)), 0.0)  # [M, i]
    mean = np.einsum("mi,mik->ki", c, cross)
    second = np.abs(mean) ** 2 + np.einsum("mi,mik->ki", c**2, var)
    sig = np.abs(np.diagonal(mean)) ** 2
    sinr = sig / (np.sum(second, axis=1) - sig + 1.0)
    return (1.0 - tau_p / tau_c) * np.log2(1.0 + sinr)


# ---- the environment ------------------------------------------------------------------------


class MobileAPNumPy:
    """One mobile-AP network (module docstring), ``control = "joint"``.

    Interface (as ``bench/numpy_power_control.py``): ``reset() -> obs[M, obs_dim]``,
    ``step(actions[M, D]) -> (obs, reward[M], done, info)``, ``global_state()``; after
    ``done`` the returned observation is the new episode's and ``info["final_obs"]`` /
    ``info["final_state"]`` hold the finished one's. ``action_low`` / ``action_high``
    (``[D]``) bound the flat action, ``act_dim = D = N + 2 + K``.
    """

    def __init__(
        self,
        *,
        n_aps: int = 9,
        n_antennas: int = 8,
        n_ues: int = 6,
        tau_c: int = 200,
        side_m: float = 1000.0,
        ap_height_m: float = 30.0,
        ue_height_m: float = 1.5,
        carrier_ghz: float = 1.9,
        noise_dbm: float = -94.0,
        p_ap_max_mw: float = 1000.0,
        pilot_power_mw: float = 100.0,
        asd_deg: float = 10.0,
        max_step_m: float = 25.0,
        d_min_m: float = 10.0,
        q_floor: float = 0.05,
        episode_steps: int = 20,
        obs_offset_db: float = -20.0,
        obs_scale_db: float = 20.0,
        obs_se_scale: float = 2.0,
        penalty_move: float = 1.0,
        penalty_power: float = 1.0,
        penalty_antenna: float = 1.0,
        tol: float | None = None,
        n_quad: int | None = None,
        seed: int = 0,
    ):
        for name, v in (("n_aps", n_aps), ("n_antennas", n_antennas), ("n_ues", n_ues)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if (
            isinstance(episode_steps, bool)
            or not isinstance(episode_steps, int)
            or episode_steps < 1
        ):
            raise ValueError(f"episode_steps must be a positive integer, got {episode_steps!r}")
        if not tau_c > n_ues:
            raise ValueError(f"tau_c={tau_c} must exceed tau_p = n_ues = {n_ues}")
        for name, v in (
            ("side_m", side_m),
            ("max_step_m", max_step_m),
            ("p_ap_max_mw", p_ap_max_mw),
            ("pilot_power_mw", pilot_power_mw),
        ):
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive number, got {v!r}")
        if not (np.isfinite(d_min_m) and d_min_m >= 0):
            raise ValueError(f"d_min_m must be a non-negative number, got {d_min_m!r}")
        if 2 * n_ues * d_min_m >= side_m / 2:
            raise ValueError(f"d_min_m={d_min_m} too large: need 2 n_ues d_min_m < side_m / 2")
        if not 0 < q_floor <= 1:
            raise ValueError(f"q_floor must be in (0, 1], got {q_floor!r}")
        if not 12.0 < ap_height_m <= 50.0:
            raise ValueError(
                f"ap_height_m must be in (12, 50] m (above the roofs), got {ap_height_m!r}"
            )
        if not 1.0 <= ue_height_m <= 3.0:
            raise ValueError(f"ue_height_m must be in [1, 3] m (COST 231), got {ue_height_m!r}")
        if not 0.8 <= carrier_ghz <= 2.0:
            raise ValueError(f"carrier_ghz must be in [0.8, 2] (COST 231), got {carrier_ghz!r}")
        if not 0 <= asd_deg <= 90:
            raise ValueError(f"asd_deg must be in [0, 90], got {asd_deg!r}")
        self.M, self.N, self.K = int(n_aps), int(n_antennas), int(n_ues)
        self.tau_p, self.tau_c = self.K, int(tau_c)
        self.side, self.ap_h, self.ue_h = float(side_m), float(ap_height_m), float(ue_height_m)
        self.f_ghz, self.noise_dbm = float(carrier_ghz), float(noise_dbm)
        self.p_ap, self.p_pilot = float(p_ap_max_mw), float(pilot_power_mw)
        self.p_an = self.p_ap / self.N
        self.asd = math.radians(asd_deg)
        self.max_step, self.d_min, self.q_floor = float(max_step_m), float(d_min_m), float(q_floor)
        self.episode_steps = int(episode_steps)
        self.offset, self.scale, self.se_scale = obs_offset_db, obs_scale_db, obs_se_scale
        self.pen = (float(penalty_move), float(penalty_power), float(penalty_antenna))
        self.tol = 64.0 * np.finfo(np.float64).eps * max(self.side, 1.0) if tol is None else tol
        self.n_quad = n_quad
        self.pilot = np.arange(self.K)
        M, N, K = self.M, self.N, self.K
        self.n_agents = M
        self.obs_dim = 6 * K + N + 2
        self.state_dim = 2 * M + 2 * K + M * K + K
        self.act_dim = N + 2 + K  # flat order: antenna (N), move (2), power (K)
        self.action_low = np.concatenate([np.zeros(N), -np.ones(2), np.zeros(K)])
        self.action_high = np.ones(self.act_dim)
        self.rng = np.random.default_rng(seed)

    @classmethod
    def from_env(cls, env, params, seed: int = 0, **over):
        """The NumPy twin of a JAX ``MobileAP`` and its ``MobileAPParams`` (``control =
        "joint"``); ``over``: e.g. ``tol`` (the JAX float32 projection tolerance)."""
        if env.control != "joint":
            raise ValueError(
                f"the NumPy environment implements control='joint', got {env.control!r}"
            )
        kw = dict(
            n_aps=env.M,
            n_antennas=env.N,
            n_ues=env.K,
            tau_c=env.tau_c,
            side_m=env.side,
            ap_height_m=env.ap_h,
            ue_height_m=env.ue_h,
            carrier_ghz=env.carrier,
            noise_dbm=env.noise_dbm,
            p_ap_max_mw=env.p_ap,
            pilot_power_mw=env.p_pilot,
            asd_deg=env.asd,
            max_step_m=env.max_step,
            d_min_m=env.d_min,
            q_floor=env.q_floor,
            episode_steps=env.episode_steps,
            seed=seed,
        )
        for k in (
            "obs_offset_db",
            "obs_scale_db",
            "obs_se_scale",
            "penalty_move",
            "penalty_power",
            "penalty_antenna",
        ):
            kw[k] = float(getattr(params, k))
        kw.update(over)
        return cls(**kw)

    # ---- physics -----------------------------------------------------------------------

    def channel(self, ap, ue):
        """``(gain_db[M, K], R, B, X)`` at the AP positions ``ap[M, 2]`` (module docstring)."""
        disp = wrapped_displacement(ap, ue, self.side)
        d2d = np.sqrt(np.sum(disp**2, axis=-1))
        dh = self.ap_h - self.ue_h
        el = np.arcsin(dh / np.sqrt(d2d**2 + dh**2))
        az = np.arctan2(disp[..., 1], disp[..., 0])
        P = los_probability(el)
        pl = P * cost231_los_db(d2d, self.f_ghz) + (1.0 - P) * cost231_nlos_db(
            d2d, self.f_ghz, self.ap_h, self.ue_h
        )
        gain_db = -pl - self.noise_dbm
        beta = 10.0 ** (gain_db / 10.0)
        R = beta[..., None, None] * local_scattering(self.N, az, el, self.asd, self.n_quad)
        B, X = estimation_statistics(R, self.pilot, self.p_pilot, self.tau_p)
        return gain_db, R, B, X

    def _load(self, ap, ue):
        self.ap, self.ue = ap, ue
        self.gain_db, self.R, self.B, self.X = self.channel(ap, ue)

    def se(self, rho, q):
        """``SE[K]`` of ``rho[M, K]`` (mW) and ``q[M, N]`` at the current positions."""
        return downlink_se_weighted_mr(
            self.R, self.B, self.X, self.pilot, self.p_pilot, self.tau_p, self.tau_c, rho, q
        )

    def _obs(self):
        g = (self.gain_db - self.offset) / self.scale
        fb = np.real(np.trace(self.B, axis1=-2, axis2=-1))
        ghat = (10.0 * np.log10(np.maximum(fb, 1e-30)) - self.offset) / self.scale
        rel = wrapped_displacement(self.ap, self.ue, self.side) / self.side
        se = np.broadcast_to(self.se_prev / self.se_scale, (self.M, self.K))
        rows = [
            g,
            ghat,
            self.ap / self.side,
            rel.reshape(self.M, 2 * self.K),
            self.rho / self.p_ap,
            self.q,
            se,
        ]
        return np.concatenate(rows, axis=1)

    def global_state(self):
        """``[ap / side (2M), ue / side (2K), (gain_db + 20) / 20 (M K), SE / 2 (K)]``."""
        return np.concatenate(
            [
                self.ap.ravel() / self.side,
                self.ue.ravel() / self.side,
                ((self.gain_db + 20.0) / 20.0).ravel(),
                self.se_prev / 2.0,
            ]
        )

    # ---- interface ---------------------------------------------------------------------

    def set_state(self, ap_pos, ue_pos, rho, q, se, t=0):
        """Put the network in the given state (channel recomputed at ``ap_pos``): ``-> obs``."""
        self._load(np.asarray(ap_pos, np.float64), np.asarray(ue_pos, np.float64))
        self.rho = np.asarray(rho, np.float64)
        self.q = np.asarray(q, np.float64)
        self.se_prev = np.asarray(se, np.float64)
        self.t = int(t)
        return self._obs()

    def reset(self):
        """New drop: UEs and APs uniform in the square, the APs projected onto (22b)-(22c);
        equal powers ``P_ap / K``, ``q = 1``: ``-> obs[M, obs_dim]``."""
        ue = self.rng.uniform(0.0, self.side, (self.K, 2))
        ap0 = self.rng.uniform(0.0, self.side, (self.M, 2))
        ap = project_positions(ap0, ue, self.d_min, self.side, self.tol)[0]
        self._load(ap, ue)
        self.rho = np.full((self.M, self.K), self.p_ap / self.K)
        self.q = np.ones((self.M, self.N))
        self.se_prev = self.se(self.rho, self.q)
        self.t = 0
        return self._obs()

    def split_actions(self, actions):
        """Flat ``actions[M, D]`` -> ``(antenna[M, N], move[M, 2], power[M, K])``."""
        a = np.asarray(actions, np.float64)
        if a.shape != (self.M, self.act_dim):
            raise ValueError(f"actions must have shape {(self.M, self.act_dim)}, got {a.shape}")
        N = self.N
        return a[:, :N], a[:, N : N + 2], a[:, N + 2 :]

    def transition(self, actions):
        """The slot of ``actions[M, D]``: updates the state, ``-> (reward[M], info)``."""
        antenna, move, power = self.split_actions(actions)
        x = self.ap + uav_displacement(move, self.max_step)
        pos, area, dist_v = project_positions(x, self.ue, self.d_min, self.side, self.tol)
        old = self.ap
        self._load(pos, self.ue)
        rho, q, v_power, v_antenna = map_actions(self.B, power, antenna, self.p_ap, self.q_floor)
        se = self.se(rho, q)
        v_move = (area + dist_v) / self.max_step
        pm, pp, pa = self.pen
        pen = pm * v_move + pp * v_power + pa * v_antenna
        sum_se = float(np.sum(se))
        self.rho, self.q, self.se_prev = rho, q, se
        self.t += 1
        info = {
            "sum_se": sum_se,
            "min_se": float(np.min(se)),
            "penalty": float(np.mean(pen)),
            "power_frac": float(np.sum(rho) / (self.M * self.p_ap)),
            "move_m": float(np.mean(np.sqrt(np.sum((pos - old) ** 2, axis=-1)))),
            "se": se,
        }
        return sum_se - pen, info

    def step(self, actions):
        """``actions[M, D]`` -> ``(obs, reward[M], done, info)`` with auto-reset."""
        reward, info = self.transition(actions)
        obs = self._obs()
        truncated = self.t >= self.episode_steps
        info.update(terminated=False, truncated=truncated)
        if truncated:
            info["final_obs"] = obs
            info["final_state"] = self.global_state()
            obs = self.reset()
        return obs, reward, truncated, info

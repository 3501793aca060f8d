"""The AP-cooperation environment ([AP-COOP]) in vectorised NumPy, one environment per object.

The baseline environment of ``bench/bench_ap_cooperation.py`` (stepped in a Python loop over
networks, and by ``bench/torch_ddqn.py``): the scenario of
``cfmimo_jax.envs.make("ap_cooperation")`` with ``transmit = "serving"`` and the per-AP reading
of eq. (11) (its defaults: ``M = 100`` APs with ``N = 4`` antennas, ``K = 40`` UEs, ``tau_p =
10``, at most 5 serving APs per UE and 4 neighbours per AP), written the way a paper's code base
writes it: one Python object per network, NumPy vectorised over APs, UEs and antennas,
complex128 / float64, a Python loop over the cooperation clusters of a step (each cluster's
joint RZF solved once, in its own ``|K_C| x |K_C|`` dual system). No JAX in here. Equation
numbers are [AP-COOP]'s (Ajmal et al., "Multi-Agent Deep Reinforcement Learning for Dynamic
Multi-AP Cooperation in Cell-Free Massive MIMO Networks").

Setups. The drops (``gain[P, M, K]`` linear gains over noise per mW and ``pilot[P, K]``) are
NOT generated here: the benchmark draws a pool of them with the JAX generator
(``cfmimo_jax.setup.generate_setup``, as the JAX environment's ``reset`` does) and hands them
over as NumPy arrays; each reset takes a pool entry chosen by this environment's own generator.
Everything downstream of the drop is computed here at reset:

* serving sets, eq. (2): ``D[m, k] = beta_mk >= delta max_m' beta_m'k`` among the
  ``max_aps`` strongest APs of UE ``k`` (the strongest always);
* MMSE coefficients (book eq. (4.5) with ``R = beta I``): ``c_mk = sqrt(p) beta_mk / psi_mk``,
  ``psi_mk = p tau_p sum_{i: t_i = t_k} beta_mi + 1``;
* interference metric, eq. (7), under MRT (eq. (18)) and ``rho_mk = P / |K_m|``, averaged over
  ``metric_samples`` fading and pilot-noise draws; neighbours, eq. (11), per-AP maximum, the
  ``Q`` strongest (ties: lower index), and the fixed part of the observations (eq. (10)).

At every step: fresh fading ``h_mk = sqrt(beta_mk) g_mk``, ``g_mk ~ CN(0, I_N)`` (eq. (1)),
received pilots ``y_mt = sum_{k: t_k = t} sqrt(p) tau_p h_mk + sqrt(tau_p) n_mt`` and estimates
``hhat_mk = c_mk y_{m t_k}`` (eq. (4)); the request bits ``(a_m >> q) & 1`` on the neighbour
slots, mutual links, clusters = connected components of the links
(``scipy.sparse.csgraph.connected_components``, labelled by their smallest AP), joint RZF per
cluster of at least two APs, eqs. (14)-(17), ``W_C = H_C (H_C^H H_C + alpha I)^{-1}`` with
each AP's segment normalised, MRT alone (eq. (18)), each AP on its own UEs; the SINR of eq. (9)
for it and for MRT everywhere (the baseline of eq. (12)); rates ``log2(1 + SINR)``; the reward
of eq. (12); the observation of eq. (10); the info metrics of the JAX environment. An episode
is ``episode_steps`` steps, then truncated; ``step`` resets automatically and returns the
finished episode's last observation in ``info["final_obs"]``.

``step_with(actions, H, Hhat)`` / ``reset_from(gain, pilot, samples)`` take the channels
(and the metric's draws) from outside: the benchmark's parity check feeds them the JAX
environment's own draws.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

__all__ = [
    "APCooperationNumPy",
    "threshold_clusters",
    "mmse_coefficients",
    "draw_channels",
    "mrt",
    "interference_metric",
    "neighbours",
    "cluster_labels",
    "cluster_rzf",
    "downlink_sinr",
]


def threshold_clusters(gain, delta, max_aps):
    """Eq. (2): ``D[M, K]`` bool (ranks by a stable sort: equal gains, lower AP first)."""
    order = np.argsort(-gain, axis=0, kind="stable")
    rank = np.argsort(order, axis=0, kind="stable")
    passes = gain >= delta * gain.max(axis=0, keepdims=True)
    return (passes & (rank < max_aps)) | (rank == 0)


def mmse_coefficients(gain, pilot, p, tau_p):
    """``c[M, K] = sqrt(p) beta_mk / (p tau_p sum_{i: t_i = t_k} beta_mi + 1)``."""
    onehot = (pilot[:, None] == np.arange(tau_p)[None, :]).astype(float)  # [K, tau_p]
    psi = p * tau_p * (gain @ onehot)[:, pilot] + 1.0
    return np.sqrt(p) * gain / psi


def draw_channels(rng, gain, pilot, est, p, tau_p, N):
    """One fading realization and its MMSE estimates ``(H, Hhat)``, each ``[M, K, N]``."""
    M, K = gain.shape
    g = (rng.standard_normal((M, K, N)) + 1j * rng.standard_normal((M, K, N))) / np.sqrt(2)
    H = np.sqrt(gain)[..., None] * g
    noise = (rng.standard_normal((M, tau_p, N)) + 1j * rng.standard_normal((M, tau_p, N))) / (
        np.sqrt(2)
    )
    onehot = (pilot[:, None] == np.arange(tau_p)[None, :]).astype(float)
    Y = np.sqrt(p) * tau_p * np.einsum("kt,mkn->mtn", onehot, H) + np.sqrt(tau_p) * noise
    return H, est[..., None] * Y[:, pilot, :]


def mrt(Hhat, D):
    """Eq. (18): ``w_mk = hhat_mk / ||hhat_mk||`` on ``D``, else 0."""
    n = np.linalg.norm(Hhat, axis=-1, keepdims=True)
    return np.where(D[..., None] & (n > 0), Hhat / np.where(n > 0, n, 1.0), 0.0)


def interference_metric(H, W, rho, D):
    """Eq. (7): ``I[M, M]``, ``I_mn = 1/|K_m| sum_{k in K_m} sum_{j in K_n} rho_nj
    |h_nk^H w_nj|^2`` (``j = k`` included, as printed), 0 on the diagonal."""
    G = np.abs(np.einsum("nkd,njd->nkj", H.conj(), W)) ** 2  # [n, k, j]
    T = np.einsum("nkj,nj->nk", G, rho * D)  # power AP n radiates towards UE k
    Df = D.astype(float)
    I = (Df @ T.T) / np.maximum(Df.sum(1), 1.0)[:, None]
    np.fill_diagonal(I, 0.0)
    return I


def neighbours(I, Q, ratio):
    """Eq. (11), per-AP maximum: ``(idx[M, Q], mask[M, Q])``, strongest first, padding ``m``."""
    M = I.shape[0]
    vals = I.copy()
    np.fill_diagonal(vals, -np.inf)
    thr = ratio * np.maximum(vals.max(axis=1, keepdims=True), 0.0)
    idx = np.argsort(-vals, axis=1, kind="stable")[:, :Q]
    v = np.take_along_axis(vals, idx, axis=1)
    own = np.arange(M)[:, None]
    mask = (v > thr) & (idx != own)
    idx = np.where(mask, idx, own)
    if idx.shape[1] < Q:
        pad = np.broadcast_to(own, (M, Q - idx.shape[1]))
        idx = np.concatenate([idx, pad], axis=1)
        mask = np.concatenate([mask, np.zeros((M, Q - mask.shape[1]), bool)], axis=1)
    return idx, mask


def cluster_labels(agree):
    """Connected components of the mutual links ``agree[M, M]``, each labelled by its
    smallest AP index: ``[M]`` int."""
    M = agree.shape[0]
    _, comp = connected_components(csr_matrix(agree & agree.T), directed=False)
    first = np.full(comp.max() + 1, M)
    np.minimum.at(first, comp, np.arange(M))
    return first[comp]


def cluster_rzf(Hhat, labels, D, alpha):
    """Eqs. (14)-(18) with each AP on its own UEs: joint RZF over every cluster of at least two
    APs (one dual solve per cluster), each AP's segment normalised; MRT for APs alone; ``W``
    restricted to ``D``. ``-> W[M, K, N]``."""
    M, K, N = Hhat.shape
    W = mrt(Hhat, D)
    ids, counts = np.unique(labels, return_counts=True)
    for c in ids[counts >= 2]:  # a loop over the clusters of this step
        aps = np.flatnonzero(labels == c)
        users = np.flatnonzero(D[aps].any(axis=0))
        if users.size == 0:
            continue
        Hc = Hhat[np.ix_(aps, users)]  # [|C|, |K_C|, N]
        Hs = np.transpose(Hc, (0, 2, 1)).reshape(len(aps) * N, len(users))  # [|C| N, |K_C|]
        G = Hs.conj().T @ Hs + alpha * np.eye(len(users))
        Wc = (Hs @ np.linalg.inv(G)).reshape(len(aps), N, len(users))  # column j: w_{k_j}^C
        n = np.linalg.norm(Wc, axis=1, keepdims=True)
        seg = np.where(n > 0, Wc / np.where(n > 0, n, 1.0), 0.0)
        W[np.ix_(aps, users)] = np.transpose(seg, (0, 2, 1))
    return W * D[..., None]


def downlink_sinr(H, W, rho):
    """Eq. (9): ``SINR[K]``, coherent joint transmission, noise power 1."""
    A = np.einsum("mkn,mjn->kj", H.conj(), W * np.sqrt(rho)[..., None])
    P = np.abs(A) ** 2
    signal = np.diagonal(P)
    return signal / (P.sum(axis=1) - signal + 1.0)


class APCooperationNumPy:
    """One AP-cooperation network (module docstring).

    ``setups``: dict of NumPy arrays with a leading pool axis ``P``: ``gain[P, M, K]``
    (linear, over noise, per mW), ``pilot[P, K]``. Interface: ``reset(index=None) -> obs``,
    ``step(actions[M]) -> (obs[M, F], reward[M], done, info)``; after ``done`` the returned
    observation is the new episode's and ``info["final_obs"]`` holds the finished one's.
    """

    def __init__(
        self,
        setups: dict,
        *,
        n_antennas: int = 4,
        tau_p: int = 10,
        max_aps_per_ue: int = 5,
        max_neighbours: int = 4,
        metric_samples: int = 8,
        obs_users: int = 4,
        obs_history: int = 3,
        episode_steps: int = 10,
        ap_power_mw: float = 1000.0,
        pilot_power_mw: float = 100.0,
        delta: float = 0.01,
        neighbour_ratio: float = 0.05,
        rzf_alpha: float = 0.1,
        alpha_1: float = 1.0,
        alpha_2: float = 0.05,
        alpha_3: float = -0.025,
        obs_offset_db: float = 30.0,
        obs_scale_db: float = 20.0,
        seed: int = 0,
    ):
        self.setups = {k: np.asarray(setups[k]) for k in ("gain", "pilot")}
        self.N, self.tau_p = int(n_antennas), int(tau_p)
        self.max_aps, self.Q = int(max_aps_per_ue), int(max_neighbours)
        self.S, self.U, self.T = int(metric_samples), int(obs_users), int(obs_history)
        self.episode_steps = int(episode_steps)
        self.P, self.p = float(ap_power_mw), float(pilot_power_mw)
        self.delta, self.ratio, self.alpha = float(delta), float(neighbour_ratio), float(rzf_alpha)
        self.a1, self.a2, self.a3 = float(alpha_1), float(alpha_2), float(alpha_3)
        self.off, self.scale = float(obs_offset_db), float(obs_scale_db)
        self.M, self.K = self.setups["gain"].shape[1:]
        self.obs_dim = self.U + 1 + 5 * self.Q + self.T
        self.rng = np.random.default_rng(seed)

    # ---- reset ----------------------------------------------------------------------------

    def reset(self, index=None):
        """A new episode on pool entry ``index`` (default: a random one) ``-> obs[M, F]``."""
        if index is None:
            index = int(self.rng.integers(self.setups["gain"].shape[0]))
        gain, pilot = self.setups["gain"][index], self.setups["pilot"][index]
        est = mmse_coefficients(gain, pilot, self.p, self.tau_p)
        samples = [
            draw_channels(self.rng, gain, pilot, est, self.p, self.tau_p, self.N)
            for _ in range(self.S)
        ]
        return self.reset_from(gain, pilot, samples)

    def reset_from(self, gain, pilot, samples):
        """The reset of drop ``(gain[M, K], pilot[K])`` with the metric's ``samples`` (a list of
        ``(H, Hhat)``) given ``-> obs``."""
        gain = np.asarray(gain, float)
        pilot = np.asarray(pilot)
        D = threshold_clusters(gain, self.delta, self.max_aps)
        est = mmse_coefficients(gain, pilot, self.p, self.tau_p)
        rho = self.P * D / np.maximum(D.sum(1, keepdims=True), 1)
        I = np.mean(
            [interference_metric(H, mrt(Hh, D), rho, D) for H, Hh in samples], axis=0
        )  # a loop over the metric's draws
        idx, mask = neighbours(I, self.Q, self.ratio)
        I_nb = np.where(mask, np.take_along_axis(I, idx, axis=1), 0.0)
        top = I_nb.max(axis=1, keepdims=True)
        I_rel = np.where(mask, I_nb / np.where(top > 0, top, 1.0), 0.0)
        gain_db = 10 * np.log10(gain)
        vals = np.where(D, gain_db + 10 * np.log10(self.P), -np.inf)
        u = min(self.U, self.K)
        top_u = -np.sort(-vals, axis=1)[:, :u]
        beta = np.where(np.isfinite(top_u), (top_u - self.off) / self.scale, 0.0)
        if u < self.U:
            beta = np.concatenate([beta, np.zeros((self.M, self.U - u))], axis=1)
        I_db = np.where(
            mask, (10 * np.log10(np.where(mask, I_nb, 1.0)) - self.off) / self.scale, 0.0
        )
        count = D.sum(1, keepdims=True) / self.U
        self.obs_static = np.concatenate([beta, count, mask, I_rel, I_db], axis=1)
        self.gain, self.pilot, self.est, self.D, self.rho = gain, pilot, est, D, rho
        self.idx, self.mask, self.I_nb, self.I_rel = idx, mask, I_nb, I_rel
        self.bits = np.zeros((self.M, self.Q), bool)
        self.linked = np.zeros((self.M, self.Q), bool)
        self.hist = np.zeros((self.M, self.T))
        self.t = 0
        return self.obs()

    def obs(self):
        return np.concatenate([self.obs_static, self.bits, self.linked, self.hist], axis=1).astype(
            np.float32
        )

    # ---- step -----------------------------------------------------------------------------

    def step(self, actions):
        """``actions[M]`` ints in ``[0, 2^Q)`` ``-> (obs, reward[M], done, info)``."""
        H, Hhat = draw_channels(
            self.rng, self.gain, self.pilot, self.est, self.p, self.tau_p, self.N
        )
        return self.step_with(actions, H, Hhat)

    def step_with(self, actions, H, Hhat):
        """The step on the given channels ``H``, estimates ``Hhat`` (each ``[M, K, N]``)."""
        a = np.asarray(actions, np.int64)
        bits = ((a[:, None] >> np.arange(self.Q)) & 1).astype(bool) & self.mask
        want = np.zeros((self.M, self.M), bool)
        rows = np.broadcast_to(np.arange(self.M)[:, None], bits.shape)
        want[rows[bits], self.idx[bits]] = True
        agree = want & want.T
        labels = cluster_labels(agree)
        W = cluster_rzf(Hhat, labels, self.D, self.alpha)
        sinr = downlink_sinr(H, W, self.rho)
        sinr0 = downlink_sinr(H, mrt(Hhat, self.D), self.rho)
        rate, rate0 = np.log2(1 + sinr), np.log2(1 + sinr0)
        Df = self.D.astype(float)
        own, own0 = Df @ rate, Df @ rate0
        gain = np.where(own0 > 0, (own - own0) / np.where(own0 > 0, own0, 1.0), 0.0)
        bf = bits.astype(float)
        reward = self.a1 * gain - self.a2 * bf.sum(1) - self.a3 * (self.I_rel * bf).sum(1)
        links = agree.sum() / 2.0
        requests = bf.sum()
        _, counts = np.unique(labels, return_counts=True)
        sum_rate, sum_rate0 = rate.sum(), rate0.sum()
        sinr_db = 10 * np.log10(sinr)
        info = {
            "sum_rate": sum_rate,
            "mean_sinr_db": sinr_db.mean(),
            "links": links,
            "requests": requests,
            "coop_rate": requests / max(self.mask.sum(), 1),
            "clusters": float((counts >= 2).sum()),
            "sum_rate_mrt": sum_rate0,
            "efficiency": (sum_rate - sum_rate0) / links if links > 0 else 0.0,
            "rate": rate,
            "rate_mrt": rate0,
            "sinr_db": sinr_db,
        }
        self.bits = bits
        self.linked = np.take_along_axis(agree, self.idx, axis=1) & self.mask
        self.hist = np.concatenate([gain[:, None], self.hist[:, :-1]], axis=1)
        self.t += 1
        obs = self.obs()
        done = self.t >= self.episode_steps
        if done:
            info["final_obs"] = obs
            obs = self.reset()
        return obs, reward.astype(np.float32), done, info

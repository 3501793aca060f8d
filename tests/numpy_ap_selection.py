"""Single-environment NumPy (float64) reference of the AP-selection scenario ("Graph-Neural
Multi-Agent Coordination for Distributed Access-Point Selection in Cell-Free Massive MIMO",
APS-GNN).

The same system as ``cfmimo_jax.envs.ap_selection`` (see its module docstring for the model and
the parameter choices), written the way a researcher would write the simulator: one Python
object per network, NumPy arrays inside, an ``np.random.Generator``, a Python loop over the
``T_w`` slots of a selection window and NumPy vectorisation over APs and UEs within a slot.
No JAX. Validated against the JAX environment in ``tests/test_numpy_ap_selection.py``; the
benchmarks (``bench/bench_envs.py``, ``bench/bench_training.py``, ``bench/torch_mappo.py``) use
it as their NumPy baseline through ``bench/numpy_ap_selection.py``, which loads this file.

Interface (one environment)::

    env = APSelectionNumPy(n_aps=20, n_ues=6, mobility="pedestrian", seed=0)
    obs = env.reset()                                   # [L K, history, 1]
    obs, reward, done, info = env.step(actions)         # actions[L K] in {0, 1}

``step`` resets automatically when the episode ends (``done``), returning the first observation
of the next episode and the last one of the finished episode in ``info["final_obs"]``, like the
JAX environment. Agent ``a = l K + k`` is the AP-UE pair ``(l, k)``.
"""

from __future__ import annotations

import numpy as np

C_LIGHT = 299_792_458.0
KMH = 1.0 / 3.6

DEFAULTS = dict(
    se_target=2.0,
    radius_m=500.0,
    carrier_ghz=2.0,
    ap_height_m=20.0,
    ue_height_m=1.5,
    shadow_std_db=6.0,
    shadow_corr_m=37.0,
    noise_figure_db=9.0,
    bandwidth_hz=20e6,
    ap_power_w=0.2,
    amp_efficiency=0.4,
    circuit_power_w=0.2,
    slot_s=0.05,
    speed_mean_kmh=5.0,
    speed_min_kmh=1.0,
    speed_max_kmh=10.0,
    pause_prob=0.3,
    pause_mean_s=2.0,
    obs_offset_db=20.0,
    obs_scale_db=20.0,
)
PEDESTRIAN = dict(speed_mean_kmh=5.0, speed_min_kmh=1.0, speed_max_kmh=10.0)
VEHICULAR = dict(speed_mean_kmh=70.0, speed_min_kmh=50.0, speed_max_kmh=120.0)


def uma_los_pathloss_db(d2d, h_bs, h_ut, fc_ghz):
    """3GPP TR 38.901 UMa LoS path loss (dB), ``d2D`` clamped to >= 10 m."""
    dh = h_bs - h_ut
    d2 = np.maximum(d2d, 10.0)
    d3 = np.sqrt(d2**2 + dh**2)
    d_bp = 4.0 * max(h_bs - 1.0, 0.1) * max(h_ut - 1.0, 0.1) * fc_ghz * 1e9 / C_LIGHT
    pl1 = 28.0 + 22.0 * np.log10(d3) + 20.0 * np.log10(fc_ghz)
    pl2 = 28.0 + 40.0 * np.log10(d3) + 20.0 * np.log10(fc_ghz) - 9.0 * np.log10(d_bp**2 + dh**2)
    return np.where(d2 <= d_bp, pl1, pl2)


def mrt_se(h, A):
    """Per-UE SE (eqs. (5)-(8)): MRT, each AP splits its power equally over its served UEs.

    ``h[L, K]`` channels with the AP SNR folded in, ``A[L, K]`` 0/1. Returns ``se[K]``.
    """
    A = A.astype(float)
    n_served = A.sum(axis=1, keepdims=True)
    W = A * np.sqrt(1.0 / np.maximum(n_served, 1.0)) * np.conj(h) / np.abs(h)
    G = h.T @ W  # G[k, j]: received at UE k from the beam of UE j
    P = np.abs(G) ** 2
    sig = np.diag(P)
    interf = P.sum(axis=1) - sig
    return np.log2(1.0 + sig / (interf + 1.0))


def k_strongest(obs, n_aps, n_ues, k):
    """Each UE picks the ``k`` APs with the strongest last observed channel (ties: AP index)."""
    cur = obs[:, -1, 0].reshape(n_aps, n_ues)
    best = np.argsort(-cur, axis=0, kind="stable")[:k]  # [k, K]
    A = np.zeros((n_aps, n_ues), dtype=np.int32)
    A[best, np.arange(n_ues)[None, :]] = 1
    return A.reshape(-1)


class APSelectionNumPy:
    """One AP-selection network (see module docstring)."""

    def __init__(
        self,
        n_aps=20,
        n_ues=6,
        mobility="pedestrian",
        window_slots=10,
        n_windows=10,
        history=10,
        shadow_terms=64,
        seed=None,
        **overrides,
    ):
        if mobility not in ("pedestrian", "vehicular"):
            raise ValueError(f"mobility must be 'pedestrian' or 'vehicular', got {mobility!r}")
        unknown = set(overrides) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"unknown parameters: {sorted(unknown)}")
        if history > window_slots:
            raise ValueError("history must not exceed window_slots")
        self.L, self.K = n_aps, n_ues
        self.T, self.n_windows, self.history, self.S = (
            window_slots,
            n_windows,
            history,
            shadow_terms,
        )
        self.n_agents = n_aps * n_ues
        p = dict(DEFAULTS)
        p.update(PEDESTRIAN if mobility == "pedestrian" else VEHICULAR)
        p.update({k: float(v) for k, v in overrides.items()})
        self.p = p
        noise_dbm = -174.0 + 10.0 * np.log10(p["bandwidth_hz"]) + p["noise_figure_db"]
        self.rho_db = 10.0 * np.log10(p["ap_power_w"] * 1e3) - noise_dbm
        self.lam = C_LIGHT / (p["carrier_ghz"] * 1e9)
        self.v_mean = p["speed_mean_kmh"] * KMH
        self.v_min = p["speed_min_kmh"] * KMH
        self.v_max = p["speed_max_kmh"] * KMH
        self.rng = np.random.default_rng(seed)

    # ---- random draws -------------------------------------------------------------------

    def _disc(self, n):
        r = self.p["radius_m"] * np.sqrt(self.rng.uniform(size=n))
        a = 2.0 * np.pi * self.rng.uniform(size=n)
        return np.stack([r * np.cos(a), r * np.sin(a)], axis=-1)

    def _speed(self, n):
        return np.clip(self.v_mean * self.rng.exponential(size=n), self.v_min, self.v_max)

    # ---- episode ------------------------------------------------------------------------

    def reset(self, ap_pos=None, ue_pos=None, field=None, warmup=True):
        """New network: APs and UEs uniform in the disc, a fresh shadowing field, one warm-up
        window with no AP serving. Positions ``ap_pos[L, 2]``, ``ue_pos[K, 2]`` and the field
        ``(w[S, 2], a[L, S], b[L, S])`` may be given (tests). Returns the observation."""
        self.ap_pos = self._disc(self.L) if ap_pos is None else np.array(ap_pos, float)
        self.ue_pos = self._disc(self.K) if ue_pos is None else np.array(ue_pos, float)
        if field is None:
            w = self.rng.normal(size=(self.S, 2)) / self.p["shadow_corr_m"]
            a = self.rng.normal(size=(self.L, self.S))
            b = self.rng.normal(size=(self.L, self.S))
        else:
            w, a, b = (np.array(x, float) for x in field)
        self.w, self.a, self.b = w, a, b
        self.ue_dest = self._disc(self.K)
        self.ue_speed = self._speed(self.K)
        self.ue_pause = np.zeros(self.K)
        self.window = 0
        self.hist = np.zeros((self.L, self.K, self.history))
        if warmup:
            self._play_window(np.zeros((self.L, self.K), dtype=bool))
        return self._obs()

    def _obs(self):
        return self.hist.reshape(self.n_agents, self.history, 1).copy()

    # ---- one slot -----------------------------------------------------------------------

    def move_ues(self):
        """One slot of random waypoint (pauses at waypoints)."""
        dt = self.p["slot_s"]
        paused = self.ue_pause > 0
        delta = self.ue_dest - self.ue_pos
        dist = np.sqrt(np.sum(delta**2, axis=1))
        step = self.ue_speed * dt
        arrive = ~paused & (step >= dist)
        unit = delta / np.maximum(dist, 1e-9)[:, None]
        moving = ~paused
        self.ue_pos[moving] += np.minimum(step, dist)[moving, None] * unit[moving]
        self.ue_pause = np.maximum(self.ue_pause - dt, 0.0)
        n = int(arrive.sum())
        if n:
            self.ue_pos[arrive] = self.ue_dest[arrive]
            self.ue_dest[arrive] = self._disc(n)
            self.ue_speed[arrive] = self._speed(n)
            pause = self.rng.exponential(self.p["pause_mean_s"], size=n)
            self.ue_pause[arrive] = np.where(
                self.rng.uniform(size=n) < self.p["pause_prob"], pause, 0.0
            )

    def shadowing_db(self, ue_pos):
        """Shadowing ``F[L, K]`` of the random-Fourier-feature fields at ``ue_pos[K, 2]``:
        ``F_lk = std sum_s [a_ls cos(w_s . x_k) + b_ls sin(w_s . x_k)] / sqrt(S)``."""
        arg = self.w @ ue_pos.T  # [S, K]
        f = self.a @ np.cos(arg) + self.b @ np.sin(arg)  # [L, K]
        return self.p["shadow_std_db"] / np.sqrt(self.S) * f

    def channels(self, ue_pos=None):
        """LoS channels ``h[L, K]`` with the AP SNR folded in (``|h|^2`` = full-power SNR)."""
        ue_pos = self.ue_pos if ue_pos is None else ue_pos
        d2 = np.sqrt(np.sum((ue_pos[None, :, :] - self.ap_pos[:, None, :]) ** 2, axis=-1))
        d3 = np.sqrt(d2**2 + (self.p["ap_height_m"] - self.p["ue_height_m"]) ** 2)
        pl = uma_los_pathloss_db(
            d2, self.p["ap_height_m"], self.p["ue_height_m"], self.p["carrier_ghz"]
        )
        snr_db = self.rho_db - pl + self.shadowing_db(ue_pos)
        return 10.0 ** (snr_db / 20.0) * np.exp(-2j * np.pi * d3 / self.lam)

    def _play_window(self, A):
        se = np.zeros((self.T, self.K))
        for t in range(self.T):
            self.move_ues()
            h = self.channels()
            se[t] = mrt_se(h, A)
            if t >= self.T - self.history:
                db = 20.0 * np.log10(np.abs(h))
                self.hist[:, :, t - (self.T - self.history)] = (
                    db - self.p["obs_offset_db"]
                ) / self.p["obs_scale_db"]
        return se

    # ---- one window ---------------------------------------------------------------------

    def step(self, actions):
        """Play one window with selection ``actions[L K]``: ``-> (obs, reward, done, info)``."""
        A = np.asarray(actions).reshape(self.L, self.K) > 0
        se = self._play_window(A).mean(axis=0)  # window-average SE per UE
        active = A.any(axis=1)
        reward = -np.repeat(active.astype(float), self.K)
        shortfall = np.maximum(self.p["se_target"] - se, 0.0)
        per_ap_w = self.p["circuit_power_w"] + self.p["ap_power_w"] / self.p["amp_efficiency"]
        self.window += 1
        done = self.window >= self.n_windows
        obs = self._obs()
        info = {
            "cost": np.tile(shortfall, self.L),
            "mean_se": se.mean(),
            "frac_target": np.mean(se >= self.p["se_target"]),
            "active_aps": float(active.sum()),
            "power_w": per_ap_w * active.sum(),
            "se": se,
            "terminated": False,
            "truncated": done,
            "final_obs": obs,
        }
        if done:
            obs = self.reset()
        return obs, reward, done, info

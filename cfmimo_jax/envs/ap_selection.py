"""AP selection under UE mobility, as a multi-agent environment.

The APS-GNN paper: "Graph-Neural Multi-Agent Coordination for Distributed Access-Point Selection
in Cell-Free Massive MIMO" (docs/references.md, [APS-GNN]); equation numbers below are its.

System (APS-GNN section III): ``L`` single-antenna APs and ``K`` UEs dropped uniformly in a disc;
UEs move by random waypoint (pedestrian or vehicular speed class: exponential speeds clipped to
a range, pauses at waypoints). Every slot the LoS channel of each AP-UE pair is recomputed from
the 3-D distance: ``h_lk = sqrt(beta_lk) exp(-j 2 pi d_lk / lambda)`` with the 3GPP urban-macro
LoS path loss and a shadowing field that is a property of position (smooth as UEs move). The
downlink uses MRT with equal power over the UEs an AP serves (eq. (8)):
``w_lk = a_lk sqrt(rho / n_l) h_lk^* / |h_lk|``, ``n_l = sum_k a_lk``, ``rho`` the AP transmit
SNR, so an active AP radiates full power; with noise power 1,
``SINR_k = |sum_l h_lk w_lk|^2 / (sum_{j != k} |sum_l h_lk w_lj|^2 + 1)`` (eq. (5)),
``SE_k = log2(1 + SINR_k)`` (eq. (6)). AP power: eq. (9), ``cfmimo_jax.power``.

Two timescales (eq. (7)): the selection ``A[L, K]`` is decided once per window of ``T_w`` slots
and held; one environment step is one window. Agents: one per AP-UE pair, agent index
``a = l K + k``, binary action (1 = serve). Observation of agent ``(l, k)``: the history of its
normalised channel magnitude over the last ``history`` slots, ``obs[n_agents, history, 1]``
(``(20 log10 |h_lk| sqrt(rho) - obs_offset_db) / obs_scale_db``). Graph: edges between pairs that
share an AP (type 0) and pairs that share a UE (type 1).

Local reward and cost (eqs. (11)-(12)): ``r_lk = -active_l`` (the activation of the pair's AP;
``active_l = 1`` when AP ``l`` serves anyone in the window), and
``c_lk = max(0, SE_target - mean_t SE_k(t))``, the shortfall of the pair's UE against the target,
with the window average of constraint (10b). ``info["cost"]`` carries the cost; ``info`` also has
the metrics ``mean_se``, ``frac_target`` (UEs meeting the target), ``active_aps``, ``power_w``.

An episode is ``n_windows`` windows, then it is truncated (never terminated). ``reset`` drops the
network and runs one window of mobility so the first observation has a full history.

Values the APS-GNN paper leaves out (from the public code that accompanies it): disc
of radius 500 m, 2 GHz, AP height 20 m, UE 1.5 m, shadowing std 6 dB, noise figure 9 dB,
20 MHz, AP transmit power 0.2 W, amplifier efficiency 0.4, circuit power 0.2 W, slot 50 ms,
``T_w = 10`` slots, 10 windows per episode, vehicular speed Exp(70 km/h) clipped to 50-120 km/h.
Chosen here: pedestrian speed Exp(5 km/h) clipped to 1-10 km/h; pause probability 0.3 at a
waypoint with Exp(2 s) duration; shadowing correlation length 37 m (3GPP UMa LoS
decorrelation distance) with a Gaussian kernel; SE target 2 bit/s/Hz (k-strongest reaches
it on average, MRT with all APs on does not); history 10 slots.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from .. import _validate as V
from ..fastmath import db_to_amplitude, sincos
from ..geometry import Waypoints, uniform_disc, waypoint_init, waypoint_step
from ..pathloss import evaluate_shadowing, shadowing_field, uma_los_pathloss_db
from ..power import ap_power_consumption
from . import spaces
from .base import AgentGraph, MultiAgentEnv

KMH = 1.0 / 3.6  # m/s per km/h


@functools.partial(jax.tree_util.register_dataclass)
@dataclasses.dataclass(frozen=True)
class APSelectionParams:
    """Numeric parameters (scalars; a pytree, so sweeps ``vmap`` over them). Units in names."""

    se_target: float = 2.0
    radius_m: float = 500.0
    carrier_ghz: float = 2.0
    ap_height_m: float = 20.0
    ue_height_m: float = 1.5
    shadow_std_db: float = 6.0
    shadow_corr_m: float = 37.0
    noise_figure_db: float = 9.0
    bandwidth_hz: float = 20e6
    ap_power_w: float = 0.2
    amp_efficiency: float = 0.4
    circuit_power_w: float = 0.2
    slot_s: float = 0.05
    speed_mean_kmh: float = 5.0
    speed_min_kmh: float = 1.0
    speed_max_kmh: float = 10.0
    pause_prob: float = 0.3
    pause_mean_s: float = 2.0
    obs_offset_db: float = 20.0
    obs_scale_db: float = 20.0

    @property
    def noise_dbm(self):
        return -174.0 + 10.0 * jnp.log10(self.bandwidth_hz) + self.noise_figure_db

    @property
    def rho_db(self):
        """AP transmit power over noise, dB."""
        return 10.0 * jnp.log10(self.ap_power_w * 1e3) - self.noise_dbm


PEDESTRIAN = dict(speed_mean_kmh=5.0, speed_min_kmh=1.0, speed_max_kmh=10.0)
VEHICULAR = dict(speed_mean_kmh=70.0, speed_min_kmh=50.0, speed_max_kmh=120.0)


@functools.partial(jax.tree_util.register_dataclass)
@dataclasses.dataclass(frozen=True)
class APSelectionState:
    """Environment state. ap_pos[L, 2]; ue: mobility; field: shadowing (w[S,2], a[L,S], b[L,S]);
    hist[L, K, history] normalised magnitudes; window: int32 windows done this episode."""

    ap_pos: jax.Array
    ue: Waypoints
    field: tuple
    hist: jax.Array
    window: jax.Array


def mrt_se(h, A, rho):
    """Per-UE SE with MRT and equal per-AP power over the served UEs (APS-GNN eqs. (5)-(8)).

    ``h[..., L, K]`` complex channels (noise-normalised), ``A[..., L, K]`` 0/1 selection,
    ``rho`` AP transmit SNR (linear). Returns ``(se[..., K], sinr[..., K])``.
    """
    mag = jnp.abs(h)
    unit = h / jnp.maximum(mag, 1e-30)
    se, sinr = _mrt_se_real(
        jnp.real(h) * jnp.sqrt(rho), jnp.imag(h) * jnp.sqrt(rho), jnp.real(unit), jnp.imag(unit), A
    )
    return se, sinr


def _mrt_se_real(hr, hi, ur, ui, A):
    """``mrt_se`` in real arithmetic from the channel ``hr + j hi`` (SNR folded in) and its
    unit phasor ``ur + j ui``, all ``[..., L, K]`` (``A[L, K]`` or ``[..., L, K]``). The MRT beam
    of UE ``j`` at AP ``l`` is ``q_l A_lj (ur_lj - j ui_lj)``, ``q_l = 1 / sqrt(max(n_l, 1))``;
    the gain from beam ``j`` at UE ``k`` is ``g_kj = sum_l h_lk q_l A_lj conj(u_lj)``.

    The ``K x K`` gains are broadcast products reduced over ``L`` (one XLA reduce fusion)
    rather than a batched matrix product: with ``K`` of a few to a few tens of UEs the dot's
    per-batch overhead dominates (on a 2-core CPU a whole window of ``step_env`` runs about
    1.1-1.25x faster with it, medium and large networks)."""
    Af = A.astype(hr.dtype)
    q = Af * jax.lax.rsqrt(jnp.maximum(jnp.sum(Af, axis=-1, keepdims=True), 1.0))
    wr, wi = q * ur, -q * ui  # beams [..., L, J]
    hr_, hi_ = hr[..., :, :, None], hi[..., :, :, None]  # [..., L, K, 1]
    wr_, wi_ = wr[..., :, None, :], wi[..., :, None, :]  # [..., L, 1, J]
    gr = jnp.sum(hr_ * wr_ - hi_ * wi_, axis=-3)  # [..., K, J]
    gi = jnp.sum(hr_ * wi_ + hi_ * wr_, axis=-3)
    p = gr**2 + gi**2
    sig = jnp.diagonal(p, axis1=-2, axis2=-1)
    interf = jnp.sum(p, axis=-1) - sig
    sinr = sig / (interf + 1.0)
    return jnp.log2(1.0 + sinr), sinr


def switch_off_se(hr, hi, ur, ui, A):
    """Per-UE SE of every one-link counterfactual: ``se_off[..., L, K, K]``, entry
    ``[..., l, k, j]`` the SE of UE ``j`` with link ``(l, k)`` switched off (``A_lk = 0``, AP
    ``l``'s power re-split over its other UEs) and every other link as in ``A``; for a link that
    is already off it is the SE under ``A``. Inputs as ``_mrt_se_real`` (``[..., L, K]``).

    Switching one link changes only AP ``l``'s beams, so the gains are updated, not recomputed:
    ``g'_{kj} = g_kj + h_lk conj(u_lj) (q'_l A'_lj - q_l A_lj)`` with ``q = 1 / sqrt(max(n, 1))``
    (``O(L K^3)`` per slot instead of ``O(L^2 K^3)``)."""
    Af = A.astype(hr.dtype)
    n = jnp.sum(Af, axis=-1, keepdims=True)  # [..., L, 1]
    q = jax.lax.rsqrt(jnp.maximum(n, 1.0))
    w = q * Af  # [..., L, J] beam amplitudes
    h = jax.lax.complex(hr, hi)
    u = jax.lax.complex(ur, -ui)  # conj(u)
    g = jnp.einsum("...lk,...lj->...kj", h, w * u)  # [..., K, J]
    off = jnp.eye(A.shape[-1], dtype=hr.dtype)  # link k of AP l off: row k of this
    A2 = Af[..., :, None, :] * (1.0 - off)  # [..., L, k, J]
    n2 = n[..., None] - Af[..., :, :, None]  # [..., L, k, 1]
    w2 = jax.lax.rsqrt(jnp.maximum(n2, 1.0)) * A2
    delta = (w2 - w[..., :, None, :]) * u[..., :, None, :]  # [..., L, k, J]
    g2 = g[..., None, None, :, :] + h[..., :, None, :, None] * delta[..., :, :, None, :]
    p = jnp.real(g2) ** 2 + jnp.imag(g2) ** 2  # [..., L, k, K', J]
    sig = jnp.diagonal(p, axis1=-2, axis2=-1)
    sinr = sig / (jnp.sum(p, axis=-1) - sig + 1.0)
    return jnp.log2(1.0 + sinr)


def channel_polar(params: APSelectionParams, ap_pos, ue_pos, field):
    """LoS channels in polar form from the 3-D distances: ``(snr_db[..., L, K],
    phase[..., L, K])`` for ``ap_pos[L, 2]`` and ``ue_pos[..., K, 2]`` (leading axes, e.g. the
    slots of a window, are evaluated at once),
    ``h_lk = 10^(snr_db / 20) exp(j phase)``; ``snr_db = rho_dB - PL_UMa-LoS(d2D) + F_lk``
    (path loss: ``uma_los_pathloss_db``; shadowing: ``evaluate_shadowing``),
    ``phase = -2 pi d3D / lambda`` (mod 2 pi)."""
    disp = ue_pos[..., None, :, :] - ap_pos[:, None, :]  # [..., L, K, 2]
    d2 = jnp.sqrt(jnp.sum(disp**2, axis=-1))
    dh = params.ap_height_m - params.ue_height_m
    d3 = jnp.sqrt(d2**2 + dh**2)
    pl = uma_los_pathloss_db(d2, params.ap_height_m, params.ue_height_m, params.carrier_ghz)
    shadow = evaluate_shadowing(field, ue_pos, params.shadow_std_db)
    snr_db = params.rho_db - pl + shadow
    lam = 299_792_458.0 / (params.carrier_ghz * 1e9)
    phase = -2.0 * jnp.pi * jnp.mod(d3 / lam, 1.0)
    return snr_db, phase


def channels(params: APSelectionParams, ap_pos, ue_pos, field):
    """LoS channels ``h[L, K]`` (complex, noise-normalised with the AP power folded in: the
    SNR of pair ``(l, k)`` at full power is ``|h_lk|^2``), from the 3-D distances
    (``channel_polar``)."""
    snr_db, phase = channel_polar(params, ap_pos, ue_pos, field)
    amp = db_to_amplitude(snr_db)
    sin, cos = sincos(phase)
    return jax.lax.complex(amp * cos, amp * sin)


class APSelection(MultiAgentEnv):
    """The AP-selection environment (module docstring). Static sizes in the constructor.

    Spaces: per agent ``observation_space = Box(-inf, inf, (history, 1))``, ``action_space =
    Discrete(2)``; ``global_state(state) = hist[L, K, history]`` (every pair's magnitudes).
    """

    action_space = spaces.Discrete(2)
    eval_metrics = ("mean_se", "frac_target", "active_aps", "power_w", "cost")
    progress_metrics = ("mean_se", "active_aps")

    def __init__(
        self,
        n_aps: int = 20,
        n_ues: int = 6,
        window_slots: int = 10,
        n_windows: int = 10,
        history: int = 10,
        shadow_terms: int = 64,
        signals: str = "local",
    ):
        if signals not in ("local", "difference"):
            raise ValueError(f"signals must be 'local' or 'difference', got {signals!r}")
        self.signals = signals
        self.L = V.positive_int("n_aps", n_aps)
        self.K = V.positive_int("n_ues", n_ues)
        self.T = V.positive_int("window_slots", window_slots)
        self.n_windows = V.positive_int("n_windows", n_windows)
        self.history = V.positive_int("history", history)
        self.shadow_terms = V.positive_int("shadow_terms", shadow_terms)
        if self.history > self.T:
            raise ValueError(
                f"history={history} must not exceed window_slots={window_slots} "
                "(the observation is the last slots of the window just played)"
            )
        self.n_agents = self.L * self.K
        self.observation_space = spaces.Box(-np.inf, np.inf, (self.history, 1))
        self.global_state_space = spaces.Box(-np.inf, np.inf, (self.L, self.K, self.history))
        self._graph = self._build_graph()

    # ---- static structure -------------------------------------------------------------

    def _build_graph(self) -> AgentGraph:
        L, K = self.L, self.K
        idx = np.arange(L * K).reshape(L, K)
        # same AP: (l, j) -> (l, k), j != k ; same UE: (m, k) -> (l, k), m != l
        ap_s = np.broadcast_to(idx[:, None, :], (L, K, K))
        ap_r = np.broadcast_to(idx[:, :, None], (L, K, K))
        keep = ~np.eye(K, dtype=bool)[None].repeat(L, 0)
        ue_s = np.broadcast_to(idx.T[:, None, :], (K, L, L))
        ue_r = np.broadcast_to(idx.T[:, :, None], (K, L, L))
        keep_u = ~np.eye(L, dtype=bool)[None].repeat(K, 0)
        senders = np.concatenate([ap_s[keep], ue_s[keep_u]]).astype(np.int32)
        receivers = np.concatenate([ap_r[keep], ue_r[keep_u]]).astype(np.int32)
        etype = np.concatenate(
            [np.zeros(int(keep.sum()), np.int32), np.ones(int(keep_u.sum()), np.int32)]
        )
        return AgentGraph(
            jnp.asarray(senders),
            jnp.asarray(receivers),
            jnp.asarray(etype),
            jnp.ones(senders.shape, bool),
            jnp.ones((L * K,), bool),
        )

    def graph(self) -> AgentGraph:
        """Same-AP (type 0) and same-UE (type 1) edges between the ``L K`` pair agents."""
        return self._graph

    def global_state(self, state: APSelectionState):
        """Every pair's normalised magnitude history, ``[L, K, history]``."""
        return state.hist

    def heuristics(self) -> dict:
        """``"k-strongest"`` for ``k = 1..min(L, 8)`` and ``"all-on"`` (module functions; they
        read the observation only): ``policy(obs, state) -> actions``."""
        L, K = self.L, self.K

        def from_obs(fn):
            return lambda obs, state=None: fn(obs)

        pols = {
            f"{k}-strongest": from_obs(functools.partial(k_strongest, n_aps=L, n_ues=K, k=k))
            for k in range(1, min(L, 8) + 1)
        }
        pols["all-on"] = from_obs(all_on)
        return pols

    @property
    def default_heuristics(self) -> tuple:
        """1- to 4-strongest (those within ``L``) and all-on."""
        return tuple(f"{k}-strongest" for k in range(1, min(self.L, 4) + 1)) + ("all-on",)

    def default_params(self, **overrides) -> APSelectionParams:
        return APSelectionParams(**overrides)

    # ---- dynamics ---------------------------------------------------------------------

    def _obs(self, hist):
        return hist.reshape(self.n_agents, self.history, 1)

    def _play_window(self, key, state: APSelectionState, A, params):
        """Run ``T_w`` slots with selection ``A[L, K]``: ``-> (ue, hist[L,K,T], se[T,K])``.

        The UE motion is a ``lax.scan`` over the slots (each slot depends on the last); the
        channels and SEs of all ``T_w`` slots are then computed at once from the ``[T_w, K, 2]``
        positions (one ``[L, 2S] x [2S, T_w K]`` shadowing product instead of ``T_w`` small
        ones), which gives the same numbers as computing them inside the scan."""

        def slot(ue, k):
            ue = waypoint_step(
                k,
                ue,
                params.slot_s,
                params.radius_m,
                params.speed_mean_kmh * KMH,
                params.speed_min_kmh * KMH,
                params.speed_max_kmh * KMH,
                params.pause_prob,
                params.pause_mean_s,
            )
            return ue, ue.pos

        ue, pos = jax.lax.scan(slot, state.ue, jax.random.split(key, self.T))  # pos[T, K, 2]
        snr_db, phase = channel_polar(params, state.ap_pos, pos, state.field)  # [T, L, K]
        amp = db_to_amplitude(snr_db)
        ui, ur = sincos(phase)
        hr, hi = amp * ur, amp * ui
        se, _ = _mrt_se_real(hr, hi, ur, ui, A)  # rho is folded into h; [T, K]
        mags = (snr_db - params.obs_offset_db) / params.obs_scale_db  # 20 log10 |h_lk|
        hist = jnp.moveaxis(mags[self.T - self.history :], 0, -1)  # [L, K, history]
        if self.signals == "difference":
            return ue, hist, se, switch_off_se(hr, hi, ur, ui, A)
        return ue, hist, se

    def reset_env(self, key, params):
        ka, ku, kf, kw = jax.random.split(key, 4)
        dtype = jnp.result_type(float)
        ap_pos = uniform_disc(ka, self.L, params.radius_m, dtype)
        ue = waypoint_init(
            ku,
            self.K,
            params.radius_m,
            params.speed_mean_kmh * KMH,
            params.speed_min_kmh * KMH,
            params.speed_max_kmh * KMH,
            dtype,
        )
        field = shadowing_field(kf, self.L, self.shadow_terms, params.shadow_corr_m, dtype)
        state = APSelectionState(
            ap_pos, ue, field, jnp.zeros((self.L, self.K, self.history), dtype), jnp.int32(0)
        )
        ue, hist = self._play_window(kw, state, jnp.zeros((self.L, self.K), bool), params)[:2]
        state = dataclasses.replace(state, ue=ue, hist=hist)
        return self._obs(hist), state

    def step_env(self, key, state, actions, params):
        A = actions.reshape(self.L, self.K) > 0
        ue, hist, se, *cf = self._play_window(key, state, A, params)
        se_avg = jnp.mean(se, axis=0)  # [K], the window average of constraint (10b)
        active = jnp.any(A, axis=1)  # [L]
        reward = -jnp.broadcast_to(active[:, None], (self.L, self.K)).astype(se.dtype)
        shortfall = jnp.maximum(params.se_target - se_avg, 0.0)
        cost = jnp.broadcast_to(shortfall[None, :], (self.L, self.K))
        signals = {}
        if cf:  # difference signals: the team's change when the agent's link is switched off
            sf_off = jnp.maximum(params.se_target - jnp.mean(cf[0], axis=0), 0.0)  # [L, K, K]
            d_cost = jnp.sum(shortfall) - jnp.sum(sf_off, axis=-1)  # [L, K]
            n_l = jnp.sum(A, axis=1, keepdims=True)
            d_reward = -(A & (n_l == 1)).astype(se.dtype)  # the link alone keeps its AP on
            signals = {
                "signal_reward": d_reward.reshape(-1),
                "signal_cost": jnp.where(A, d_cost, 0.0).reshape(-1),
            }
        power = ap_power_consumption(
            active, params.ap_power_w, params.amp_efficiency, params.circuit_power_w
        )
        window = state.window + 1
        state = dataclasses.replace(state, ue=ue, hist=hist, window=window)
        truncated = window >= self.n_windows
        info = {
            "cost": cost.reshape(-1),
            "mean_se": jnp.mean(se_avg),
            "frac_target": jnp.mean((se_avg >= params.se_target).astype(se.dtype)),
            "active_aps": jnp.sum(active.astype(se.dtype)),
            "power_w": jnp.sum(power),
            "se": se_avg,
            **signals,
        }
        return (
            self._obs(hist),
            state,
            reward.reshape(-1),
            jnp.bool_(False),
            truncated,
            info,
        )


# ---- heuristic policies (through the same step) ------------------------------------------


def k_strongest(obs, n_aps: int, n_ues: int, k: int):
    """k-strongest selection (APS-GNN section VI-B): each UE is served by the ``k`` APs with
    the strongest current channel (the last slot of the observed history).

    ``obs[..., L K, history, 1]`` -> ``actions[..., L K]`` int32. Ties broken by AP index (the
    lower index wins). ``lax.top_k`` over the APs of each UE (XLA's CPU top-k is about 20x faster
    than ranking the APs with two stable argsorts, which took a third of a large network's step).
    """
    if not 1 <= k <= n_aps:
        raise ValueError(f"k must lie in [1, n_aps={n_aps}], got {k}")
    cur = obs[..., -1, 0].reshape(obs.shape[:-3] + (n_aps, n_ues))
    _, top = jax.lax.top_k(jnp.swapaxes(cur, -1, -2), k)  # [..., K, k] AP indices
    chosen = jnp.any(top[..., None] == jnp.arange(n_aps), axis=-2)  # [..., K, L]
    return jnp.swapaxes(chosen, -1, -2).astype(jnp.int32).reshape(obs.shape[:-3] + (n_aps * n_ues,))


def all_on(obs):
    """Every AP serves every UE: ``actions[..., n_agents] = 1``."""
    return jnp.ones(obs.shape[:-2], jnp.int32)


# Documented default configuration (``cfmimo_jax.envs.make("ap_selection", config)``); the
# medium network of the APS-GNN paper with pedestrian UEs. Any ``APSelectionParams`` field
# may be added.
DEFAULT_CONFIG = {
    "n_aps": 20,  # APs L (APS-GNN medium: 20 x 6; large: 64 x 16)
    "n_ues": 6,  # UEs K
    "window_slots": 10,  # T_w: slots of 50 ms per selection window (one environment step)
    "n_windows": 10,  # windows per episode (then truncated)
    "history": 10,  # slots of channel-magnitude history per agent observation
    "mobility": "pedestrian",  # pedestrian | vehicular (speed class of the random waypoint)
    "se_target": 2.0,  # bit/s/Hz per UE (window average): the cost's threshold
    "radius_m": 500.0,  # disc radius
    # learning signals: local (APS-GNN eqs. (11)-(12)) | difference (also info["signal_reward"]
    # and info["signal_cost"]: the change of the AP count and of the sum of shortfalls when the
    # agent's own link is switched off, 0 for links that are off; Wolpert and Tumer's
    # difference rewards; reward and cost themselves stay those of eqs. (11)-(12))
    "signals": "local",
}
_SIZES = ("n_aps", "n_ues", "window_slots", "n_windows", "history", "shadow_terms", "signals")


def make(config: dict | None = None):
    """``(env, params)`` from a config dict over ``DEFAULT_CONFIG``: sizes (``n_aps``,
    ``n_ues``, ``window_slots``, ``n_windows``, ``history``, ``shadow_terms``), ``mobility``
    (``"pedestrian"`` or ``"vehicular"``) and any ``APSelectionParams`` field."""
    fields = {f.name for f in dataclasses.fields(APSelectionParams)}
    config = dict(config or {})
    unknown = sorted(set(config) - set(DEFAULT_CONFIG) - fields - set(_SIZES))
    if unknown:
        raise ValueError(
            f"unknown AP-selection parameters: {unknown} (known: sizes {list(_SIZES)}, "
            f"mobility, and the APSelectionParams fields {sorted(fields)})"
        )
    config = {**DEFAULT_CONFIG, **config}
    sizes = {k: config.pop(k) for k in _SIZES if k in config}
    mobility = config.pop("mobility")
    if mobility not in ("pedestrian", "vehicular"):
        raise ValueError(f"mobility must be 'pedestrian' or 'vehicular', got {mobility!r}")
    for k, v in config.items():
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ValueError(f"{k} must be a number, got {v!r}")
    speeds = PEDESTRIAN if mobility == "pedestrian" else VEHICULAR
    env = APSelection(**sizes)
    params = APSelectionParams(**{**speeds, **{k: float(v) for k, v in config.items()}})
    return env, params

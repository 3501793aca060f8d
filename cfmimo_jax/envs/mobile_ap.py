"""Mobile cell-free downlink with UAV access points ([MOBILE-AP], seed 000), multi-agent.

System (Liu et al., "Mobile Cell-Free Massive MIMO with Multi-Agent Reinforcement Learning: A
Scalable Framework", section II and V): ``M`` UAV APs fly at the fixed altitude
``ap_height_m`` with ``N``-antenna half-wavelength ULAs; ``K`` static single-antenna UEs at
``ue_height_m``; all in a ``side_m x side_m`` square (1 km, wrap-around distances). Path loss:
COST 231 Walfisch-Ikegami (``cfmimo_jax.pathloss.cost231_wi_pathloss_db``) of the horizontal
distance (eq. (21)) with the mean over the LoS state under the air-to-ground LoS probability
of the elevation (``los_probability_air_to_ground``, urban), smooth in the AP positions; the
street, building and height parameters the paper leaves out are those of
``cost231_wi_nlos_db`` (3GPP SCM urban micro: roofs 12 m, streets 25 m, buildings 50 m apart,
30 deg street orientation, metropolitan) at 1.9 GHz. Large-scale gain over the noise
``beta_mk = 10^((-PL_mk - sigma2_dbm) / 10)`` with ``sigma^2 = -94 dBm`` (20 MHz), so powers
are in mW. Spatially correlated Rayleigh fading ``R_mk = beta_mk R_loc(az_mk, el_mk)``
(``cfmimo_jax.correlation.local_scattering``, azimuth ASD ``asd_deg``, no elevation spread).
Pilots: ``tau_p = K`` orthogonal (``pilot_k = k``) at the UE power ``pilot_power_mw`` (the
paper gives none: the book's 100 mW), MMSE estimation statistics ``B_mk``
(``cfmimo_jax.estimation.estimation_statistics``), every AP serves every UE (canonical cell
free), MR precoding with per-antenna power weights, ``tau_c = 200``.

SE: [MOBILE-AP] Theorem 1 generalised to per-antenna weights,
``cfmimo_jax.se.downlink_se_mr_closed_form(R, B, pilot, D, rho, tau_p, tau_c, p=p_pilot,
antenna_weights=q)``, including the prelog ``1 - tau_p / tau_c``.

Agents: one per AP (``n_agents = M``). Action (``action_space``, a dict of Box spaces; the
off-policy trainers flatten it with ``spaces.flatten`` in the sorted key order ``antenna,
move, power``, ``2 + K + N`` entries per agent):

* ``"move"``: ``Box(-1, 1, (2,))``, the bounded-speed move ``uav_displacement(a, max_step_m)``
  (``|displacement| <= max_step_m``), then ``geometry.project_uav_positions`` onto (22b)
  (at least ``d_min_m`` from every UE, wrapped distances) and (22c) (the square
  ``[0, side_m]^2``): ``geometry.uav_step``. Violation ``v_move = (area_violation +
  distance_violation) / max_step_m`` (the projection's magnitudes, in moves).
* ``"power"``: ``Box(0, 1, (K,))``, budget fractions ``a_mk``:
  ``rho_mk = P_ap a_mk / max(1, sum_k a_mk)`` (so (22d) ``sum_k rho_mk <= P_ap``); violation
  ``v_power = max(sum_k a_mk - 1, 0)``.
  ``power_map = "scaled"`` (beyond the paper): ``rho_mk = P_ap max_j(a_mj) a_mk / sum_j
  a_mj``, the split ``a / sum(a)`` of the total ``max_j(a_mj) P_ap``: every action is feasible
  (no penalty), all ones is equal full power, scaling ``a`` scales the total, and the map is
  permutation equivariant; the saturated corner of the default map (every fraction 1: equal
  power, penalised by ``K - 1``) is then no trap.
* ``"antenna"``: ``Box(0, 1, (N,))``, per-antenna weights ``q_mn = max(a_mn, q_floor)``
  (``Q_m = diag(q_m)``, ``w_mk = sqrt(rho_mk) Q^(1/2) hhat_mk / sqrt(tr(Q B_mk))``; the weights
  are scale-free). The mean antenna powers ``P_mn = power.antenna_powers(B, rho, q)`` must
  meet (22e) ``P_mn <= P_an = P_ap / N``: every ``rho_m.`` is scaled by
  ``min(1, P_an / max_n P_mn)`` (which keeps (22d)); violation
  ``v_antenna = sum_n max(P_mn - P_an, 0) / P_ap`` (before the scaling). Even with ``q = 1``
  the diagonals of ``B_mk`` are not quite equal, so a full budget puts slightly more than
  ``P_an`` on some antennas: the static heuristics are scaled by about 1 % and carry a small
  penalty (mean 0.004-0.007 bit/s/Hz at the defaults, against a sum SE of about 13).

``control = "move"`` (the paper's "single PI architecture", Figs. 5(a) and 6): the action is
the move only (``{"move": Box(-1, 1, (2,))}``); every AP then transmits with fractional power
(book eq. (7.47), exponent 0.5, of the gains at its new position) and ``q = 1``
(``fill_actions``); the heuristics are ``static_fractional`` and the move-only
``gradient_oracle``.

Entity structure (read by the hyper permutation network of ``algorithms.hpn``):
``obs_layout["entity"]`` (``[K, 6]`` indices into the observation: UE ``k``'s ``g, ghat, dx,
dy, rho / P_ap, SE``), ``obs_layout["own"]`` (the AP's coordinates and antenna weights),
``obs_layout["position"]`` (its coordinates, period 1); ``action_layout`` says which action
leaves have one entry per UE (``power``: permutation equivariant) and which do not
(``move``, ``antenna``: invariant to the UE order).

Step (move, then transmit): the move is applied, the channel statistics recomputed at the new
positions, the powers mapped there, and the reward is the SE of that slot.
Reward of agent ``m``: ``sum_k SE_k - penalty_m`` with ``penalty_m = penalty_move v_move_m +
penalty_power v_power_m + penalty_antenna v_antenna_m`` (team sum SE, per-agent penalties of
its own violations; default weights 1 bit/s/Hz per unit of each violation). ``info``:
``sum_se``, ``min_se``, ``penalty`` (mean over agents), ``power_frac`` (``sum rho / (M
P_ap)``), ``move_m`` (mean move length, m), ``se[K]``.

Observation of AP ``m`` (``Box(-inf, inf, (6 K + N + 2,))``), flat, in this order:

* ``g_m.`` (K): normalised large-scale fading ``(10 log10 beta_mk - obs_offset_db) /
  obs_scale_db``;
* ``ghat_m.`` (K): the gain of its estimates, ``(10 log10 tr(B_mk) - obs_offset_db) /
  obs_scale_db`` (channel-gain features of the estimates);
* ``pos_m / side`` (2): its coordinates;
* ``rel_m.`` (2 K): wrapped displacements ``(x_k - x_m, y_k - y_m) / side`` to every UE,
  UE-major (``[dx_1, dy_1, dx_2, ...]``);
* ``rho_m. / P_ap`` (K): its previous powers; ``q_m.`` (N): its previous antenna weights;
* ``SE / obs_se_scale`` (K): the previous slot's SE of every UE.

``global_state`` (``global_state_space``, flat ``2 M + 2 K + M K + K``): AP and UE positions
over ``side``, ``g`` and the previous SEs over ``obs_se_scale``.

Episodes: every ``reset`` draws a new drop (UEs uniform in the square, APs uniform then
projected onto (22b)-(22c)), jittable; an episode is ``episode_steps = T = 20`` moves (with
``max_step_m = 25`` m a UAV can cross half the square in an episode), then truncated. At reset
the "previous" powers are equal (``rho = P_ap / K``, ``q = 1``).

Heuristics (``heuristics()``, through the same ``step``, reading the state):

* ``static_fractional``: no move, ``power.fractional_downlink`` (book eq. (7.47), exponent 0.5,
  the paper's "Fractional") with ``q = 1``;
* ``static_equal``: no move, equal power ``P_ap / K``, ``q = 1``;
* ``gradient_oracle`` (beyond the paper): every step, Adam (``power.optimize_powers``,
  ``opt_steps`` steps, learning rate ``opt_lr``) on the move, the power fractions and the
  antenna weights of all APs jointly, maximising the slot's sum SE minus the power penalties
  through the differentiable chain positions -> path loss, LoS probability, local scattering
  -> MMSE statistics -> closed-form SE (the projection is not differentiable: the objective
  uses the unprojected move, and the result goes through the real step), started from the
  static-fractional and the static-equal actions; the candidates (both optima and both
  starts) are then scored by the exact reward of the step and the best kept, so in every
  slot it is never worse than staying put with either static power. A greedy (one-slot)
  oracle of what mobility and power control reach.

Choices (the paper leaves them out): ``ap_height_m = 30``, ``ue_height_m = 1.5``,
``max_step_m = 25`` (e.g. 25 m/s over 1 s slots), ``d_min_m = 10``, ``asd_deg = 10``,
``pilot_power_mw = 100``, ``q_floor = 0.05``, ``T = 20``, penalty weights 1; defaults
``M = 9``, ``N = 8``, ``K = 6`` (the paper's Figs. 6-8).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from .. import _validate as V
from .._validate import is_number as _is_number
from .._validate import positive_number as _positive
from ..correlation import local_scattering
from ..estimation import estimation_statistics
from ..geometry import (
    project_uav_positions,
    uav_displacement,
    uav_step,
    uav_ue_geometry,
    wraparound_displacement,
)
from ..pathloss import cost231_wi_pathloss_db, los_probability_air_to_ground
from ..power import antenna_powers, fractional_downlink, optimize_powers
from ..se import downlink_se_mr_closed_form
from . import merge_config, spaces
from .base import MultiAgentEnv, state_policy


@functools.partial(jax.tree_util.register_dataclass)
@dataclasses.dataclass(frozen=True)
class MobileAPParams:
    """Numeric parameters (scalars): observation scaling and penalty weights."""

    obs_offset_db: float = -20.0
    obs_scale_db: float = 20.0
    obs_se_scale: float = 2.0
    penalty_move: float = 1.0
    penalty_power: float = 1.0
    penalty_antenna: float = 1.0


@functools.partial(jax.tree_util.register_dataclass)
@dataclasses.dataclass(frozen=True)
class MobileAPState:
    """ap_pos[M, 2], ue_pos[K, 2] (m); gain_db[M, K] (gain over noise); R, B[M, K, N, N] at
    ``ap_pos``; rho[M, K] (mW) and q[M, N] of the previous slot; se[K] previous SEs; t."""

    ap_pos: jax.Array
    ue_pos: jax.Array
    gain_db: jax.Array
    R: jax.Array
    B: jax.Array
    rho: jax.Array
    q: jax.Array
    se: jax.Array
    t: jax.Array


class MobileAP(MultiAgentEnv):
    """UAV mobile-AP downlink (module docstring); static sizes and physics in the constructor."""

    eval_metrics = ("sum_se", "min_se", "penalty", "power_frac", "move_m")
    progress_metrics = ("sum_se", "penalty")
    sample_metrics = ("sum_se",)  # kept per evaluation drop and slot (CDFs)

    def __init__(
        self,
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
        opt_steps: int = 30,
        opt_lr: float = 0.05,
        control: str = "joint",
        power_map: str = "project",
    ):
        self.M = V.positive_int("n_aps", n_aps)
        self.N = V.positive_int("n_antennas", n_antennas)
        self.K = V.positive_int("n_ues", n_ues)
        self.tau_p = self.K
        self.tau_c = V.positive_int("tau_c", tau_c)
        if self.tau_p >= self.tau_c:
            raise ValueError(f"tau_c={tau_c} must exceed tau_p = n_ues = {self.K}")
        self.side = _positive("side_m", side_m)
        self.ap_h = _positive("ap_height_m", ap_height_m)
        self.ue_h = _positive("ue_height_m", ue_height_m)
        if not 1.0 <= self.ue_h <= 3.0:
            raise ValueError(f"ue_height_m must be in [1, 3] m (COST 231), got {ue_height_m!r}")
        if not 12.0 < self.ap_h <= 50.0:
            raise ValueError(
                f"ap_height_m must be in (12, 50] m (above the roofs), got {ap_height_m!r}"
            )
        self.carrier = _positive("carrier_ghz", carrier_ghz)
        if not 0.8 <= self.carrier <= 2.0:
            raise ValueError(f"carrier_ghz must be in [0.8, 2] (COST 231), got {carrier_ghz!r}")
        if not _is_number(noise_dbm) or not math.isfinite(noise_dbm):
            raise ValueError(f"noise_dbm must be a finite number, got {noise_dbm!r}")
        self.noise_dbm = float(noise_dbm)
        self.p_ap = _positive("p_ap_max_mw", p_ap_max_mw)
        self.p_an = self.p_ap / self.N
        self.p_pilot = _positive("pilot_power_mw", pilot_power_mw)
        if not (_is_number(asd_deg) and 0 <= asd_deg <= 90):
            raise ValueError(f"asd_deg must be an angle in degrees in [0, 90], got {asd_deg!r}")
        self.asd = float(asd_deg)
        self.max_step = _positive("max_step_m", max_step_m)
        if not (_is_number(d_min_m) and math.isfinite(d_min_m) and d_min_m >= 0):
            raise ValueError(f"d_min_m must be a non-negative number, got {d_min_m!r}")
        self.d_min = float(d_min_m)
        if 2 * self.K * self.d_min >= self.side / 2:
            raise ValueError(
                f"d_min_m={d_min_m} too large: need 2 n_ues d_min_m < side_m / 2 (projection)"
            )
        if not (_is_number(q_floor) and 0 < q_floor <= 1):
            raise ValueError(f"q_floor must be in (0, 1], got {q_floor!r}")
        self.q_floor = float(q_floor)
        self.episode_steps = V.positive_int("episode_steps", episode_steps)
        self.opt_steps = V.positive_int("opt_steps", opt_steps)
        self.opt_lr = _positive("opt_lr", opt_lr)
        if control not in ("joint", "move"):
            raise ValueError(f"control must be 'joint' or 'move', got {control!r}")
        self.control = control
        if power_map not in ("project", "scaled"):
            raise ValueError(f"power_map must be 'project' or 'scaled', got {power_map!r}")
        self.power_map = power_map
        M, N, K = self.M, self.N, self.K
        self.n_agents = M
        self.obs_dim = 6 * K + N + 2
        self.observation_space = spaces.Box(-np.inf, np.inf, (self.obs_dim,))
        self.action_space = {
            "move": spaces.Box(-1.0, 1.0, (2,)),
            "power": spaces.Box(0.0, 1.0, (K,)),
            "antenna": spaces.Box(0.0, 1.0, (N,)),
        }
        if control == "move":  # the paper's "single PI architecture": mobility only
            self.action_space = {"move": self.action_space["move"]}
        # entity structure of the flat observation (the hyper permutation network's input,
        # algorithms/hpn.py): row k of "entity" = the indices of UE k's features
        # (g, ghat, dx, dy, rho / P_ap, SE / scale); "own" = the AP's coordinates and antenna
        # weights; "position" = its coordinates (over side, period 1 under wrap-around)
        ks = np.arange(K)
        self.obs_layout = {
            "entity": np.stack(
                [
                    ks,
                    K + ks,
                    2 * K + 2 + 2 * ks,
                    2 * K + 3 + 2 * ks,
                    4 * K + 2 + ks,
                    5 * K + 2 + N + ks,
                ],
                axis=1,
            ).astype(np.int32),
            "own": np.concatenate([[2 * K, 2 * K + 1], 5 * K + 2 + np.arange(N)]).astype(np.int32),
            "position": np.array([2 * K, 2 * K + 1], np.int32),
            "position_period": 1.0,
        }
        # how each action leaf transforms under a permutation of the UEs: "entity" leaves have
        # one entry per UE (permutation equivariant), "invariant" leaves do not change
        self.action_layout = {"move": "invariant", "power": "entity", "antenna": "invariant"}
        if control == "move":
            self.action_layout = {"move": "invariant"}
        self.global_state_space = spaces.Box(-np.inf, np.inf, (2 * M + 2 * K + M * K + K,))
        self.pilot = np.arange(K, dtype=np.int32)
        self.D = np.ones((M, K), bool)

    def default_params(self, **overrides) -> MobileAPParams:
        return MobileAPParams(**overrides)

    # ---- physics ------------------------------------------------------------------------

    def channel(self, ap_pos, ue_pos):
        """``(gain_db[M, K], R[M, K, N, N], B[M, K, N, N])`` at the given positions
        (differentiable in ``ap_pos``)."""
        d2d, _, az, el = uav_ue_geometry(ap_pos, ue_pos, self.side, self.ap_h, self.ue_h)
        los = los_probability_air_to_ground(el)
        pl = cost231_wi_pathloss_db(
            d2d, los, self.carrier, ap_height_m=self.ap_h, ue_height_m=self.ue_h
        )
        gain_db = -pl - self.noise_dbm
        beta = 10.0 ** (gain_db / 10.0)
        asd = math.radians(self.asd)
        Rn = local_scattering(self.N, az, el, asd, None)
        R = beta[..., None, None].astype(Rn.dtype) * Rn
        B, _ = estimation_statistics(R, self.pilot, self.p_pilot, self.tau_p)
        return gain_db, R, B

    def fill_actions(self, gain_db, actions):
        """``control = "move"``: the fixed powers of a mobility-only action, fractional power
        (book eq. (7.47), exponent 0.5) of the gains ``gain_db[M, K]`` at the new positions and
        ``q = 1``; a full action is returned unchanged."""
        if "power" in actions:
            return actions
        fixed = self._static(fractional_downlink(10.0 ** (gain_db / 10.0), self.D, 1.0))
        return {**fixed, "move": actions["move"]}

    def map_actions(self, B, actions):
        """Actions of all agents -> ``(rho[M, K] mW, q[M, N], v_power[M], v_antenna[M])``
        (module docstring: (22d), (22e) hold for ``rho, q``)."""
        a = jnp.clip(actions["power"], 0.0, 1.0)
        s = jnp.sum(a, axis=-1)
        if self.power_map == "scaled":  # the split a / sum(a) of the total max_k(a) P_ap
            top = jnp.max(a, axis=-1)
            rho = self.p_ap * a * (top / jnp.where(s > 0, s, 1.0))[:, None]
            v_power = jnp.zeros_like(s)
        else:
            rho = self.p_ap * a / jnp.maximum(1.0, s)[:, None]
            v_power = jnp.maximum(s - 1.0, 0.0)
        q = jnp.maximum(jnp.clip(actions["antenna"], 0.0, 1.0), self.q_floor).astype(rho.dtype)
        pw = antenna_powers(B, rho, q)  # [M, N]
        v_antenna = jnp.sum(jnp.maximum(pw - self.p_an, 0.0), axis=-1) / self.p_ap
        peak = jnp.max(pw, axis=-1)
        scale = jnp.where(peak > self.p_an, self.p_an / jnp.where(peak > 0, peak, 1.0), 1.0)
        return rho * scale[:, None], q, v_power, v_antenna

    def se(self, R, B, rho, q):
        """Per-UE SE ``[K]`` (bit/s/Hz) of powers ``rho[M, K]`` and weights ``q[M, N]``."""
        return downlink_se_mr_closed_form(
            R,
            B,
            self.pilot,
            self.D,
            rho,
            self.tau_p,
            self.tau_c,
            p=self.p_pilot,
            antenna_weights=q,
        )

    def _obs(self, state, params):
        dt = state.ap_pos.dtype
        g = (state.gain_db - params.obs_offset_db) / params.obs_scale_db
        fb = jnp.real(jnp.trace(state.B, axis1=-2, axis2=-1))
        ghat = (10.0 * jnp.log10(jnp.maximum(fb, 1e-30)) - params.obs_offset_db) / (
            params.obs_scale_db
        )
        rel = wraparound_displacement(state.ap_pos, state.ue_pos, self.side) / self.side
        se = jnp.broadcast_to(state.se / params.obs_se_scale, (self.M, self.K))
        rows = [
            g,
            ghat.astype(dt),
            state.ap_pos / self.side,
            rel.reshape(self.M, 2 * self.K),
            state.rho / self.p_ap,
            state.q,
            se,
        ]
        return jnp.concatenate([r.astype(dt) for r in rows], axis=1)

    def reset_env(self, key, params):
        k_ue, k_ap = jax.random.split(key)
        ue = jax.random.uniform(k_ue, (self.K, 2), maxval=self.side)
        ap0 = jax.random.uniform(k_ap, (self.M, 2), maxval=self.side)
        ap = project_uav_positions(ap0, ue, self.d_min, self.side).pos
        gain_db, R, B = self.channel(ap, ue)
        dt = ap.dtype
        rho = jnp.full((self.M, self.K), self.p_ap / self.K, dt)
        q = jnp.ones((self.M, self.N), dt)
        se = self.se(R, B, rho, q)
        state = MobileAPState(ap, ue, gain_db, R, B, rho, q, se, jnp.int32(0))
        return self._obs(state, params), state

    def transition(self, state, actions, params):
        """The slot of ``actions`` from ``state``: ``(new state, reward[M], info)``."""
        dt = state.ap_pos.dtype
        actions = jax.tree.map(lambda a: jnp.asarray(a).astype(dt), actions)
        proj = uav_step(
            state.ap_pos, actions["move"], state.ue_pos, self.max_step, self.d_min, self.side
        )
        gain_db, R, B = self.channel(proj.pos, state.ue_pos)
        actions = self.fill_actions(gain_db, actions)
        rho, q, v_power, v_antenna = self.map_actions(B, actions)
        se = self.se(R, B, rho, q)
        v_move = (proj.area_violation + proj.distance_violation) / self.max_step
        pen = (
            params.penalty_move * v_move
            + params.penalty_power * v_power
            + params.penalty_antenna * v_antenna
        )
        sum_se = jnp.sum(se)
        move = jnp.sqrt(jnp.sum((proj.pos - state.ap_pos) ** 2, axis=-1))
        new = MobileAPState(proj.pos, state.ue_pos, gain_db, R, B, rho, q, se, state.t + 1)
        info = {
            "sum_se": sum_se,
            "min_se": jnp.min(se),
            "penalty": jnp.mean(pen),
            "power_frac": jnp.sum(rho) / (self.M * self.p_ap),
            "move_m": jnp.mean(move),
            "se": se,
        }
        return new, sum_se - pen, info

    def step_env(self, key, state, actions, params):
        state, reward, info = self.transition(state, actions, params)
        truncated = state.t >= self.episode_steps
        return self._obs(state, params), state, reward, jnp.bool_(False), truncated, info

    def global_state(self, state):
        """``[ap_pos / side (2M), ue_pos / side (2K), g (M K), SE / 2 (K)]`` (``g`` with the
        default observation scaling)."""
        g = (state.gain_db + 20.0) / 20.0
        parts = [
            state.ap_pos.reshape(-1) / self.side,
            state.ue_pos.reshape(-1) / self.side,
            g.reshape(-1),
            state.se / 2.0,
        ]
        return jnp.concatenate(parts)

    # ---- heuristics -----------------------------------------------------------------------

    def _static(self, power):
        """The action of budget fractions ``power[M, K]`` (``sum_k <= 1``), no move, ``q = 1``
        (``power_map="scaled"``: ``power / max_k power``, which maps back to ``power``)."""
        dt = power.dtype
        if self.power_map == "scaled":
            top = jnp.max(power, axis=-1, keepdims=True)
            power = power / jnp.where(top > 0, top, 1.0)
        return {
            "move": jnp.zeros((self.M, 2), dt),
            "power": power,
            "antenna": jnp.ones((self.M, self.N), dt),
        }

    def _own(self, actions):
        """The keys of the action space only (``control = "move"``: the move)."""
        return {k: actions[k] for k in self.action_space}

    def _equal_actions(self, state):
        dt = state.ap_pos.dtype
        return self._static(jnp.full((self.M, self.K), 1.0 / self.K, dt))

    def _fractional_actions(self, state):
        gain = 10.0 ** (state.gain_db / 10.0)
        return self._static(fractional_downlink(gain, self.D, 1.0))

    def _oracle_actions(self, state):
        params = self.default_params()

        def objective(x):  # differentiable slot reward (no projection of the move)
            pos = state.ap_pos + uav_displacement(x["move"], self.max_step)
            gain_db, R, B = self.channel(pos, state.ue_pos)
            rho, q, v_power, v_antenna = self.map_actions(B, self.fill_actions(gain_db, x))
            return jnp.sum(self.se(R, B, rho, q)) - jnp.sum(v_power + v_antenna)

        low = {"move": -1.0, "power": 0.0, "antenna": self.q_floor}
        high = {"move": 1.0, "power": 1.0, "antenna": 1.0}
        inits = jax.tree.map(
            lambda a, b: jnp.stack([a, b]),
            self._fractional_actions(state),
            self._equal_actions(state),
        )
        if self.control == "move":
            inits, low, high = ({"move": d["move"]} for d in (inits, low, high))

        def run(x0):
            x, _, _ = optimize_powers(
                objective, x0, (low, high), steps=self.opt_steps, lr=self.opt_lr
            )
            return x

        # lax.map, not vmap, over the two starts: XLA:CPU (jaxlib 0.10.2) segfaults at run time
        # on a vmap of this gradient inside the vmap over environments when N = 2
        opt = jax.lax.map(run, inits)
        cands = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), opt, inits)  # [4, ...]
        values = jax.vmap(lambda a: jnp.mean(self.transition(state, a, params)[1]))(cands)
        best = jnp.argmax(jnp.where(jnp.isfinite(values), values, -jnp.inf))
        return jax.tree.map(lambda a: a[best], cands)

    def heuristics(self) -> dict:
        """``static_fractional``, ``static_equal``, ``gradient_oracle`` (module docstring);
        ``policy(obs[..., M, obs_dim], state) -> actions`` (a dict, leaves ``[..., M, ...]``)."""
        out = {
            "static_fractional": state_policy(lambda s: self._own(self._fractional_actions(s))),
            "static_equal": state_policy(self._equal_actions),
            "gradient_oracle": state_policy(lambda s: self._own(self._oracle_actions(s))),
        }
        if self.control == "move":  # equal power is not a mobility-only action
            del out["static_equal"]
        return out

    @property
    def default_heuristics(self) -> tuple:
        return tuple(self.heuristics())


# Documented default configuration (``cfmimo_jax.envs.make("mobile_ap", config)``); every choice
# is explained in the module docstring.
DEFAULT_CONFIG = {
    "n_aps": 9,  # UAV APs M = agents
    "n_antennas": 8,  # antennas per AP N (half-wavelength ULA)
    "n_ues": 6,  # UEs K; tau_p = K orthogonal pilots
    "tau_c": 200,  # coherence block (samples)
    "side_m": 1000.0,  # side of the square (wrap-around distances)
    "ap_height_m": 30.0,  # UAV altitude (fixed; above the 12 m roofs of COST 231)
    "ue_height_m": 1.5,  # UE height
    "carrier_ghz": 1.9,  # carrier (COST 231 validity 0.8-2 GHz)
    "noise_dbm": -94.0,  # noise power sigma^2 (20 MHz)
    "p_ap_max_mw": 1000.0,  # P_ap,max per AP (1 W); per antenna P_ap,max / N
    "pilot_power_mw": 100.0,  # UE pilot power (the book's; the paper gives none)
    "asd_deg": 10.0,  # azimuth angular spread of the local scattering model (deg)
    "max_step_m": 25.0,  # the longest move per slot (speed cap x slot length)
    "d_min_m": 10.0,  # minimum horizontal AP-UE distance (22b)
    "q_floor": 0.05,  # smallest antenna weight (the action's [0, 1] clipped from below)
    "episode_steps": 20,  # T moves per episode (one drop), then truncated
    "opt_steps": 30,  # Adam steps of the gradient oracle per slot
    "opt_lr": 0.05,  # its learning rate
    "power_map": "project",  # project: rho = P a / max(1, sum a), the excess penalised |
    # scaled: rho = P max_k(a) a / sum_k(a), always feasible, no penalty (module docstring)
    "control": "joint",  # joint: move + power + antenna actions | move: mobility only
    # (fractional power of the new gains, q = 1: the paper's "single PI architecture",
    # Figs. 5(a), 6)
    "obs_offset_db": -20.0,  # observed gains (gain_db - offset) / scale
    "obs_scale_db": 20.0,
    "obs_se_scale": 2.0,  # observed SE / scale
    "penalty_move": 1.0,  # reward penalty per max_step_m of projected-away move
    "penalty_power": 1.0,  # per unit of budget-fraction excess sum_k a_mk - 1
    "penalty_antenna": 1.0,  # per P_ap,max of per-antenna power excess
}
_PARAMS = (
    "obs_offset_db",
    "obs_scale_db",
    "obs_se_scale",
    "penalty_move",
    "penalty_power",
    "penalty_antenna",
)


def make(config: dict | None = None):
    """``(env, params)`` from a config dict over ``DEFAULT_CONFIG`` (an unknown key or a bad
    value raises ``ValueError`` naming it)."""
    config = merge_config("mobile_ap", DEFAULT_CONFIG, config)
    values = {k: config.pop(k) for k in _PARAMS}
    for k, v in values.items():
        if not _is_number(v) or not math.isfinite(v):
            raise ValueError(f"{k} must be a finite number, got {v!r}")
    for k in ("obs_scale_db", "obs_se_scale"):
        _positive(k, values[k])
    for k in ("penalty_move", "penalty_power", "penalty_antenna"):
        if values[k] < 0:
            raise ValueError(f"{k} must be >= 0, got {values[k]!r}")
    env = MobileAP(**config)
    return env, env.default_params(**{k: float(v) for k, v in values.items()})

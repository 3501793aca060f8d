"""Uplink power control in cell-free XL-MIMO ([XL-FUZZY]), multi-agent: one agent per UE.

System ([XL-FUZZY] sections II-III, the kernels of ``cfmimo_jax.nearfield`` and
``cfmimo_jax.se.uplink_se_log_det``; docs/kernels.md, "Cell-free XL-MIMO"): ``M`` BSs, each a
planar array of ``N_r = N_Vr x N_Hr`` patches, and ``K`` UEs with ``N_s = N_Vs x N_Hs``
patches, patch spacing ``Delta`` (in wavelengths). The small-scale fading is the Fourier
plane-wave series of eq. (3) (isotropic scattering; ``nearfield.channel_model``), the large
scale ``beta_mk [dB] = -30.5 - 36.7 log10(d_mk / 1 m) + F_mk`` with a 10 m height difference,
``F ~ N(0, 4^2)`` dB, UEs (and BSs) uniform in a 1 x 1 km square with wrap-around
(``nearfield.drop_large_scale``), over the noise of 20 MHz with a 7 dB noise figure, so
``G_mk = sqrt(beta_mk) H_mk`` is normalised by the noise and powers are in mW.

The channel model (wavenumber lattices, spectral variances, array responses) depends only on
the array geometry: it is built once, when the environment is made (``env.model``, an
``XLChannelModel`` closed over by the jitted programs as constants).

Agents, actions and the power constraint: agent ``k`` is UE ``k`` (``n_agents = K``). Every
antenna of a UE transmits the same power ``p_k = p_{k,N_s}`` ([XL-FUZZY] section III), the
constraint of problem (9) is ``N_s p_k <= P_max``, so the per-antenna maximum is
``p_ant_max = P_max / N_s``. The action of UE ``k`` is one number, ``Box(-r, 0, (1,))`` with
``r = power_db_range``: the per-antenna power in dB below that maximum,
``p_k = p_ant_max 10^(a_k / 10)`` (``a_k`` clipped to ``[-r, 0]``), so every action in the box
satisfies the constraint and the smallest power is ``-r`` dB (the "lower limit" of the power
that [XL-FUZZY] section V-A credits for the fuzzy methods' robustness). With
``power_db_range: null`` the action is the per-antenna power itself, ``Box(0, p_ant_max, (1,))``
in mW.

Observation of UE ``k`` (``Box(-inf, inf, (M,))``): its large-scale fading coefficients
``(beta_db[:, k] - obs_offset_db) / obs_scale_db`` over the ``M`` BSs (over noise, per mW; the
defaults -30 dB and 10 dB give mean 0 and standard deviation 0.9 over drops). That is the
paper's state ("the observed state ... depending on the LSF coefficients", section IV-A, and
problem (9) is solved "according to the observed LSF coefficients"). Nothing else: the
problem is a static allocation per drop (the powers do not change the next drop), so neither
the previous powers nor SEs carry information. ``global_state(state)`` (for centralised
critics, ``global_state_space``): every normalised coefficient, ``[M K]`` flat.

Reward: the SE of eq. (8) by ``uplink_se_log_det`` (``combiner`` ``"l_mmse"``, the default, or
``"mr"``; the CPU averages the ``M`` local estimates, eq. (7); ``estimator`` as there) on
``n_realizations`` channel realizations drawn at every step,
``G = nearfield.sample_channels(key, env.model, beta, n_realizations)`` with the step's key
(``env.channels``). ``reward="sum"`` (default): every agent receives ``sum_k SE_k``;
``reward="own"``: agent ``k`` receives ``SE_k``. Monte-Carlo noise: the expectations of eq. (8)
are sample means over those realizations, so the reward is a noisy and (through the log-det of
sample means) upward-biased estimate of the SE of the powers, a fresh draw at every step.
Measured at maximum power on default drops against 512 realizations: L-MMSE, standard
deviation 0.1 % and bias +0.3 % of the sum SE; MR, standard deviation 0.8-1.7 % and bias
+5-9 % (MR's interference terms converge slowly). Raise ``n_realizations`` for a quieter
reward at a linear cost.

Episodes: every ``reset`` drops new UEs (and BSs, ``bs_layout="random"``) with new shadowing;
an episode is ``episode_steps`` steps on that drop (default 1: one power decision per drop, the
episodes of [XL-FUZZY] Algorithm 1), then truncated (never terminated). The observation does
not change within an episode; the reward does (new small-scale realizations).

``info``: ``sum_se``, ``min_se`` (bit/s/Hz), ``power_frac`` (``mean_k N_s p_k / P_max``),
``power_mw`` (total transmit power ``sum_k N_s p_k``, the power consumption of [XL-FUZZY]
Fig. 4) and ``se[K]``.

Heuristics (through the same ``step``): ``max_power`` (``p_k = p_ant_max``, action 0 dB) and
``optimised``, an oracle reading the true state: projected-gradient ascent of the sum SE
(``cfmimo_jax.power.optimize_powers``, Adam in the log domain of ``x = p / p_ant_max`` over
``[x_min, 1]``, ``x_min = 10^(-r / 10)`` or ``1e-4`` for linear actions) through the
differentiable log-det SE, on a fixed set of ``opt_realizations`` realizations drawn from a key
that ``reset`` stores in the state (``state.opt_key``), with ``opt_steps`` steps of learning
rate ``opt_lr``, started from maximum power and from ``opt_restarts`` random powers (uniform in
dB over the action range), keeping the best (the starts run one after the other and
``opt_batch`` drops at a time: the reverse pass through the L-MMSE factorisations needs about
0.6 GB per drop and start at the defaults). It replaces the convex solver of the paper. Since
maximum power is one of the starts and the best iterate is kept, the oracle is never below
maximum power on its own realizations; the step evaluates it on fresh ones.

Choices where [XL-FUZZY] is silent (the book's values): ``P_max = 100 mW`` per UE (the
book's UE power, 20 dBm), so ``100 / 9 = 11.1 mW`` per antenna for 3 x 3 UEs; carrier 2 GHz
(``CARRIER_HZ``): the path-loss model ``-30.5 - 36.7 log10(d)`` is the book's 3GPP Urban
Microcell model at 2 GHz, and every length of the channel model is in wavelengths, so the
carrier enters nowhere else; at 2 GHz (``lambda = 15 cm``) the 9 x 9 BS array at
``lambda / 3`` is 45 cm square and a 3 x 3 UE array 15 cm; 20 MHz, noise figure 7 dB;
shadowing correlated over UEs with a 9 m decorrelation distance (the book; ``null`` for
i.i.d.); BSs uniform (``bs_layout="grid"`` puts ``M = n^2`` of them on a grid); the
``"cover"`` lattice with pruning at ``1e-6`` (``nearfield.wavenumber_lattice``).
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
from ..nearfield import (
    BS_LAYOUTS,
    LATTICES,
    array_shape,
    channel_model,
    drop_large_scale,
    sample_channels,
)
from ..power import optimize_powers
from ..se import LOG_DET_COMBINERS, LOG_DET_ESTIMATORS, uplink_se_log_det
from . import merge_config, spaces
from .base import MultiAgentEnv, state_policy

#: The carrier the defaults assume (Hz): the path-loss model is the book's 2 GHz model; the
#: channel model is in wavelengths, so nothing else depends on it.
CARRIER_HZ = 2e9
#: The oracle's smallest power (a fraction of ``p_ant_max``) for linear actions (-40 dB).
LINEAR_FLOOR = 1e-4
REWARDS = ("sum", "own")


@functools.partial(jax.tree_util.register_dataclass)
@dataclasses.dataclass(frozen=True)
class XLUplinkParams:
    """Observation scaling (scalars; a pytree, so sweeps ``vmap`` over it): the coefficients
    enter the observations as ``(beta_db - obs_offset_db) / obs_scale_db``."""

    obs_offset_db: float = -30.0
    obs_scale_db: float = 10.0


@functools.partial(jax.tree_util.register_dataclass)
@dataclasses.dataclass(frozen=True)
class XLUplinkState:
    """One drop: ``beta[M, K]`` (linear, over noise, per mW), ``beta_db[M, K]``, ``obs[K, M]``
    (the normalised coefficients as observed), ``opt_key`` (raw ``uint32[2]``: the oracle's
    realizations), ``t`` (int32 steps done on this drop)."""

    beta: jax.Array
    beta_db: jax.Array
    obs: jax.Array
    opt_key: jax.Array
    t: jax.Array


def _raw(key):
    """Raw ``uint32`` key data of a typed or raw PRNG key."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(key)
    return key


class XLUplink(MultiAgentEnv):
    """The XL-MIMO uplink power-control scenario (module docstring). Static sizes in the
    constructor; ``n_agents = K``, action ``Box(-power_db_range, 0, (1,))`` per UE."""

    eval_metrics = ("sum_se", "min_se", "power_frac", "power_mw")
    progress_metrics = ("sum_se", "power_frac")
    # the sum SE of eq. (8) per drop and step, kept unaveraged by the evaluation (the CDF
    # of the total SE, [XL-FUZZY] Fig. 3)
    sample_metrics = ("sum_se",)

    def __init__(
        self,
        n_bs: int = 9,
        bs_array=(9, 9),
        n_ues: int = 6,
        ue_array=(3, 3),
        spacing: float = 1.0 / 3.0,
        ue_spacing: float | None = None,
        lattice: str = "cover",
        prune_tol: float = 1e-6,
        bs_layout: str = "random",
        side_m: float = 1000.0,
        height_m: float = 10.0,
        shadow_std_db: float = 4.0,
        shadow_decorrelation_m: float | None = 9.0,
        p_max_mw: float = 100.0,
        power_db_range: float | None = 30.0,
        combiner: str = "l_mmse",
        estimator: str = "independent",
        n_realizations: int = 8,
        reward: str = "sum",
        episode_steps: int = 1,
        opt_steps: int = 100,
        opt_lr: float = 0.1,
        opt_realizations: int = 16,
        opt_restarts: int = 2,
        opt_batch: int = 2,
    ):
        self.M = V.positive_int("n_bs", n_bs)
        self.K = V.positive_int("n_ues", n_ues)
        bs_shape = array_shape("bs_array", _pair_or_int(bs_array))
        ue_shape = array_shape("ue_array", _pair_or_int(ue_array))
        if lattice not in LATTICES:
            raise ValueError(f"lattice must be one of {LATTICES}, got {lattice!r}")
        if not (_is_number(prune_tol) and 0.0 <= prune_tol < 1.0):
            raise ValueError(f"prune_tol must be a number in [0, 1), got {prune_tol!r}")
        if bs_layout not in BS_LAYOUTS:
            raise ValueError(f"bs_layout must be one of {BS_LAYOUTS}, got {bs_layout!r}")
        if bs_layout == "grid" and math.isqrt(self.M) ** 2 != self.M:
            raise ValueError(f"n_bs={self.M} must be a square number for bs_layout='grid'")
        self.bs_layout = bs_layout
        self.side_m = _positive("side_m", side_m)
        self.height_m = _positive("height_m", height_m)
        if not (_is_number(shadow_std_db) and math.isfinite(shadow_std_db) and shadow_std_db >= 0):
            raise ValueError(f"shadow_std_db must be a non-negative number, got {shadow_std_db!r}")
        self.shadow_std_db = float(shadow_std_db)
        if shadow_decorrelation_m is not None:
            shadow_decorrelation_m = _positive("shadow_decorrelation_m", shadow_decorrelation_m)
        self.shadow_decorrelation_m = shadow_decorrelation_m
        self.p_max = _positive("p_max_mw", p_max_mw)
        if power_db_range is not None:
            power_db_range = _positive("power_db_range", power_db_range)
        self.db_range = power_db_range
        if combiner not in LOG_DET_COMBINERS:
            raise ValueError(f"combiner must be one of {LOG_DET_COMBINERS}, got {combiner!r}")
        if estimator not in LOG_DET_ESTIMATORS:
            raise ValueError(f"estimator must be one of {LOG_DET_ESTIMATORS}, got {estimator!r}")
        self.combiner, self.estimator = combiner, estimator
        self.n_realizations = V.positive_int("n_realizations", n_realizations)
        if reward not in REWARDS:
            raise ValueError(f"reward must be one of {REWARDS}, got {reward!r}")
        self.reward = reward
        self.episode_steps = V.positive_int("episode_steps", episode_steps)
        self.opt_steps = V.positive_int("opt_steps", opt_steps)
        self.opt_lr = _positive("opt_lr", opt_lr)
        self.opt_realizations = V.positive_int("opt_realizations", opt_realizations)
        self.opt_restarts = V.positive_int("opt_restarts", opt_restarts, minimum=0)
        self.opt_batch = V.positive_int("opt_batch", opt_batch)
        # the channel model, once (NumPy float64 at construction; spacing checks name the key)
        self.model = channel_model(
            bs_shape,
            ue_shape,
            _spacing("spacing", spacing),
            None if ue_spacing is None else _spacing("ue_spacing", ue_spacing),
            lattice=lattice,
            prune_tol=float(prune_tol),
        )
        self.N_r, self.N_s = self.model.n_r, self.model.n_s
        self.p_ant_max = self.p_max / self.N_s  # N_s p_k <= P_max
        self.n_agents = self.K
        if self.db_range is not None:
            self.action_space = spaces.Box(-self.db_range, 0.0, (1,))
            self.floor = 10.0 ** (-self.db_range / 10.0)
        else:
            self.action_space = spaces.Box(0.0, self.p_ant_max, (1,))
            self.floor = LINEAR_FLOOR
        self.observation_space = spaces.Box(-np.inf, np.inf, (self.M,))
        self.global_state_space = spaces.Box(-np.inf, np.inf, (self.M * self.K,))

    def default_params(self, **overrides) -> XLUplinkParams:
        return XLUplinkParams(**overrides)

    # ---- physics ----------------------------------------------------------------------

    def drop(self, key):
        """The large-scale fading of a new drop (``nearfield.LargeScaleDrop``)."""
        return drop_large_scale(
            key,
            self.M,
            self.K,
            bs_layout=self.bs_layout,
            side=self.side_m,
            height=self.height_m,
            shadow_std_db=self.shadow_std_db,
            decorrelation_m=self.shadow_decorrelation_m,
        )

    def powers(self, actions):
        """Actions ``[K, 1]`` -> per-antenna powers ``p[K]`` in mW (module docstring; clipped to
        the action space, so ``N_s p_k <= P_max`` always)."""
        a = actions[..., 0]
        if self.db_range is None:
            return jnp.clip(a, 0.0, self.p_ant_max)
        return self.p_ant_max * 10.0 ** (jnp.clip(a, -self.db_range, 0.0) / 10.0)

    def to_actions(self, x):
        """Per-antenna powers as fractions ``x = p / p_ant_max`` ``[..., K]`` -> actions
        ``[..., K, 1]`` (dB below the maximum, or mW)."""
        if self.db_range is None:
            return (self.p_ant_max * x)[..., None]
        return (10.0 * jnp.log10(jnp.maximum(x, self.floor)))[..., None]

    def channels(self, key, state: XLUplinkState, n: int | None = None):
        """``n`` (default ``n_realizations``) realizations ``G[n, M, K, N_r, N_s]`` of the drop:
        ``nearfield.sample_channels(key, env.model, state.beta, n)``."""
        return sample_channels(key, self.model, state.beta, self.n_realizations if n is None else n)

    def se(self, G, p):
        """SE ``[K]`` (bit/s/Hz) of eq. (8) with per-antenna powers ``p[K]`` on the
        realizations ``G`` (``uplink_se_log_det`` with the configured combiner and estimator);
        differentiable in ``p``."""
        return uplink_se_log_det(G, p, self.combiner, estimator=self.estimator)

    # ---- interface --------------------------------------------------------------------

    def reset_env(self, key, params):
        k_drop, k_opt = jax.random.split(key)
        d = self.drop(k_drop)
        obs = ((d.beta_db - params.obs_offset_db) / params.obs_scale_db).T
        state = XLUplinkState(
            beta=d.beta, beta_db=d.beta_db, obs=obs, opt_key=_raw(k_opt), t=jnp.int32(0)
        )
        return obs, state

    def step_env(self, key, state, actions, params):
        p = self.powers(actions).astype(state.beta.dtype)
        se = self.se(self.channels(key, state), p)
        sum_se = jnp.sum(se)
        t = state.t + 1
        state = dataclasses.replace(state, t=t)
        tx = self.N_s * p  # transmit power of each UE (mW)
        info = {
            "sum_se": sum_se,
            "min_se": jnp.min(se),
            "power_frac": jnp.mean(tx) / self.p_max,
            "power_mw": jnp.sum(tx),
            "se": se,
        }
        reward = jnp.full((self.K,), sum_se) if self.reward == "sum" else se
        truncated = t >= self.episode_steps
        return state.obs, state, reward, jnp.bool_(False), truncated, info

    def global_state(self, state: XLUplinkState):
        """Every normalised coefficient, ``[M K]`` flat (UE-major: ``obs[K, M]`` flattened)."""
        return state.obs.reshape(-1)

    # ---- heuristics -------------------------------------------------------------------

    def heuristics(self) -> dict:
        """``{"max_power", "optimised"}``, each ``policy(obs[..., K, M], state) ->
        actions[..., K, 1]``; ``optimised`` reads the true state (module docstring)."""
        return {
            "max_power": state_policy(self._max_policy),
            "optimised": state_policy(self._optimised_policy, batch_size=self.opt_batch),
        }

    def _max_policy(self, state):
        return self.to_actions(jnp.ones((self.K,), state.beta.dtype))

    def optimise(self, state: XLUplinkState):
        """The oracle of one drop: ``(x[K], sum_se)``, the best fractions ``x = p / p_ant_max``
        and their sum SE on the oracle's realizations (module docstring)."""
        dt = state.beta.dtype
        k_g, k_init = jax.random.split(state.opt_key)
        G = self.channels(k_g, state, self.opt_realizations)

        def objective(x):
            return jnp.sum(self.se(G, self.p_ant_max * x))

        lo_db = 10.0 * math.log10(self.floor)
        rand = 10.0 ** (lo_db * jax.random.uniform(k_init, (self.opt_restarts, self.K), dt) / 10)
        inits = jnp.concatenate([jnp.ones((1, self.K), dt), rand])

        def run(x0):
            x, f, _ = optimize_powers(
                objective,
                x0,
                (self.floor, 1.0),
                steps=self.opt_steps,
                lr=self.opt_lr,
                log_domain=True,
            )
            return x, f

        xs, fs = jax.lax.map(run, inits)  # one start at a time: the gradient's memory is large
        best = jnp.argmax(fs)
        return xs[best], fs[best]

    def _optimised_policy(self, state):
        return self.to_actions(self.optimise(state)[0])


def _spacing(name, v) -> float:
    if not _is_number(v) or not math.isfinite(v) or not v > 0:
        raise ValueError(f"{name} must be a positive number of wavelengths, got {v!r}")
    return float(v)


def _pair_or_int(v):
    """YAML lists to tuples (``array_shape`` takes a pair or a square count)."""
    return tuple(v) if isinstance(v, list) else v


# Documented default configuration (``cfmimo_jax.envs.make("xl_uplink", config)``); every
# choice is explained in the module docstring.
DEFAULT_CONFIG = {
    "n_bs": 9,  # BSs M ([XL-FUZZY] section V)
    "bs_array": [9, 9],  # BS patches (N_Vr, N_Hr), or a square count (81)
    "n_ues": 6,  # UEs K = agents
    "ue_array": [3, 3],  # UE patches (N_Vs, N_Hs), or a square count (9)
    "spacing": 1.0 / 3.0,  # patch spacing in wavelengths (lambda / 3)
    "ue_spacing": None,  # UE patch spacing in wavelengths; null: the BS spacing
    "lattice": "cover",  # wavenumber lattice: cover | ellipse (nearfield.wavenumber_lattice)
    "prune_tol": 1e-6,  # spectral variances below this fraction dropped
    "bs_layout": "random",  # random (uniform) | grid (n_bs a square number)
    "side_m": 1000.0,  # side of the square area (wrap-around)
    "height_m": 10.0,  # BS height above the UEs
    "shadow_std_db": 4.0,  # shadow fading std F ~ N(0, 4^2)
    "shadow_decorrelation_m": 9.0,  # shadowing decorrelation over UEs (m); null: i.i.d.
    "p_max_mw": 100.0,  # P_max^ul per UE over all its antennas: N_s p_k <= P_max
    "power_db_range": 30.0,  # actions in dB below P_max / N_s, [-30, 0]; null: linear mW
    "combiner": "l_mmse",  # l_mmse | mr
    "estimator": "independent",  # cross-BS expectations of eq. (8): independent | sample
    "n_realizations": 8,  # channel realizations per step (the reward's Monte Carlo)
    "reward": "sum",  # sum: every agent gets sum_k SE_k | own: agent k gets SE_k
    "episode_steps": 1,  # steps per drop, then truncated
    "opt_steps": 100,  # projected-gradient steps of the "optimised" oracle
    "opt_lr": 0.1,  # its Adam learning rate (log domain)
    "opt_realizations": 16,  # its fixed channel realizations
    "opt_restarts": 2,  # its random starts besides maximum power
    "opt_batch": 2,  # drops optimised at a time (memory: ~0.6 GB per drop at the defaults)
    "obs_offset_db": -30.0,  # observed coefficient (beta_db - offset) / scale
    "obs_scale_db": 10.0,
}
_PARAMS = ("obs_offset_db", "obs_scale_db")


def make(config: dict | None = None):
    """``(env, params)`` from a config dict over ``DEFAULT_CONFIG`` (module docstring; an
    unknown key or a bad value raises ``ValueError`` naming it, before any compute)."""
    config = merge_config("xl_uplink", DEFAULT_CONFIG, config)
    values = {k: config.pop(k) for k in _PARAMS}
    for k, v in values.items():
        if not _is_number(v) or not math.isfinite(v):
            raise ValueError(f"{k} must be a finite number, got {v!r}")
    _positive("obs_scale_db", values["obs_scale_db"])
    env = XLUplink(**config)
    return env, env.default_params(**{k: float(v) for k, v in values.items()})

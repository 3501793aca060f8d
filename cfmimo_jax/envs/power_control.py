"""Power control on the book's cell-free setup (the power-control testbed), multi-agent.

System (Demir, Björnson, Sanguinetti, "Foundations of User-Centric Cell-Free Massive MIMO",
2021, "the book"): ``L`` APs with ``N``-antenna ULAs and ``K`` single-antenna UEs dropped
uniformly in a square with wrap-around, path loss ``-30.5 - 36.7 log10(d / 1 m)`` dB with
shadowing of std 4 dB correlated over UEs, 20 MHz, noise figure 7 dB (book section 5.3;
``cfmimo_jax.setup.generate_setup``), pilots by Algorithm 4.1 and serving sets by DCC (book
section 4.4). Every ``reset`` draws a new network setup (jittable: one program for every
episode), or with ``setup_pool = n > 0`` picks one of a pool of ``n`` setups drawn once (below).
The pilots are sent at full power ``p_max`` (book section 7.1: the pilot powers are
fixed at the maximum), so the MMSE estimation statistics ``B_lk`` (book eq. (4.7)) are fixed for
the episode; the agents set the DATA powers.

Spectral efficiency, distributed MR in closed form, given to every agent as its reward
``reward[n_agents] = sum_k SE_k``:

* ``link="uplink"``: book Thm 5.4 / Cor. 5.6 (use-and-then-forget with ``a = 1`` on ``M_k``, or
  with ``lsfd=True`` the optimal LSFD weights of book eq. (5.30)), with the estimation moments
  ``E[g_ki]_l = sqrt(q_k q_i) tau_p tr(R_lk Psi_{l,t_k}^{-1} R_li)`` (same pilot) of the pilot
  powers ``q = p_max`` and the data powers ``p[K]`` in the SINR:
  ``SINR_k = p_k |a^H E[g_kk]|^2 / (sum_i p_i E[|a^H g_ki|^2] - p_k |a^H E[g_kk]|^2
  + a^H diag(tr(B_lk)) a)``;
* ``link="downlink"``: book Cor. 6.3 (hardening bound of Thm 6.1 with the MR precoders
  ``w_lk = sqrt(rho_lk) hhat_lk / sqrt(tr(B_lk))``), powers ``rho[L, K]`` (mW).

SE ``= (tau_c - tau_p) / tau_c * log2(1 + SINR_k)``. Statistics ``m, s, F`` of
``cfmimo_jax.se.mr_statistics`` are computed once per setup (at ``reset``); a step only
evaluates the SINR of the new powers.

Agents and actions:

* uplink: one agent per UE (``n_agents = K``); ``continuous``: ``Box(0, p_max_mw, (1,))``, the
  UE's data power in mW (with ``power_db_range = r``: ``Box(-r, 0, (1,))``, the power in dB
  below ``p_max``, ``p = p_max 10^(a / 10)``; the downlink's fractions likewise);
  ``discrete``: ``Discrete(n_levels)``, power level ``p_max * linspace(0, 1, n_levels)[a]``.
* downlink: one agent per AP (``n_agents = L``); ``continuous``: ``Box(0, 1, (K,))``, budget
  fractions ``a_lk``, ``rho_lk = rho_max D_lk a_lk / max(1, sum_k D_lk a_lk)`` (an AP never
  exceeds ``rho_max``; entries of UEs it does not serve are ignored); ``discrete``:
  ``Discrete(n_levels)``, the fraction ``c_l = linspace(0, 1, n_levels)[a]`` of the budget,
  split over the served UEs as ``cfmimo_jax.power.fractional_downlink`` does (book eq. (7.47)):
  ``rho_lk = c_l rho_max gain_lk^0.5 / sum_{i in S_l} gain_li^0.5``.

Observations (``Box(-inf, inf, (obs_dim,))`` per agent, a flat vector), with the normalised
gain ``g_lk = (gain_db_lk - obs_offset_db) / obs_scale_db`` (gain over noise; the defaults
-20 dB and 10 dB put 90 % of the default setups' gains in ``[-1, 2]``) and the pilot load
``n_k = |{i : pilot_i = pilot_k}| / K``:

* uplink UE ``k`` (``obs_dim = 2 L + 3``): ``[g_{:,k} (L), D_{:,k} (L), n_k,
  p_k / p_max, SE_k / obs_se_scale]`` with the previous step's power and SE;
* downlink AP ``l`` (``obs_dim = 5 K``): ``[g_{l,:} (K), D_{l,:} (K), n_{:} (K),
  rho_{l,:} / rho_max (K), SE_{:} / obs_se_scale (K)]``.

* ``features="coupling"`` (uplink): UE ``k`` sees ``[snr_k, inr_{k,:} (K), inr_{:,k} (K), n_k,
  p_k / p_max, SE_k / obs_se_scale]`` (``obs_dim = 2 K + 4``), the SINR terms of book Thm 5.4
  at full power in dB / 10 (``PowerControl.coupling``): its own SNR, the interference it
  receives from each UE and the interference it causes to each; these terms and the powers
  determine every SINR, which a critic learns far more easily than from the raw gains.

At ``reset`` the "previous" powers are full power (the ``full`` heuristic) and the previous SEs
those they give. ``global_state(state)`` (``global_state_space``): ``[g (L K), D (L K),
previous powers normalised (K uplink, L K downlink), previous SE / obs_se_scale (K)]``, flat.

``info``: ``sum_se``, ``min_se`` (bit/s/Hz), ``power_frac`` (power used over the maximum:
``mean_k p_k / p_max`` uplink, ``sum rho / (L rho_max)`` downlink) and ``se[K]``. An episode
is ``episode_steps`` steps on one setup, then truncated (never terminated).

Heuristics (``heuristics()``, through the same ``step``): ``full`` (uplink ``p = p_max``;
downlink the whole budget split equally over the served UEs; discrete: the top level),
``fractional`` (uplink ``cfmimo_jax.power.fractional_uplink`` (book section 7.1), discrete:
the nearest non-zero level; downlink ``fractional_downlink``; in the discrete downlink this is
the top level, the same as ``full``) and ``optimised``, an oracle reading the true state:
``cfmimo_jax.power.optimize_powers`` (Adam, ``opt_steps = 200`` steps, on powers normalised to
``[0, 1]``; uplink: in the log domain with learning rate ``opt_lr = 0.1`` and powers of at
least ``1e-4 p_max``; downlink: learning rate 0.02 with ``project_budget`` onto the per-AP
budgets; the learning rates are those that converged best on the default setups) through the
differentiable closed form, started from the full and from the fractional powers (discrete
downlink, which optimises the fractions ``c_l``: from ``c = 1`` and ``c = 1/2``), keeping the
better; discrete: the nearest levels of both optima, the best of those and the two other
heuristics, then two sweeps of coordinate ascent over the agents' levels (each agent in turn
takes its best level with the others fixed). So the oracle is never worse than ``full`` or
``fractional`` on any setup. Mean sum SE (bit/s/Hz) over 64 setups of the default
configuration, full / fractional / optimised: uplink 8.04 / 9.06 / 9.76 (discrete 8.04 / 8.60 /
9.06; LSFD 12.48 / 12.25 / 12.63), downlink 8.90 / 10.72 / 12.78 (discrete 10.72 / 10.72 /
11.68).

Setup pool (``setup_pool``, default 0): with ``setup_pool = 0`` every ``reset`` generates a new
setup from its key (drop, correlated shadowing, pilot assignment, DCC). With ``setup_pool = n >
0`` the ``n`` setups are drawn once, when the parameters are made (``make`` or
``env.default_params()``; ``PowerControl.draw_setups``): setup ``i`` is exactly the setup that a
``setup_pool = 0`` reset with key ``jax.random.split(jax.random.PRNGKey(setup_pool_seed), n)[i]``
generates. They are stored stacked in ``params.setups`` (``PowerControlSetups``: ``gain_db[n,
L, K]``, ``R[n, L, K, N, N]``, ``pilot[n, K]``, ``D[n, L, K]``; arrays in the params pytree, so
they enter a jitted program as data, and another pool of the same size can be swapped in with
``dataclasses.replace(params, setups=env.draw_setups(key))``, e.g. held-out setups). Each reset
then picks setup ``jax.random.randint(key, (), 0, n)`` with its key (uniform, with replacement)
and computes everything downstream exactly as for a generated setup: the estimation and MR
statistics, the observations, the SEs at full power. A reset then skips the generation (the
statistics, which it keeps, are the larger part of a reset at the defaults), at the price of
training on a finite set of setups. ``params.setups`` is ``None`` when ``setup_pool = 0``; a
mismatch between the pool in the params and ``setup_pool`` raises ``ValueError``.

Choices (documented defaults, small so RL on a 2-core CPU is quick): ``L = 16`` APs with
``N = 2`` antennas, ``K = 6`` UEs, ``tau_p = 3`` pilots (pilot reuse), ``tau_c = 200``
(book section 5.3), a 500 m square (a quarter of the book's 1 km^2, so 16 APs give 64 APs per
km^2, close to the book's 100), uncorrelated fading ``R = gain I`` (``asd = None``; an ASD in
degrees gives the book's local scattering with that azimuth and elevation spread),
``p_max = 100`` mW per UE and ``rho_max = 200`` mW per AP (book section 5.3), 5 discrete
levels, distributed MR with ``a = 1``, 5 steps per setup; continuous actions in dB over a
30 dB range (``power_db_range``: the optimal powers span decades, which a linear ``[0,
p_max]`` action resolves badly) and, in the uplink, the ``coupling`` observations (an MLP
critic fitted to the sum SE of random powers on held-out setups reaches R^2 = 0.83 from them
against 0.19 from the raw gains and masks, with 20 000 samples). Sizes, powers and the link
are static (they shape the spaces); ``params`` (``PowerControlParams``) holds the observation
scaling.
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
from ..estimation import estimation_statistics
from ..power import fractional_downlink, fractional_uplink, optimize_powers, project_budget
from ..se import _downlink_distributed_sinr, _uplink_distributed_sinr, mr_statistics, prelog
from ..setup import generate_setup
from . import merge_config, spaces
from .base import MultiAgentEnv, state_policy

LINKS = ("uplink", "downlink")
UPLINK_FLOOR = 1e-4  # the uplink oracle's smallest power, a fraction of p_max (-40 dB)
OPT_LR = {"uplink": 0.1, "downlink": 0.02}  # the oracle's default Adam learning rates
OPT_SWEEPS = 2  # discrete oracle: coordinate-ascent sweeps over the agents' levels
ACTIONS = ("continuous", "discrete")
FEATURES = ("auto", "gains", "coupling")


@functools.partial(jax.tree_util.register_dataclass)
@dataclasses.dataclass(frozen=True)
class PowerControlSetups:
    """A pool of ``n`` network setups, stacked (module docstring, "Setup pool").

    gain_db[n, L, K] (gain over noise), R[n, L, K, N, N], pilot[n, K] int32, D[n, L, K] bool:
    the fields of ``cfmimo_jax.setup.Setup`` that the environment reads.
    """

    gain_db: jax.Array
    R: jax.Array
    pilot: jax.Array
    D: jax.Array

    @property
    def size(self) -> int:
        """The number of setups ``n`` (static)."""
        return int(self.pilot.shape[0])


@functools.partial(jax.tree_util.register_dataclass)
@dataclasses.dataclass(frozen=True)
class PowerControlParams:
    """Observation scaling (scalars; a pytree, so sweeps ``vmap`` over it) and the setup pool.

    ``obs_offset_db``, ``obs_scale_db``: gains enter the observations as
    ``(gain_db - obs_offset_db) / obs_scale_db``; ``obs_se_scale``: SEs as ``SE / obs_se_scale``;
    ``setups``: the pool of ``setup_pool`` setups (``PowerControlSetups``), ``None`` (no leaves)
    when every reset generates its setup (``setup_pool = 0``).
    """

    obs_offset_db: float = -20.0
    obs_scale_db: float = 10.0
    obs_se_scale: float = 2.0
    setups: PowerControlSetups | None = None


@functools.partial(jax.tree_util.register_dataclass)
@dataclasses.dataclass(frozen=True)
class PowerControlState:
    """Environment state of one network setup.

    gain_db[L, K] (gain over noise), gain_obs[L, K] (normalised, as observed), R[L, K, N, N],
    pilot[K] int32, D[L, K] bool; the closed-form MR statistics with pilots at ``p_max``
    (``cfmimo_jax.se.mr_statistics``): m[L, K, K] complex, s[L, K, K], F[L, K]; power: the
    previous step's powers in mW (``[K]`` uplink, ``[L, K]`` downlink); se[K]: the previous
    SEs; se_scale: ``params.obs_se_scale`` (so ``global_state`` scales as the observations);
    t: int32 steps done on this setup.
    """

    gain_db: jax.Array
    gain_obs: jax.Array
    R: jax.Array
    pilot: jax.Array
    D: jax.Array
    m: jax.Array
    s: jax.Array
    F: jax.Array
    power: jax.Array
    se: jax.Array
    se_scale: jax.Array
    t: jax.Array


class PowerControl(MultiAgentEnv):
    """The power-control testbed (module docstring). Static sizes and powers in the constructor.

    ``n_agents = K`` (uplink) or ``L`` (downlink); spaces per agent as in the module docstring.
    """

    eval_metrics = ("sum_se", "min_se", "power_frac")
    progress_metrics = ("sum_se",)

    def __init__(
        self,
        n_aps: int = 16,
        n_antennas: int = 2,
        n_ues: int = 6,
        tau_p: int = 3,
        tau_c: int = 200,
        side_m: float = 500.0,
        asd: float | None = None,
        link: str = "uplink",
        action: str = "continuous",
        n_levels: int = 5,
        p_max_mw: float = 100.0,
        rho_max_mw: float = 200.0,
        lsfd: bool = False,
        episode_steps: int = 5,
        opt_steps: int = 200,
        opt_lr: float | None = None,
        power_db_range: float | None = None,
        features: str = "auto",
        setup_pool: int = 0,
        setup_pool_seed: int = 0,
    ):
        self.L = V.positive_int("n_aps", n_aps)
        self.N = V.positive_int("n_antennas", n_antennas)
        self.K = V.positive_int("n_ues", n_ues)
        self.tau_p = V.positive_int("tau_p", tau_p)
        self.tau_c = V.positive_int("tau_c", tau_c)
        if self.tau_p >= self.tau_c:
            raise ValueError(f"tau_p={tau_p} must be smaller than tau_c={tau_c}")
        self.side_m = _positive("side_m", side_m)
        if asd is not None and not (_is_number(asd) and 0 <= asd <= 90):
            raise ValueError(f"asd must be null or an angle in degrees in [0, 90], got {asd!r}")
        self.asd = None if asd is None else float(asd)
        if link not in LINKS:
            raise ValueError(f"link must be one of {LINKS}, got {link!r}")
        if action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}, got {action!r}")
        self.link, self.action = link, action
        self.n_levels = V.positive_int("n_levels", n_levels, minimum=2)
        self.p_max = _positive("p_max_mw", p_max_mw)
        self.rho_max = _positive("rho_max_mw", rho_max_mw)
        if not isinstance(lsfd, bool | np.bool_):
            raise ValueError(f"lsfd must be true or false, got {lsfd!r}")
        if lsfd and link == "downlink":
            raise ValueError("lsfd applies to the uplink only: set lsfd=false for link=downlink")
        self.lsfd = bool(lsfd)
        self.episode_steps = V.positive_int("episode_steps", episode_steps)
        self.opt_steps = V.positive_int("opt_steps", opt_steps)
        self.opt_lr = OPT_LR[link] if opt_lr is None else _positive("opt_lr", opt_lr)
        if power_db_range is not None:
            power_db_range = _positive("power_db_range", power_db_range)
        self.db_range = power_db_range
        L, K = self.L, self.K
        self.uplink = link == "uplink"
        self.n_agents = K if self.uplink else L
        shape = (1,) if self.uplink else (K,)
        if action == "discrete":
            self.action_space = spaces.Discrete(self.n_levels)
        elif self.db_range is not None:  # decibels below the maximum
            self.action_space = spaces.Box(-self.db_range, 0.0, shape)
        else:
            self.action_space = spaces.Box(0.0, self.p_max if self.uplink else 1.0, shape)
        if features not in FEATURES:
            raise ValueError(f"features must be one of {FEATURES}, got {features!r}")
        if features == "auto":  # the coupling terms where they are defined
            features = "coupling" if self.uplink else "gains"
        if features == "coupling" and not self.uplink:
            raise ValueError("features='coupling' is defined for link=uplink only")
        self.features = features
        n_power = K if self.uplink else L * K
        if features == "coupling":
            self.obs_dim = 2 * K + 4
            n_state = K + K * K + n_power + K
        else:
            self.obs_dim = 2 * L + 3 if self.uplink else 5 * K
            n_state = 2 * L * K + n_power + K
        self.observation_space = spaces.Box(-np.inf, np.inf, (self.obs_dim,))
        self.global_state_space = spaces.Box(-np.inf, np.inf, (n_state,))
        self._prelog = prelog(self.tau_c, self.tau_p)
        self.setup_pool = V.positive_int("setup_pool", setup_pool, minimum=0)
        self.setup_pool_seed = V.positive_int("setup_pool_seed", setup_pool_seed, minimum=0)
        if self.setup_pool_seed >= 2**32:
            raise ValueError(f"setup_pool_seed must be < 2**32, got {setup_pool_seed}")
        self._pool = None  # the pool of setup_pool_seed, drawn on first use

    def default_params(self, **overrides) -> PowerControlParams:
        """``PowerControlParams`` with the defaults or ``overrides``; with ``setup_pool > 0``
        (and no ``setups`` override) the pool of ``setup_pool_seed`` (``pool_setups()``)."""
        if self.setup_pool and "setups" not in overrides:
            overrides["setups"] = self.pool_setups()
        return PowerControlParams(**overrides)

    # ---- setups -----------------------------------------------------------------------

    def generate(self, key) -> PowerControlSetups:
        """The setup that a reset without a pool generates from ``key`` (drop, correlated
        shadowing, pilots by Algorithm 4.1, DCC; ``cfmimo_jax.setup.generate_setup``)."""
        asd = None if self.asd is None else math.radians(self.asd)
        s = generate_setup(key, self.L, self.K, self.N, self.tau_p, asd, asd, side=self.side_m)
        return PowerControlSetups(gain_db=s.gain_db, R=s.R, pilot=s.pilot, D=s.D)

    def draw_setups(self, key, n: int | None = None) -> PowerControlSetups:
        """``n`` (default ``setup_pool``) setups stacked: setup ``i`` is ``generate(
        jax.random.split(key, n)[i])`` (compiled, at most 256 setups at a time)."""
        n = V.positive_int("n", self.setup_pool if n is None else n)
        keys = jax.random.split(key, n)
        return jax.jit(lambda ks: jax.lax.map(self.generate, ks, batch_size=min(n, 256)))(keys)

    def pool_setups(self) -> PowerControlSetups:
        """The pool of the configuration: ``draw_setups(jax.random.PRNGKey(setup_pool_seed))``,
        drawn once per environment (cached)."""
        if not self.setup_pool:
            raise ValueError("setup_pool=0: this environment draws no pool of setups")
        if self._pool is None:
            with jax.ensure_compile_time_eval():  # concrete arrays even if first asked in a trace
                self._pool = self.draw_setups(jax.random.PRNGKey(self.setup_pool_seed))
        return self._pool

    def _setup(self, key, params) -> PowerControlSetups:
        """The episode's setup: generated from ``key``, or picked from ``params.setups`` with it
        (uniformly: ``jax.random.randint(key, (), 0, n)``)."""
        pool = params.setups
        n = 0 if pool is None else pool.size
        if n != self.setup_pool:
            raise ValueError(
                f"setup_pool={self.setup_pool} but the params carry "
                + ("no pool of setups" if pool is None else f"a pool of {n} setups")
                + ": use the params of make() or env.default_params()"
            )
        if pool is None:
            return self.generate(key)
        i = jax.random.randint(key, (), 0, n)
        return jax.tree.map(lambda a: a[i], pool)

    # ---- physics ----------------------------------------------------------------------

    def powers(self, state: PowerControlState, actions):
        """Actions of all agents -> data powers in mW: ``p[K]`` (uplink) or ``rho[L, K]``
        (downlink), the maps of the module docstring (actions clipped to their space)."""
        if self.action == "discrete":
            level = jnp.clip(actions, 0, self.n_levels - 1).astype(state.F.dtype)
            frac = level / (self.n_levels - 1)
            if self.uplink:
                return self.p_max * frac
            return frac[:, None] * self._split(state)
        if self.db_range is not None:
            lin = 10.0 ** (jnp.clip(actions, -self.db_range, 0.0).astype(state.F.dtype) / 10.0)
            actions = lin * self.p_max if self.uplink else lin
        if self.uplink:
            return jnp.clip(actions[..., 0], 0.0, self.p_max).astype(state.F.dtype)
        w = jnp.where(state.D, jnp.clip(actions, 0.0, 1.0), 0.0).astype(state.F.dtype)
        return self.rho_max * w / jnp.maximum(1.0, jnp.sum(w, axis=1, keepdims=True))

    def _split(self, state):
        """The discrete downlink's split of the full budget: ``fractional_downlink``."""
        return fractional_downlink(10.0 ** (state.gain_db / 10.0), state.D, self.rho_max)

    def se(self, state: PowerControlState, power):
        """Closed-form distributed MR SE ``[K]`` of the data powers ``power`` (mW, ``[K]``
        uplink / ``[L, K]`` downlink) with the state's statistics (module docstring; book
        Cor. 5.6 / Cor. 6.3). Differentiable in ``power``."""
        if self.uplink:
            sinr, _ = _uplink_distributed_sinr(state.m, state.s, state.F, state.D, power, self.lsfd)
        else:
            rho = jnp.where(state.D, power, 0.0)
            sinr, _ = _downlink_distributed_sinr(state.m, state.s, state.F, state.D, rho)
        return self._prelog * jnp.log2(1.0 + sinr)

    def sum_se(self, state: PowerControlState, actions):
        """``sum_k SE_k`` of the agents' actions (the reward of every agent)."""
        return jnp.sum(self.se(state, self.powers(state, actions)))

    def _full_actions(self, dtype):
        if self.action == "discrete":
            return jnp.full((self.n_agents,), self.n_levels - 1, jnp.int32)
        return jnp.asarray(self.action_space.high, dtype)[None].repeat(self.n_agents, 0)

    def _power_frac(self, power):
        if self.uplink:
            return jnp.mean(power) / self.p_max
        return jnp.sum(power) / (self.L * self.rho_max)

    # ---- interface --------------------------------------------------------------------

    def reset_env(self, key, params):
        setup = self._setup(key, params)
        R, pilot, D = setup.R, setup.pilot, setup.D
        B, _ = estimation_statistics(R, pilot, self.p_max, self.tau_p)
        m, s, F = mr_statistics(R, B, pilot, self.p_max, self.tau_p)
        gain_obs = (setup.gain_db - params.obs_offset_db) / params.obs_scale_db
        dt = F.dtype
        shape = (self.K,) if self.uplink else (self.L, self.K)
        state = PowerControlState(
            gain_db=setup.gain_db,
            gain_obs=gain_obs,
            R=R,
            pilot=pilot,
            D=D,
            m=m,
            s=s,
            F=F,
            power=jnp.zeros(shape, dt),
            se=jnp.zeros((self.K,), dt),
            se_scale=jnp.asarray(params.obs_se_scale, dt),
            t=jnp.int32(0),
        )
        power = self.powers(state, self._full_actions(dt))
        state = dataclasses.replace(state, power=power, se=self.se(state, power))
        return self._obs(state, params), state

    def step_env(self, key, state, actions, params):
        power = self.powers(state, actions)
        se = self.se(state, power)
        sum_se = jnp.sum(se)
        t = state.t + 1
        state = dataclasses.replace(state, power=power, se=se, t=t)
        info = {
            "sum_se": sum_se,
            "min_se": jnp.min(se),
            "power_frac": self._power_frac(power),
            "se": se,
        }
        reward = jnp.full((self.n_agents,), sum_se)
        truncated = t >= self.episode_steps
        return self._obs(state, params), state, reward, jnp.bool_(False), truncated, info

    def _load(self, state):
        """Pilot load ``n_k = |{i : pilot_i = pilot_k}| / K``, ``[K]``."""
        same = state.pilot[:, None] == state.pilot[None, :]
        return jnp.sum(same, axis=1).astype(state.F.dtype) / self.K

    def coupling(self, state):
        """Uplink SINR terms at full power (the ``coupling`` features), in dB / 10: with
        ``a = 1`` on ``M_k`` (book Thm 5.4) ``SINR_k = p_k S_k / (sum_i p_i C_ki - p_k S_k +
        N_k)``, ``S_k = |sum_{l in M_k} m_lkk|^2``, ``C_ki = |sum_{l in M_k} m_lki|^2 +
        sum_{l in M_k} s_lki``, ``N_k = sum_{l in M_k} F_lk``; returns ``(snr[K] =
        p_max S_k / N_k, inr[K, K] = p_max C_ki / N_k)``, both ``10 log10(.) / 10``. Together
        with the powers they determine every UE's SINR."""
        Df = state.D.astype(state.F.dtype)
        a = Df.astype(state.m.dtype)
        proj = jnp.einsum("lk,lki->ki", a, state.m)
        S = jnp.abs(jnp.diagonal(proj)) ** 2
        C = jnp.abs(proj) ** 2 + jnp.einsum("lk,lki->ki", Df, state.s)
        N = jnp.maximum(jnp.sum(Df * state.F, axis=0), 1e-30)
        tiny = 1e-30
        snr = jnp.log10(jnp.maximum(self.p_max * S / N, tiny))
        inr = jnp.log10(jnp.maximum(self.p_max * C / N[:, None], tiny))
        return snr, inr

    def _obs(self, state, params):
        L, K = self.L, self.K
        if self.features == "coupling":
            snr, inr = self.coupling(state)
            prev = jnp.stack(
                [self._load(state), state.power / self.p_max, state.se / state.se_scale], axis=1
            )
            # UE k: [snr_k, inr_k. (received, K), inr_.k (caused, K), load, power, SE]
            return jnp.concatenate([snr[:, None], inr, inr.T, prev], axis=1)
        dt = state.F.dtype
        g = state.gain_obs.astype(dt)
        Df = state.D.astype(dt)
        load = self._load(state)
        se = state.se / state.se_scale
        if self.uplink:
            extra = jnp.stack([load, state.power / self.p_max, se], axis=1)  # [K, 3]
            return jnp.concatenate([g.T, Df.T, extra], axis=1)  # [K, 2L + 3]
        per_ue = jnp.broadcast_to(jnp.stack([load, se])[None], (L, 2, K))
        rows = [g, Df, per_ue[:, 0], state.power / self.rho_max, per_ue[:, 1]]
        return jnp.concatenate(rows, axis=1)  # [L, 5K]

    def global_state(self, state: PowerControlState):
        """``[g (L K), D (L K), previous powers / max (K or L K), previous SE / obs_se_scale
        (K)]``, flat (``g`` the normalised gains as observed); with ``features="coupling"``
        ``[snr (K), inr (K K), previous powers / p_max (K), previous SE / obs_se_scale (K)]``."""
        dt = state.F.dtype
        pmax = self.p_max if self.uplink else self.rho_max
        if self.features == "coupling":
            snr, inr = self.coupling(state)
            rest = [state.power / pmax, state.se / state.se_scale]
            return jnp.concatenate([snr, inr.reshape(-1), *rest])
        parts = [
            state.gain_obs.reshape(-1).astype(dt),
            state.D.reshape(-1).astype(dt),
            (state.power / pmax).reshape(-1),
            state.se / state.se_scale,
        ]
        return jnp.concatenate(parts)

    # ---- heuristics -------------------------------------------------------------------

    def heuristics(self) -> dict:
        """``{"full", "fractional", "optimised"}``, each ``policy(obs[..., n_agents, obs_dim],
        state) -> actions[..., n_agents(, ...)]`` (module docstring); ``optimised`` reads the
        true state (an oracle)."""
        return {
            "full": state_policy(self._full_policy),
            "fractional": state_policy(self._fractional_policy),
            "optimised": state_policy(self._optimised_policy),
        }

    def _full_policy(self, state):
        return self._full_actions(state.F.dtype)

    def _fractional_continuous(self, state):
        """Fractional powers as continuous actions (uplink ``[K, 1]`` mW, downlink budget
        fractions ``[L, K]``)."""
        gain = 10.0 ** (state.gain_db / 10.0)
        if self.uplink:
            return fractional_uplink(gain, state.D, self.p_max)[:, None]
        return fractional_downlink(gain, state.D, 1.0)

    def _to_action(self, v):
        """Continuous linear actions (uplink mW, downlink budget fractions) in the action
        space: unchanged, or in dB below the maximum with ``power_db_range``."""
        if self.db_range is None:
            return v
        scale = self.p_max if self.uplink else 1.0
        floor = 10.0 ** (-self.db_range / 10.0)
        return 10.0 * jnp.log10(jnp.maximum(v / scale, floor))

    def _fractional_policy(self, state):
        if self.action == "continuous":
            return self._to_action(self._fractional_continuous(state))
        if not self.uplink:
            return self._full_actions(state.F.dtype)
        x = self._fractional_continuous(state)[:, 0] / self.p_max
        return jnp.clip(jnp.round(x * (self.n_levels - 1)), 1, self.n_levels - 1).astype(jnp.int32)

    def _optimised_policy(self, state):
        dt = state.F.dtype
        L, K = self.L, self.K
        if self.uplink:
            # x = p / p_max in [0, 1]^K
            def to_actions(x):
                return self._to_action((self.p_max * x)[:, None])

            inits = jnp.stack([jnp.ones((K,), dt), self._fractional_continuous(state)[:, 0]])
            inits = inits.at[1].divide(self.p_max)
            project = None
        elif self.action == "continuous":
            # x = rho / rho_max in [0, 1]^(L x K), per-AP budget 1

            def to_actions(x):
                return self._to_action(x)

            inits = jnp.stack([jnp.ones((L, K), dt), self._fractional_continuous(state)])

            def project(x):
                return project_budget(x, state.D, 1.0)
        else:
            # x = c_l, the fraction of AP l's fractional split

            def to_actions(x):
                return x

            inits = jnp.stack([jnp.ones((L,), dt), jnp.full((L,), 0.5, dt)])
            project = None

        if self.action == "continuous":

            def objective(x):  # exactly the reward of the action
                return self.sum_se(state, to_actions(x))
        elif self.uplink:

            def objective(x):  # the continuous relaxation of the levels
                return jnp.sum(self.se(state, self.p_max * x))
        else:
            split = self._split(state)

            def objective(x):
                return jnp.sum(self.se(state, x[:, None] * split))

        # uplink: multiplicative (log-domain) steps, powers span decades; x >= 1e-4 (-40 dB)
        low = UPLINK_FLOOR if self.uplink else 0.0

        def run(x0):
            x, f, _ = optimize_powers(
                objective,
                x0,
                (low, 1.0),
                project=project,
                steps=self.opt_steps,
                lr=self.opt_lr,
                log_domain=self.uplink,
            )
            return x, f

        xs, fs = jax.vmap(run)(inits)
        if self.action == "continuous":
            return to_actions(xs[jnp.argmax(fs)])
        levels = jnp.round(xs * (self.n_levels - 1)).astype(jnp.int32)  # [2, n_agents]
        cands = jnp.concatenate(
            [
                levels,
                self._full_policy(state)[None],
                self._fractional_policy(state)[None],
            ]
        )
        values = jax.vmap(lambda a: self.sum_se(state, a))(cands)
        return self._coordinate_ascent(state, cands[jnp.argmax(values)])

    def _coordinate_ascent(self, state, a):
        """Discrete refinement: ``OPT_SWEEPS`` sweeps over the agents (a ``lax.fori_loop``),
        each agent in turn taking the level that maximises the sum SE with the others fixed
        (never decreases the sum SE)."""
        levels = jnp.arange(self.n_levels, dtype=a.dtype)

        def one(i, a):
            trial = jax.vmap(lambda v: a.at[i % self.n_agents].set(v))(levels)
            values = jax.vmap(lambda b: self.sum_se(state, b))(trial)
            # keep the current level unless another is strictly better
            cur = self.sum_se(state, a)
            best = jnp.argmax(values)
            return jnp.where(values[best] > cur, trial[best], a)

        return jax.lax.fori_loop(0, OPT_SWEEPS * self.n_agents, one, a)


# Documented default configuration (``cfmimo_jax.envs.make("power_control", config)``); every
# choice is explained in the module docstring.
DEFAULT_CONFIG = {
    "n_aps": 16,  # APs L
    "n_antennas": 2,  # antennas per AP N
    "n_ues": 6,  # UEs K
    "tau_p": 3,  # pilots (pilot reuse: K > tau_p)
    "tau_c": 200,  # coherence block (samples)
    "side_m": 500.0,  # side of the square (wrap-around)
    "asd": None,  # angular spread in degrees (azimuth and elevation); None: R = gain I
    "link": "uplink",  # uplink (agents = UEs) | downlink (agents = APs)
    "action": "continuous",  # continuous | discrete
    "n_levels": 5,  # discrete power levels (linspace(0, 1, n_levels) of the maximum)
    "p_max_mw": 100.0,  # UE power (pilots always at this power)
    "rho_max_mw": 200.0,  # AP power budget (downlink)
    "lsfd": False,  # uplink: optimal LSFD weights instead of a = 1
    "episode_steps": 5,  # steps per setup, then truncated
    "opt_steps": 200,  # projected-gradient steps of the "optimised" oracle
    "opt_lr": None,  # its Adam learning rate; None: 0.1 uplink (log domain), 0.02 downlink
    "power_db_range": 30.0,  # continuous actions in dB below the maximum, [-30, 0]; null: linear
    # observations: gains | coupling (uplink: the SINR terms at full power, PowerControl.coupling)
    # | auto (coupling for the uplink, gains for the downlink)
    "features": "auto",
    "obs_offset_db": -20.0,  # observed gain (gain_db - offset) / scale
    "obs_scale_db": 10.0,
    "obs_se_scale": 2.0,  # observed SE / scale
    # 0: every reset generates a new setup; n > 0: n setups drawn once (from the key
    # PRNGKey(setup_pool_seed), split n ways) into params.setups, each reset picks one at random
    "setup_pool": 0,
    "setup_pool_seed": 0,
}
_PARAMS = ("obs_offset_db", "obs_scale_db", "obs_se_scale")


def make(config: dict | None = None):
    """``(env, params)`` from a config dict over ``DEFAULT_CONFIG`` (module docstring; an
    unknown key or a bad value raises ``ValueError`` naming it)."""
    config = merge_config("power_control", DEFAULT_CONFIG, config)
    values = {k: config.pop(k) for k in _PARAMS}
    for k, v in values.items():
        if not _is_number(v) or not math.isfinite(v):
            raise ValueError(f"{k} must be a finite number, got {v!r}")
    for k in ("obs_scale_db", "obs_se_scale"):
        _positive(k, values[k])
    env = PowerControl(**config)
    return env, env.default_params(**{k: float(v) for k, v in values.items()})

"""FL-CTCE and FL-CTDE ([XL-FUZZY] sections IV-B, IV-C, Algorithm 1): DDPG and MADDPG over
fuzzy agents, on the off-policy engine.

The environment's ``K`` agents (the entities, e.g. the UEs) are represented by
``n_fuzzy = m`` fuzzy agents (``algorithms.fuzzy``): the trainer wraps the environment in
``fuzzy.FuzzyEnv`` and trains the fuzzy agents with the DDPG / MADDPG trainer of
``algorithms.ddpg`` unchanged (the same engine: ring replay buffer, Gaussian exploration with
decay, soft target updates ``tau``, gradient clipping, the ``init`` / ``update`` / ``train``
contract). Every environment step (Algorithm 1 lines 3-9): the actors map the fuzzy states
``shat_t`` to fuzzy actions ``ahat_t`` (with exploration noise), the wrapper defuzzifies them
into the ``K`` entity actions ``a_k = sum_i mubar_k^i ahat_i`` before the environment step,
then fuzzifies the rewards and next observations; the buffer stores the fuzzy experience
``<shat_t, ahat_t, rhat_t, shat_t+1>`` (lines 11 / 18).

* ``fl_ctce`` (``centralised_actor=True``, DDPG, Fig. 2(a)): one joint actor
  ``pi(shat_1..shat_m) -> ahat[m]`` and one joint critic ``Q(shat, ahat)`` of the team reward
  ``mean_i rhat_i`` (the global target of eq. (11), ``y = rhat + gamma Q'(shat',
  pi'(shat'))``); the actor ascends ``Q(shat, pi(shat))`` (eq. (10)).
* ``fl_ctde`` (``centralised_actor=False``, MADDPG, Fig. 2(b)): local actors
  ``pi_i(shat_i) -> ahat_i`` and a centralised critic per fuzzy agent ``Q_i(shat, ahat)`` with
  the local targets ``y_i = rhat_i + gamma Q'_i(shat', pi'(shat'))`` of eq. (13); actor ``i``
  ascends ``Q_i`` with its own action substituted (eq. (12)). The paper's ``m`` buffers
  ``D_i`` are one buffer of joint transitions sampled at the same rows for every fuzzy agent
  (each ``D_i`` holds fuzzy agent ``i``'s columns; MADDPG's critics need the joint action).
  ``shared_parameters: false`` gives every fuzzy agent its own actor and critic, as in the
  paper; ``true`` shares them with a one-hot fuzzy-agent id.

Fuzzy keys (besides DDPG's): ``n_fuzzy`` (``m``), ``fuzzy_scale`` (the membership scale;
``null``: ``d_a m``), ``fuzzify`` (``mean`` | ``sum``, the normalisation of the fuzzification
weights, see ``algorithms.fuzzy``), ``fuzzy_reinit`` (new fuzzy states sampled from the
entities at every episode start, or carried) and ``act_refine``.

Execution without the training loop (``act(params, obs, key=None)``, what ``cfmimo train``
and ``cfmimo evaluate`` call with the entities' observations ``obs[..., K, F]``): the fuzzy
states are not part of the observation, so ``act`` rebuilds them from ``obs``: the
observations of entities ``0..m-1`` (``fuzzy.first_centres``; with ``key``, a random sample as
in training, plus the final exploration noise), then ``act_refine`` membership updates on the
same observations (``shat <- sum_k w_k^i s_k``); the actors act on them and the actions are
defuzzified. That is the training-time fuzzy state exactly at the first step of an episode
with ``fuzzy_reinit: true`` (for exchangeable entities, in distribution), and for every step
of the default one-step episodes of ``xl_uplink``; within longer episodes of a constant
observation the training state after ``t`` steps is ``t`` refinements, which ``act_refine``
approximates.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from cfmimo_jax.envs import spaces

from . import ddpg
from . import fuzzy as fz
from . import offpolicy as op

FUZZY_DEFAULTS = {
    "n_fuzzy": 3,  # fuzzy agents m
    "fuzzy_scale": None,  # membership scale; null: d_a m (d_a: the flat action size)
    "fuzzify": "mean",  # mean: weights normalised over the entities | sum: as printed
    "fuzzy_reinit": True,  # new fuzzy states sampled at every episode start (else carried)
    "act_refine": 0,  # membership updates act() runs on the observations before acting
}

DEFAULT_CONFIG = {**ddpg.DEFAULT_CONFIG, **FUZZY_DEFAULTS}


class FuzzyDDPGTrainer(ddpg.DDPGTrainer):
    """FL-CTCE / FL-CTDE (module docstring): ``DDPGTrainer`` on ``fuzzy.FuzzyEnv(env)``;
    ``self.base_env`` is the entities' environment, ``self.env`` the fuzzy one."""

    def __init__(self, cfg: dict, env, env_params):
        cfg = op.check_keys(cfg, DEFAULT_CONFIG, "fl_ctce/fl_ctde")
        fuzzy = {k: cfg.pop(k) for k in FUZZY_DEFAULTS}
        m = fuzzy["n_fuzzy"]
        if isinstance(m, bool) or not isinstance(m, int) or m < 1:
            raise ValueError(f"n_fuzzy must be a positive integer, got {m!r}")
        s = fuzzy["fuzzy_scale"]
        if s is not None and (isinstance(s, bool) or not isinstance(s, int | float) or s <= 0):
            raise ValueError(f"fuzzy_scale must be null or a positive number, got {s!r}")
        if fuzzy["fuzzify"] not in fz.FUZZIFY:
            raise ValueError(f"fuzzify must be one of {fz.FUZZIFY}, got {fuzzy['fuzzify']!r}")
        if not isinstance(fuzzy["fuzzy_reinit"], bool):
            raise ValueError(f"fuzzy_reinit must be true or false, got {fuzzy['fuzzy_reinit']!r}")
        r = fuzzy["act_refine"]
        if isinstance(r, bool) or not isinstance(r, int) or r < 0:
            raise ValueError(f"act_refine must be a non-negative integer, got {r!r}")
        wrapped = fz.FuzzyEnv(
            env, m, scale=s, fuzzify=fuzzy["fuzzify"], reinit=fuzzy["fuzzy_reinit"]
        )
        super().__init__(cfg, wrapped, env_params)
        self.base_env = env
        self.config = op.Config({**self.config.values, **fuzzy})

    def fuzzy_states(self, obs, key=None):
        """The fuzzy states ``act`` uses for entity observations ``obs[..., K, F]`` (module
        docstring) -> ``centres[..., m, F]``."""
        m, fenv = self.n_agents, self.env
        c = fz.first_centres(obs, m) if key is None else fz.init_centres(key, obs, m)
        for _ in range(self.config.act_refine):
            log_mu = fz.log_memberships(obs, c, fenv.scale)
            c = fz.fuzzify(fz.fuzzify_weights(log_mu, fenv.mode), obs)
        return c

    def act(self, params, obs, key=None):
        """The learned policy on the entities' observations ``obs[..., K, F]`` -> entity
        actions ``[..., K, ...]`` (deterministic; ``key``: random initial fuzzy states and the
        final exploration noise ``noise_end`` on the fuzzy actions)."""
        actor = params["actor"] if isinstance(params, dict) and "actor" in params else params
        obs = jnp.asarray(obs, jnp.float32)
        k_init = k_noise = None
        if key is not None:
            k_init, k_noise = jax.random.split(key)
        centres = self.fuzzy_states(obs, k_init)
        u = self.policy_u(actor, centres)
        if k_noise is not None:
            u = jnp.clip(u + self.config.noise_end * jax.random.normal(k_noise, u.shape), -1, 1)
        fuzzy_actions = spaces.unflatten(self.env.action_space, u)
        actions, _ = fz.fuzzy_actions_to_entities(
            centres, obs, fuzzy_actions, self.env.scale, self.env.mode
        )
        return actions

    def summary(self, rs) -> dict:
        return {**super().summary(rs), "n_fuzzy": self.n_agents, "entities": self.env.K}


def make_train(config: dict, env, env_params) -> FuzzyDDPGTrainer:
    """``FuzzyDDPGTrainer`` for ``env`` (``config``: keys of ``DEFAULT_CONFIG``)."""
    return FuzzyDDPGTrainer(dict(config), env, env_params)

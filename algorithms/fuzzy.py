"""Fuzzy agents: the fuzzy-logic layer of [XL-FUZZY] section IV-A (after Li, Shi, Hwang,
"Using fuzzy logic to learn abstract policies in large-scale multiagent reinforcement
learning", IEEE Trans. Fuzzy Systems 30(12), 2022), written once for any trainer.

``K`` entities (the environment's agents, e.g. the UEs) are represented by ``m`` fuzzy agents.
Fuzzy agent ``i`` has a fuzzy state ``shat_i[F]``, which is also the centre of its membership
function: the fuzzy set of dimension ``j`` is centred at ``xhat_j^i = shat_i[j]``. Only the
fuzzy agents act; the entities' actions, and the fuzzy agents' rewards and next states, are
weighted sums over the memberships. Notation of the functions below (leading batch axes ``...``
allowed everywhere): entity observations ``obs[..., K, F]``, fuzzy states
``centres[..., m, F]``.

* Membership ([XL-FUZZY] IV-A1): ``u(x) = exp(-|x - xhat_j^i| / (d_a m))`` per dimension and
  the mapping ``mu_k^i = prod_j u(x_j^k) = exp(-sum_j |x_j^k - xhat_j^i| / (d_a m))``
  (:func:`log_memberships` returns ``log mu``, ``[..., K, m]``). ``d_a`` is "the
  dimensionality of the action space" (the per-entity flat action size), so the scale is
  ``d_a m`` (:func:`default_scale`; any positive ``scale`` may be given). The paper's product
  is written ``prod_{i=j}^{d_a}``, but ``x_j`` is a dimension of the observation, so the
  product runs over the ``F`` observation dimensions.
* Normalised mappings: the paper uses one symbol, ``mubar_k^i``, for two sums that need
  different normalisations.
  - Defuzzification (IV-A2, Algorithm 1 line 4), ``a_k = sum_i mubar_k^i ahat_i``: ``mubar``
    is normalised over the fuzzy agents, ``mubar_k^i = mu_k^i / sum_i' mu_k^i'``
    (:func:`defuzzify_weights`; each row sums to 1), so ``a_k`` is a convex combination of the
    fuzzy actions and stays inside a box action space.
  - Fuzzification (IV-A3/4, lines 6 and 8), ``rhat_i = sum_k w_k^i r_k`` and
    ``shat_i,t+1 = sum_k w_k^i s_k,t+1``: ``fuzzify="mean"`` (default) normalises over the
    entities, ``w_k^i = mu_k^i / sum_k' mu_k'^i`` (:func:`fuzzify_weights`; each column sums
    to 1), so a fuzzy reward is the membership-weighted mean of its entities' rewards and the
    next fuzzy state the weighted mean of their next observations: the centre moves to the
    soft centroid of its members (a fuzzy c-means step), inside the observation range.
    ``fuzzify="sum"`` uses the defuzzification weights ``mubar`` as printed; then
    ``shat_i`` and ``rhat_i`` scale with fuzzy agent ``i``'s total share ``sum_k mubar_k^i``
    (anywhere in ``(0, K)``, changing from step to step), which drifts the fuzzy states out of
    the observation range when they are carried.
  Both are computed in the log domain (softmax), so far-away entities underflow to weight 0
  instead of giving ``0 / 0``.
* Membership update (Algorithm 1 line 9, "update the membership function with
  ``u_{xhat_j,t+1^i}(xhat_j,t+1^k)``"): the membership functions are re-centred at the new
  fuzzy states, ``xhat_j,t+1^i = shat_i,t+1[j]``, and the mappings of step ``t + 1`` are
  ``mu_k,t+1^i = prod_j u_{xhat_j,t+1^i}(x_j,t+1^k)``, evaluated at the entities' next
  observations (the printed argument ``xhat^k`` is read as ``x^k``, entity ``k``'s
  observation: ``k`` indexes entities, and line 4 of the next step needs the ``K x m``
  mappings). So the state of the layer is the fuzzy states ``centres[m, F]`` alone;
  :func:`fuzzy_actions_to_entities` computes the mappings from them and the current
  observations, :func:`fuzzify_outcome` gives ``rhat_t`` and ``shat_t+1`` (the next
  centres).
* Initialisation (Algorithm 1 line 1): the fuzzy states are ``m`` entity observations sampled
  at random (:func:`init_centres`: without replacement when ``m <= K``).

:class:`FuzzyEnv` wraps a ``MultiAgentEnv`` so that the fuzzy agents are its agents (``m``
agents observing their fuzzy states, acting in the entities' action space, receiving fuzzy
rewards), with the fuzzy states carried in the environment state; any trainer then trains the
fuzzy agents unchanged (``algorithms.fuzzy_ddpg``: FL-CTCE and FL-CTDE).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp

from cfmimo_jax.envs import spaces as S
from cfmimo_jax.envs.base import MultiAgentEnv

FUZZIFY = ("mean", "sum")

__all__ = [
    "FUZZIFY",
    "FuzzyEnv",
    "FuzzyEnvState",
    "Mappings",
    "default_scale",
    "defuzzify",
    "defuzzify_weights",
    "first_centres",
    "fuzzify",
    "fuzzify_outcome",
    "fuzzify_weights",
    "fuzzy_actions_to_entities",
    "init_centres",
    "log_memberships",
    "memberships",
]


# ---- the layer (pure functions) ------------------------------------------------------------


def default_scale(action_dim: int, n_fuzzy: int) -> float:
    """The membership scale of [XL-FUZZY] IV-A1, ``d_a m``."""
    return float(action_dim * n_fuzzy)


def log_memberships(obs, centres, scale):
    """``log mu_k^i = -sum_j |obs[..., k, j] - centres[..., i, j]| / scale`` -> ``[..., K, m]``."""
    d = jnp.abs(obs[..., :, None, :] - centres[..., None, :, :])  # [..., K, m, F]
    return -jnp.sum(d, axis=-1) / scale


def memberships(obs, centres, scale):
    """The mappings ``mu_k^i = prod_j exp(-|x_j^k - xhat_j^i| / scale)``, ``[..., K, m]``."""
    return jnp.exp(log_memberships(obs, centres, scale))


def defuzzify_weights(log_mu):
    """``mubar_k^i = mu_k^i / sum_i' mu_k^i'`` (rows, over the fuzzy agents, sum to 1)."""
    return jax.nn.softmax(log_mu, axis=-1)


def fuzzify_weights(log_mu, mode: str = "mean"):
    """Weights of the fuzzification, ``[..., K, m]``: ``"mean"``, ``mu_k^i / sum_k' mu_k'^i``
    (columns, over the entities, sum to 1); ``"sum"``, the defuzzification weights ``mubar``."""
    if mode == "mean":
        return jax.nn.softmax(log_mu, axis=-2)
    if mode == "sum":
        return defuzzify_weights(log_mu)
    raise ValueError(f"fuzzify must be one of {FUZZIFY}, got {mode!r}")


def defuzzify(mubar, fuzzy_actions):
    """``a_k = sum_i mubar_k^i ahat_i``: ``mubar[..., K, m]``, ``fuzzy_actions`` a pytree of
    ``[..., m, *shape]`` leaves -> the same pytree of ``[..., K, *shape]`` leaves."""

    def one(a):
        a = jnp.asarray(a)
        lead = mubar.ndim - 2
        flat = a.reshape(a.shape[: lead + 1] + (-1,))
        out = jnp.einsum("...km,...mf->...kf", mubar.astype(flat.dtype), flat)
        return out.reshape(out.shape[:-1] + a.shape[lead + 1 :]).astype(a.dtype)

    return jax.tree.map(one, fuzzy_actions)


def fuzzify(weights, x):
    """``xhat_i = sum_k w_k^i x_k``: ``weights[..., K, m]``, ``x[..., K, *shape]`` (rewards
    ``[..., K]``, observations ``[..., K, F]``) -> ``[..., m, *shape]``."""
    lead = weights.ndim - 2
    flat = x.reshape(x.shape[: lead + 1] + (-1,))
    out = jnp.einsum("...km,...kf->...mf", weights.astype(flat.dtype), flat)
    return out.reshape(out.shape[:-1] + x.shape[lead + 1 :])


def init_centres(key, obs, n_fuzzy: int):
    """Algorithm 1 line 1: ``n_fuzzy`` of the ``K`` entity observations ``obs[..., K, F]``
    sampled at random (without replacement when ``n_fuzzy <= K``, independently per leading
    index) -> ``[..., m, F]``."""
    K = obs.shape[-2]
    lead = obs.shape[:-2]
    if n_fuzzy <= K:
        idx = jnp.argsort(jax.random.uniform(key, lead + (K,)), axis=-1)[..., :n_fuzzy]
    else:
        idx = jax.random.randint(key, lead + (n_fuzzy,), 0, K)
    return jnp.take_along_axis(obs, idx[..., None], axis=-2)


def first_centres(obs, n_fuzzy: int):
    """Deterministic initial fuzzy states: the observations of entities ``0, 1, ..., m - 1``
    (cyclically when ``m > K``), ``[..., m, F]``. For exchangeable entities (e.g. UEs dropped
    i.i.d.) these are distributed as :func:`init_centres`'s sample."""
    idx = jnp.arange(n_fuzzy) % obs.shape[-2]
    return jnp.take(obs, idx, axis=-2)


@functools.partial(jax.tree_util.register_dataclass)
@dataclasses.dataclass(frozen=True)
class Mappings:
    """The mappings of one step, ``[..., K, m]``: ``log_mu`` (``log mu_k^i``), ``mubar``
    (defuzzification weights) and ``w`` (fuzzification weights)."""

    log_mu: jax.Array
    mubar: jax.Array
    w: jax.Array


def fuzzy_actions_to_entities(centres, obs, fuzzy_actions, scale, mode: str = "mean"):
    """Algorithm 1 line 4: the mappings of the fuzzy states ``centres[..., m, F]`` to the
    entities' observations ``obs[..., K, F]`` and the defuzzified entity actions
    ``a_k = sum_i mubar_k^i ahat_i`` -> ``(actions, Mappings)``."""
    log_mu = log_memberships(obs, centres.astype(obs.dtype), scale)
    maps = Mappings(log_mu, defuzzify_weights(log_mu), fuzzify_weights(log_mu, mode))
    return defuzzify(maps.mubar, fuzzy_actions), maps


def fuzzify_outcome(maps: Mappings, reward, next_obs):
    """Algorithm 1 lines 6, 8 and 9: the fuzzy rewards ``rhat_i = sum_k w_k^i r_k`` (``reward
    [..., K]`` -> ``[..., m]``) and the next fuzzy states ``shat_i,t+1 = sum_k w_k^i s_k,t+1``
    (``next_obs[..., K, F]`` -> ``[..., m, F]``), which are the centres of the membership
    functions from now on (line 9) -> ``(rhat, shat_next)``."""
    return fuzzify(maps.w, reward), fuzzify(maps.w, next_obs)


# ---- the environment wrapper ---------------------------------------------------------------


@functools.partial(jax.tree_util.register_dataclass)
@dataclasses.dataclass(frozen=True)
class FuzzyEnvState:
    """``inner``: the wrapped environment's state; ``obs[K, F]``: the entities' current
    observations; ``centres[m, F]``: the fuzzy states (the membership centres)."""

    inner: Any
    obs: jax.Array
    centres: jax.Array


class FuzzyEnv(MultiAgentEnv):
    """``env`` seen through ``n_fuzzy`` fuzzy agents (module docstring).

    Agents: the ``m`` fuzzy agents; observation of fuzzy agent ``i``: its fuzzy state
    ``shat_i`` (the entities' observation space); action: a fuzzy action ``ahat_i`` in the
    entities' action space (bounded ``Box`` leaves, so the defuzzified actions stay inside);
    reward: the fuzzy reward ``rhat_i``. A step (Algorithm 1 lines 3-9): the mappings of the
    current fuzzy states to the entities' observations, the defuzzified entity actions, one
    step of ``env`` (with its auto-reset), the fuzzy rewards, the next fuzzy states.

    Episode ends: ``info["final_obs"]`` is the fuzzification of ``env``'s final observations
    (the ``shat_t+1`` of the stored transition). The fuzzy states carried on are the
    fuzzification of the observations ``env`` continues with (after a reset: of the new
    episode's first observations) when ``reinit=False`` (Algorithm 1 read literally: line 1
    runs once), or, when ``reinit=True`` (default), new random samples of the new episode's
    entity observations (line 1 at every episode: the entities the old fuzzy states summarised
    are gone, e.g. a new drop of UEs). ``global_state_space`` is ``None``: centralised critics
    see the joint fuzzy state, the ``Q(shat, ahat)`` of [XL-FUZZY] eqs. (10)-(13).
    ``info`` carries ``env``'s metrics and ``fuzzy_entropy``, the mean entropy (nats) of the
    entities' defuzzification weights (0: each entity follows one fuzzy agent; ``log m``:
    uniform).
    """

    def __init__(
        self, env, n_fuzzy: int, scale: float | None = None, fuzzify: str = "mean", reinit=True
    ):
        if isinstance(n_fuzzy, bool) or not isinstance(n_fuzzy, int) or n_fuzzy < 1:
            raise ValueError(f"n_fuzzy must be a positive integer, got {n_fuzzy!r}")
        obs_space = env.observation_space
        if not isinstance(obs_space, S.Box) or len(obs_space.shape) != 1:
            raise ValueError(
                f"fuzzy agents need a flat Box observation per entity, got {obs_space}"
            )
        for s in S.leaves(env.action_space):
            if not isinstance(s, S.Box) or not s.bounded:
                raise ValueError(f"fuzzy agents need bounded Box action spaces, got {s}")
        if fuzzify not in FUZZIFY:
            raise ValueError(f"fuzzify must be one of {FUZZIFY}, got {fuzzify!r}")
        if not isinstance(reinit, bool):
            raise ValueError(f"reinit must be true or false, got {reinit!r}")
        self.inner = env
        self.K = int(env.n_agents)
        self.n_agents = n_fuzzy
        self.observation_space = obs_space
        self.action_space = env.action_space
        self.global_state_space = None
        self.action_dim = S.flat_dim(env.action_space)
        if scale is None:
            scale = default_scale(self.action_dim, n_fuzzy)
        if isinstance(scale, bool) or not isinstance(scale, int | float) or not scale > 0:
            raise ValueError(f"scale must be a positive number, got {scale!r}")
        self.scale = float(scale)
        self.mode = fuzzify
        self.reinit = reinit
        self.eval_metrics = tuple(getattr(env, "eval_metrics", ()))
        self.progress_metrics = tuple(getattr(env, "progress_metrics", ()))

    def default_params(self, **overrides):
        return self.inner.default_params(**overrides)

    def reset_env(self, key, params):
        k_env, k_init = jax.random.split(key)
        obs, state = self.inner.reset_env(k_env, params)
        centres = init_centres(k_init, obs, self.n_agents)
        return centres, FuzzyEnvState(state, obs, centres)

    def entity_actions(self, state: FuzzyEnvState, fuzzy_actions):
        """The defuzzified entity actions of ``fuzzy_actions`` in ``state`` and the mappings
        (leading batch axes allowed)."""
        return fuzzy_actions_to_entities(
            state.centres, state.obs, fuzzy_actions, self.scale, self.mode
        )

    def _outcome(self, k_init, maps, obs2, inner2, reward, done, info, batched: bool):
        rhat, final_centres = fuzzify_outcome(maps, reward, info["final_obs"])
        carried = fuzzify(maps.w, obs2)
        if self.reinit:
            init = jax.vmap(init_centres, (0, 0, None)) if batched else init_centres
            fresh = init(k_init, obs2, self.n_agents)
            d = done.reshape(done.shape + (1, 1))
            carried = jnp.where(d, fresh.astype(carried.dtype), carried)
        drop = ("final_obs", "final_global_state", "terminated", "truncated")
        out = {k: v for k, v in info.items() if k not in drop}
        entropy = -jnp.sum(maps.mubar * jnp.log(jnp.maximum(maps.mubar, 1e-30)), axis=-1)
        out["fuzzy_entropy"] = jnp.mean(entropy, axis=-1)
        out.update(
            final_obs=final_centres, terminated=info["terminated"], truncated=info["truncated"]
        )
        state = FuzzyEnvState(inner2, obs2, carried)
        return carried, state, rhat, done, out

    def step(self, key, state, actions, params=None):
        """One step of the fuzzy agents (class docstring): ``-> (fuzzy obs[m, F], state,
        rhat[m], done, info)``."""
        params = self.default_params() if params is None else params
        actions = jax.tree.map(jnp.asarray, actions)
        S.check_actions(self.action_space, actions, self.n_agents)
        k_env, k_init = jax.random.split(key)
        a, maps = self.entity_actions(state, actions)
        obs2, inner2, reward, done, info = self.inner.step(k_env, state.inner, a, params)
        return self._outcome(k_init, maps, obs2, inner2, reward, done, info, batched=False)

    def step_batch(self, keys, states, actions, params=None):
        """``step`` over a leading environment axis (``env.step_batch`` inside)."""
        params = self.default_params() if params is None else params
        actions = jax.tree.map(jnp.asarray, actions)
        S.check_actions(self.action_space, actions, self.n_agents, batch_ndim=1)
        split = jax.vmap(jax.random.split)(keys)
        a, maps = self.entity_actions(states, actions)
        obs2, inner2, reward, done, info = self.inner.step_batch(
            split[:, 0], states.inner, a, params
        )
        return self._outcome(split[:, 1], maps, obs2, inner2, reward, done, info, batched=True)

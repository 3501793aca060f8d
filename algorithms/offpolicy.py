"""The off-policy engine shared by DDPG, MADDPG and double DQN.

Written once here: the runner state (networks, optimiser states, ring replay buffer,
environments, PRNG key, counters), the environment-stepping loop, exploration schedules,
target-network updates, the optimiser with gradient-norm clipping, per-agent networks (shared
parameters with a one-hot agent id, or one parameter set per agent stacked along a leading axis
and applied with ``jax.vmap``) and the metrics. A trainer module supplies four hooks:
``init_learner(key) -> (params, opt_state)``, ``explore(params, obs, state, key, step) ->
(env_actions, stored_actions, metrics)``, ``learn(params, opt_state, batch, key, step) ->
(params, opt_state, metrics)`` and ``act(params, obs, key=None)``.

One update (``_iteration``) is ``n_steps`` vectorised environment steps inside ``lax.scan``:
act with exploration, ``env.step_batch`` over ``n_envs`` environments (auto-reset), append the
``n_envs`` transitions to the buffer (``next_obs`` is ``info["final_obs"]``, ``terminated`` cuts
the bootstrap, a truncation does not), then, once the buffer holds ``learning_starts``
transitions, ``gradient_steps`` gradient steps on uniform minibatches. ``update`` scans
``updates_per_chunk`` such iterations; ``train(key)`` scans all of them, one jittable function
of the key (``jax.vmap(train)`` runs seeds in one program). Resuming a restored ``RunnerState``
(buffer included) gives bit-identical results to an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from . import engine, networks
from .replay import ReplayBuffer, Transition, replay_add, replay_init, replay_sample

# keys shared by every off-policy configuration (with defaults); trainers add their own
COMMON_DEFAULTS = {
    "n_envs": 16,  # parallel environments
    "n_steps": 10,  # vectorised environment steps per update
    "n_updates": 100,  # updates (each: n_steps environment steps and their gradient steps)
    "updates_per_chunk": 10,  # updates per jitted call (metrics, progress, checkpoints between)
    "buffer_size": 20000,  # replay capacity in transitions (one transition: all agents, one env)
    "batch_size": 128,  # transitions per gradient step
    "learning_starts": 500,  # transitions in the buffer before the first gradient step
    "gradient_steps": 1,  # gradient steps per vectorised environment step
    "gamma": 0.95,  # discount (0: a contextual bandit, the myopic target r)
    "tau": 0.01,  # soft target update rate (used when target_period = 0)
    "target_period": 0,  # > 0: hard target copy every target_period gradient steps
    "max_grad_norm": 10.0,  # global gradient-norm clipping
    "hidden": [64, 64],  # hidden layer widths of every network
    "shared_parameters": True,  # one network for all agents with a one-hot agent id
    "reward": "local",  # local: agent i learns r_i | team: every agent learns mean_i r_i
}


def check_common(cfg: dict) -> None:
    """Validate the shared keys (``ValueError`` naming the key)."""
    for name in (
        "n_envs",
        "n_steps",
        "n_updates",
        "updates_per_chunk",
        "buffer_size",
        "batch_size",
        "gradient_steps",
    ):
        v = cfg[name]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    for name in ("learning_starts", "target_period"):
        v = cfg[name]
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
    if cfg["n_updates"] % cfg["updates_per_chunk"]:
        raise ValueError(
            f"updates_per_chunk={cfg['updates_per_chunk']} must divide n_updates={cfg['n_updates']}"
        )
    if cfg["n_envs"] > cfg["buffer_size"]:
        raise ValueError(
            f"buffer_size={cfg['buffer_size']} must hold one step of n_envs={cfg['n_envs']}"
        )
    if not 0.0 <= cfg["gamma"] <= 1.0:
        raise ValueError(f"gamma must lie in [0, 1], got {cfg['gamma']}")
    if not 0.0 < cfg["tau"] <= 1.0:
        raise ValueError(f"tau must lie in (0, 1], got {cfg['tau']}")
    if not cfg["max_grad_norm"] > 0:
        raise ValueError(f"max_grad_norm must be positive, got {cfg['max_grad_norm']}")
    h = cfg["hidden"]
    if isinstance(h, int) and not isinstance(h, bool):
        cfg["hidden"] = [h]
    elif not (isinstance(h, list | tuple) and all(isinstance(x, int) and x >= 1 for x in h)):
        raise ValueError(f"hidden must be a list of positive layer widths, got {h!r}")
    if cfg["reward"] not in ("local", "team"):
        raise ValueError(f"reward must be 'local' or 'team', got {cfg['reward']!r}")
    if not isinstance(cfg["shared_parameters"], bool):
        raise ValueError(f"shared_parameters must be true or false, got {cfg['shared_parameters']}")


def check_keys(cfg: dict, defaults: dict, name: str) -> dict:
    """``defaults`` updated with ``cfg``; unknown keys raise ``ValueError``."""
    unknown = sorted(set(cfg) - set(defaults))
    if unknown:
        raise ValueError(f"unknown {name} trainer option(s) {unknown}")
    out = {**defaults, **cfg}
    out["hidden"] = (
        list(out["hidden"]) if isinstance(out["hidden"], list | tuple) else out["hidden"]
    )
    return out


# ---- schedules, targets, optimiser ---------------------------------------------------------


def linear_schedule(start: float, end: float, steps: int):
    """``t -> start + (end - start) min(t / steps, 1)`` (``steps = 0``: ``end`` at once)."""

    def fn(t):
        frac = jnp.clip(jnp.asarray(t, jnp.float32) / max(steps, 1), 0.0, 1.0)
        return jnp.where(steps > 0, start + (end - start) * frac, end)

    return fn


def target_update(target, online, grad_step, tau: float, period: int):
    """Polyak averaging ``target <- (1 - tau) target + tau online`` (``period = 0``), or a hard
    copy ``target <- online`` whenever ``grad_step`` is a multiple of ``period`` (``period > 0``;
    ``grad_step`` counts the gradient steps done, this one included)."""
    if period > 0:
        copy = (grad_step % period) == 0
        return jax.tree.map(lambda t, o: jnp.where(copy, o, t), target, online)
    return jax.tree.map(lambda t, o: (1.0 - tau) * t + tau * o, target, online)


def optimizer(lr: float, max_grad_norm: float):
    """Adam after global gradient-norm clipping."""
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), optax.adam(lr))


# ---- per-agent networks ---------------------------------------------------------------------


class AgentMLP:
    """An MLP applied per agent: ``x[..., A, in] -> y[..., A, out]``.

    ``shared=True``: one parameter set; the input is extended with the agent's one-hot id
    (``in + A`` features). ``shared=False``: ``A`` parameter sets stacked along a leading axis
    (a pytree of ``[A, ...]`` arrays, never a Python list of modules), applied with ``jax.vmap``
    over the agent axis. ``n_agents=None`` is a single network (no agent axis handling).
    """

    def __init__(
        self,
        in_features: int,
        hidden,
        out_features: int,
        n_agents: int | None,
        shared: bool = True,
        out_scale: float = 1.0,
    ):
        self.n_agents = n_agents
        self.shared = shared or n_agents is None
        extra = n_agents if (n_agents is not None and self.shared) else 0
        self.kw = dict(
            in_features=in_features + extra,
            hidden=tuple(hidden),
            out_features=out_features,
            out_scale=out_scale,
        )
        self.graphdef, _ = nnx.split(networks.MLP(**self.kw, rngs=nnx.Rngs(0)))

    def _one(self, key):
        key = (
            key if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else jax.random.wrap_key_data(key)
        )
        return nnx.split(networks.MLP(**self.kw, rngs=nnx.Rngs(params=key)))[1]

    def init(self, key):
        if self.shared:
            return self._one(key)
        return jax.vmap(self._one)(jax.random.split(key, self.n_agents))

    def apply(self, params, x, dropout_rate: float = 0.0, dropout_key=None):
        def run(p, x, k):
            return nnx.merge(self.graphdef, p)(x, dropout_rate=dropout_rate, dropout_key=k)

        if self.n_agents is None:
            return run(params, x, dropout_key)
        A = self.n_agents
        if self.shared:
            ids = jnp.broadcast_to(jnp.eye(A, dtype=x.dtype), x.shape[:-1] + (A,))
            return run(params, jnp.concatenate([x, ids], -1), dropout_key)
        xa = jnp.moveaxis(x, -2, 0)  # [A, ..., in]
        keys = None if dropout_key is None else jax.random.split(dropout_key, A)
        out = jax.vmap(run, in_axes=(0, 0, None if keys is None else 0))(params, xa, keys)
        return jnp.moveaxis(out, 0, -2)


# ---- the loop -------------------------------------------------------------------------------


@functools.partial(jax.tree_util.register_dataclass)
@dataclasses.dataclass(frozen=True)
class RunnerState:
    """Everything a resume needs: ``params`` (online and target networks), ``opt_state``,
    ``buffer`` (the ring replay buffer), the environments, the raw PRNG ``key``, ``update``
    (updates done), ``env_step`` (vectorised environment steps done), ``grad_step`` (gradient
    steps done) and ``ep_return[n_envs]`` (running episode sums of the mean reward)."""

    params: Any
    opt_state: Any
    buffer: ReplayBuffer
    env_state: Any
    obs: jax.Array
    key: jax.Array
    update: jax.Array
    env_step: jax.Array
    grad_step: jax.Array
    ep_return: jax.Array


def raw_key(key):
    key = jnp.asarray(key) if not hasattr(key, "dtype") else key
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(key)
    return key


@dataclasses.dataclass(frozen=True)
class Config:
    """A validated configuration: the attributes of a dict (``n_envs``, ``n_updates``, ...)."""

    values: dict

    def __getattr__(self, name):
        try:
            return self.values[name]
        except KeyError as err:
            raise AttributeError(name) from err


class OffPolicyTrainer:
    """Base of the off-policy trainers (module docstring); subclasses define the hooks."""

    def __init__(self, cfg: dict, env, env_params):
        self.config = Config(cfg)
        self.env = env
        self.env_params = env_params
        self.n_agents = int(env.n_agents)
        self.uses_global_state = env.global_state_space is not None

    # ---- hooks ----------------------------------------------------------------------------

    def init_learner(self, key):
        raise NotImplementedError

    def explore(self, params, obs, key, env_step):
        raise NotImplementedError

    def learn(self, params, opt_state, batch: Transition, key, grad_step):
        raise NotImplementedError

    def act(self, params, obs, key=None):
        raise NotImplementedError

    def stored_action_example(self):
        """One stored action (no leading axes) for the buffer layout."""
        raise NotImplementedError

    # ---- shared ---------------------------------------------------------------------------

    def critic_state(self, obs, env_state):
        """The centralised critic's input for a batch of environments: the global state when the
        environment defines one, else ``None`` (the critic then flattens the joint
        observation)."""
        if self.uses_global_state:
            return jax.vmap(self.env.global_state)(env_state).astype(jnp.float32)
        return None  # (not an empty array: Orbax cannot save zero-size arrays)

    def joint_input(self, obs, state):
        """``[..., F]``: the global state, or the joint observation flattened."""
        if self.uses_global_state:
            return state.reshape(
                state.shape[: state.ndim - len(self.env.global_state_space.shape)] + (-1,)
            )
        lead = obs.shape[: obs.ndim - 1 - len(self.env.obs_shape)]
        return obs.reshape(lead + (-1,))

    def joint_features(self) -> int:
        if self.uses_global_state:
            return int(np.prod(self.env.global_state_space.shape))
        return self.n_agents * int(np.prod(self.env.obs_shape))

    def signal(self, reward):
        """The reward each agent learns: its own, or the team mean (``reward: team``)."""
        if self.config.reward == "team":
            return jnp.broadcast_to(jnp.mean(reward, -1, keepdims=True), reward.shape)
        return reward

    def _example(self):
        obs_shape = (self.n_agents,) + tuple(self.env.obs_shape)
        gs = tuple(self.env.global_state_space.shape) if self.uses_global_state else None
        return Transition(
            obs=jnp.zeros(obs_shape, jnp.float32),
            action=self.stored_action_example(),
            reward=jnp.zeros((self.n_agents,), jnp.float32),
            next_obs=jnp.zeros(obs_shape, jnp.float32),
            terminated=jnp.bool_(False),
            state=None if gs is None else jnp.zeros(gs, jnp.float32),
            next_state=None if gs is None else jnp.zeros(gs, jnp.float32),
        )

    def init(self, key) -> RunnerState:
        """A fresh ``RunnerState`` from a PRNG key (typed or raw)."""
        key = raw_key(key)
        key, k_net, k_env = jax.random.split(key, 3)
        params, opt_state = self.init_learner(k_net)
        c = self.config
        obs, env_state = jax.vmap(self.env.reset, (0, None))(
            jax.random.split(k_env, c.n_envs), self.env_params
        )
        return RunnerState(
            params=params,
            opt_state=opt_state,
            buffer=replay_init(self._example(), c.buffer_size),
            env_state=env_state,
            obs=obs.astype(jnp.float32),
            key=key,
            update=jnp.int32(0),
            env_step=jnp.int32(0),
            grad_step=jnp.int32(0),
            ep_return=jnp.zeros((c.n_envs,), jnp.float32),
        )

    def init_with_metrics(self, key):
        """``(init(key), {})``: no pre-training."""
        return self.init(key), {}

    def _learn_steps(self, params, opt_state, buffer, key, grad_step):
        c = self.config

        def one(carry, k):
            params, opt_state, g = carry
            k_s, k_l = jax.random.split(k)
            batch = replay_sample(buffer, k_s, c.batch_size)
            params, opt_state, m = self.learn(params, opt_state, batch, k_l, g + 1)
            return (params, opt_state, g + 1), m

        (params, opt_state, grad_step), m = jax.lax.scan(
            one, (params, opt_state, grad_step), jax.random.split(key, c.gradient_steps)
        )
        return params, opt_state, grad_step, jax.tree.map(jnp.mean, m)

    def _iteration(self, rs: RunnerState, _):
        c = self.config
        env = self.env

        def step(carry, key):
            params, opt_state, buffer, env_state, obs, ep_ret, env_step, grad_step = carry
            k_act, k_env, k_learn = jax.random.split(key, 3)
            state_in = self.critic_state(obs, env_state)
            env_action, stored, explore_m = self.explore(params, obs, k_act, env_step)
            obs2, env_state2, reward, done, info = env.step_batch(
                jax.random.split(k_env, c.n_envs), env_state, env_action, self.env_params
            )
            reward = reward.astype(jnp.float32)
            next_state = (
                info["final_global_state"].astype(jnp.float32) if self.uses_global_state else None
            )
            tr = Transition(
                obs=obs,
                action=stored,
                reward=reward,
                next_obs=info["final_obs"].astype(jnp.float32),
                terminated=info["terminated"],
                state=state_in,
                next_state=next_state,
            )
            buffer = replay_add(buffer, tr)
            ready = buffer.size >= max(c.learning_starts, 1)
            m_shape = jax.eval_shape(
                lambda: self._learn_steps(params, opt_state, buffer, k_learn, grad_step)[3]
            )

            def skip(_):
                zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), m_shape)
                return params, opt_state, grad_step, zeros

            params, opt_state, grad_step, learn_m = jax.lax.cond(
                ready,
                lambda _: self._learn_steps(params, opt_state, buffer, k_learn, grad_step),
                skip,
                None,
            )
            ep_ret = ep_ret + jnp.mean(reward, -1)
            env_m = {
                k: jnp.mean(v.astype(jnp.float32))
                for k, v in info.items()
                if k not in ("final_obs", "final_global_state", "terminated", "truncated")
                and v.shape == (c.n_envs,)
            }
            out = dict(
                learn_m,
                **explore_m,
                **env_m,
                reward=jnp.mean(reward),
                learning=ready.astype(jnp.float32),
                ep_sum=jnp.sum(jnp.where(done, ep_ret, 0.0)),
                ep_n=jnp.sum(done).astype(jnp.float32),
            )
            ep_ret = jnp.where(done, 0.0, ep_ret)
            carry = (
                params,
                opt_state,
                buffer,
                env_state2,
                obs2.astype(jnp.float32),
                ep_ret,
                env_step + 1,
                grad_step,
            )
            return carry, out

        key, k_roll = jax.random.split(rs.key)
        carry = (
            rs.params,
            rs.opt_state,
            rs.buffer,
            rs.env_state,
            rs.obs,
            rs.ep_return,
            rs.env_step,
            rs.grad_step,
        )
        carry, traj = jax.lax.scan(step, carry, jax.random.split(k_roll, c.n_steps))
        params, opt_state, buffer, env_state, obs, ep_ret, env_step, grad_step = carry
        n_ep = jnp.sum(traj.pop("ep_n"))
        ep_sum = jnp.sum(traj.pop("ep_sum"))
        metrics = {k: jnp.mean(v) for k, v in traj.items()}
        metrics["episodes"] = n_ep
        metrics["episode_return"] = ep_sum / jnp.maximum(n_ep, 1.0)
        metrics["buffer_size"] = buffer.size.astype(jnp.float32)
        rs = RunnerState(
            params=params,
            opt_state=opt_state,
            buffer=buffer,
            env_state=env_state,
            obs=obs,
            key=key,
            update=rs.update + 1,
            env_step=env_step,
            grad_step=grad_step,
            ep_return=ep_ret,
        )
        return rs, metrics

    def update(self, rs: RunnerState):
        """``updates_per_chunk`` updates: ``-> (state, metrics)``, metrics ``[chunk]`` each."""
        return engine.update_chunk(self._iteration, rs, self.config.updates_per_chunk)

    def train(self, key):
        """All ``n_updates`` updates from ``key``: ``-> (state, metrics[n_updates])``; one
        jittable function of the key (``jax.vmap`` it over seeds)."""
        n_chunks = self.config.n_updates // self.config.updates_per_chunk
        return engine.train_all(self.init(key), self.update, n_chunks)

    def summary(self, rs: RunnerState) -> dict:
        return {
            "gradient_steps": int(rs.grad_step),
            "replay_size": int(rs.buffer.size),
        }

"""Independent double DQN on the off-policy engine (``algorithms.offpolicy``).

Every agent has a ``Discrete`` action space and learns its own action values ``Q_i(o_i, .)``
from its own observation and reward (independent learners; Tan 1993), with the double-DQN
target of van Hasselt, Guez, Silver 2016 ("Deep reinforcement learning with double
Q-learning", eq. (4))::

    a*_i = argmax_a Q_i(o'_i, a; theta)                  (online network chooses)
    y_i  = r_i + gamma (1 - terminated) Q_i(o'_i, a*_i; theta^-)   (target network evaluates)

and the loss ``mean_i (Q_i(o_i, a_i; theta) - y_i)^2`` (or Huber, ``loss: huber``) on uniform
minibatches of the ring replay buffer (Mnih et al. 2015, "Human-level control through deep
reinforcement learning"). Exploration: epsilon-greedy with epsilon decaying linearly from
``eps_start`` to ``eps_end`` over ``eps_decay_steps`` vectorised environment steps. Targets:
hard copies every ``target_period`` gradient steps (``> 0``) or Polyak averaging with ``tau``.
Dropout of rate ``dropout`` after every hidden layer while learning (the AP-cooperation paper's
128-64-32 network with dropout 0.1), none when acting. ``shared_parameters``: one network
with a one-hot agent id, else one parameter set per agent stacked along a leading axis.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from cfmimo_jax.envs import spaces

from . import offpolicy as op

DEFAULT_CONFIG = {
    **op.COMMON_DEFAULTS,
    "target_period": 100,  # hard target copies every 100 gradient steps (0: soft, tau)
    "lr": 0.001,
    "eps_start": 1.0,
    "eps_end": 0.05,
    "eps_decay_steps": 500,  # vectorised environment steps of the linear decay
    "dropout": 0.0,  # dropout rate after every hidden layer while learning
    "loss": "mse",  # mse | huber
    "double": True,  # false: the plain DQN target max_a Q(o', a; theta^-)
}


class DQNTrainer(op.OffPolicyTrainer):
    """Independent (double) DQN (module docstring)."""

    def __init__(self, cfg: dict, env, env_params):
        cfg = op.check_keys(cfg, DEFAULT_CONFIG, "ddqn")
        op.check_common(cfg)
        if not cfg["lr"] > 0:
            raise ValueError(f"lr must be positive, got {cfg['lr']}")
        for name in ("eps_start", "eps_end"):
            if not 0.0 <= cfg[name] <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {cfg[name]}")
        d = cfg["eps_decay_steps"]
        if isinstance(d, bool) or not isinstance(d, int) or d < 0:
            raise ValueError(f"eps_decay_steps must be a non-negative integer, got {d!r}")
        if not 0.0 <= cfg["dropout"] < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {cfg['dropout']}")
        if cfg["loss"] not in ("mse", "huber"):
            raise ValueError(f"loss must be 'mse' or 'huber', got {cfg['loss']!r}")
        if not isinstance(env.action_space, spaces.Discrete):
            raise ValueError(
                f"ddqn needs a Discrete per-agent action space, got {env.action_space} "
                "(use ddpg/maddpg for continuous actions)"
            )
        super().__init__(cfg, env, env_params)
        c = self.config
        self.n_actions = int(env.action_space.n)
        self.F = int(jnp.prod(jnp.array(env.obs_shape))) if env.obs_shape else 1
        self.q_net = op.AgentMLP(
            self.F, c.hidden, self.n_actions, self.n_agents, c.shared_parameters
        )
        self.eps = op.linear_schedule(c.eps_start, c.eps_end, c.eps_decay_steps)
        self.opt = op.optimizer(c.lr, c.max_grad_norm)

    def q_values(self, params, obs, dropout_key=None):
        """``obs[..., A, *obs_shape] -> Q[..., A, n_actions]``."""
        lead = obs.shape[: obs.ndim - 1 - len(self.env.obs_shape)]
        x = obs.reshape(lead + (self.n_agents, self.F))
        rate = self.config.dropout if dropout_key is not None else 0.0
        return self.q_net.apply(params, x, dropout_rate=rate, dropout_key=dropout_key)

    def init_learner(self, key):
        q = self.q_net.init(key)
        return {"q": q, "q_target": q}, {"q": self.opt.init(q)}

    def stored_action_example(self):
        return jnp.zeros((self.n_agents,), jnp.int32)

    def explore(self, params, obs, key, env_step):
        k_e, k_a = jax.random.split(key)
        greedy = jnp.argmax(self.q_values(params["q"], obs), -1).astype(jnp.int32)
        eps = self.eps(env_step)
        rand = jax.random.randint(k_a, greedy.shape, 0, self.n_actions, jnp.int32)
        a = jnp.where(jax.random.uniform(k_e, greedy.shape) < eps, rand, greedy)
        return a, a, {"epsilon": eps}

    def learn(self, params, opt_state, batch, key, grad_step):
        c = self.config
        r = self.signal(batch.reward)
        q_next_t = self.q_values(params["q_target"], batch.next_obs)
        if c.double:
            a_star = jnp.argmax(self.q_values(params["q"], batch.next_obs), -1)
            q_next = jnp.take_along_axis(q_next_t, a_star[..., None], -1)[..., 0]
        else:
            q_next = jnp.max(q_next_t, -1)
        not_term = 1.0 - batch.terminated.astype(jnp.float32)[..., None]
        y = jax.lax.stop_gradient(r + c.gamma * not_term * q_next)

        def loss_fn(p):
            q = self.q_values(p, batch.obs, dropout_key=key if c.dropout > 0 else None)
            q_a = jnp.take_along_axis(q, batch.action[..., None].astype(jnp.int32), -1)[..., 0]
            td = q_a - y
            if c.loss == "huber":
                return jnp.mean(optax.huber_loss(q_a, y)), q_a
            return jnp.mean(td**2), q_a

        (loss, q_a), g = jax.value_and_grad(loss_fn, has_aux=True)(params["q"])
        upd, os_q = self.opt.update(g, opt_state["q"], params["q"])
        q = optax.apply_updates(params["q"], upd)
        target = op.target_update(params["q_target"], q, grad_step, c.tau, c.target_period)
        return {"q": q, "q_target": target}, {"q": os_q}, {"td_loss": loss, "q": jnp.mean(q_a)}

    def act(self, params, obs, key=None):
        """Greedy actions ``obs[..., A, ...] -> a[..., A]`` int32 (with ``key``: epsilon-greedy
        at ``eps_end``)."""
        qp = params["q"] if isinstance(params, dict) and "q" in params else params
        greedy = jnp.argmax(self.q_values(qp, obs.astype(jnp.float32)), -1).astype(jnp.int32)
        if key is None:
            return greedy
        k_e, k_a = jax.random.split(key)
        rand = jax.random.randint(k_a, greedy.shape, 0, self.n_actions, jnp.int32)
        return jnp.where(jax.random.uniform(k_e, greedy.shape) < self.config.eps_end, rand, greedy)


def make_train(config: dict, env, env_params) -> DQNTrainer:
    """``DQNTrainer`` for ``env`` (``config``: keys of ``DEFAULT_CONFIG``)."""
    return DQNTrainer(dict(config), env, env_params)

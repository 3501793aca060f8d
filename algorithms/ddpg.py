"""DDPG and MADDPG on the off-policy engine (``algorithms.offpolicy``).

Continuous per-agent actions: every leaf of the environment's action space is a bounded
``Box``; the actors output ``u[..., A, D]`` in ``[-1, 1]`` (``tanh``), mapped to the bounds by
``cfmimo_jax.envs.spaces.unflatten`` (composite actions are flattened, ``D = flat_dim``), and
the buffer stores ``u``.

* ``centralised_actor=True`` (DDPG; Lillicrap et al. 2016, "Continuous control with deep
  reinforcement learning", Algorithm 1): one actor ``mu(o_1..o_A) -> u[A, D]`` over the joint
  observation and one critic ``Q(s, u_1..u_A)`` of the team reward ``mean_i r_i``.
* ``centralised_actor=False`` (MADDPG; Lowe et al. 2017, "Multi-agent actor-critic for mixed
  cooperative-competitive environments", Algorithm 1): decentralised actors
  ``mu_i(o_i) -> u_i`` and centralised critics ``Q_i(s, u_1..u_A)`` (CTDE); ``s`` is the
  environment's ``global_state`` or the joint observation. Critic targets
  ``y_i = r_i + gamma (1 - terminated) Q'_i(s', mu'_1(o'_1)..mu'_A(o'_A))``; the actor of agent
  ``i`` ascends ``Q_i(s, u_1..mu_i(o_i)..u_A)`` with the other agents' actions from the buffer
  (all ``A`` substitutions in one batched critic call). ``shared_parameters``: one actor and
  one critic with a one-hot agent id, else per-agent parameters stacked along a leading axis.
  ``critic_input="ego"``: critic ``i`` reads ``(s, o_i, u_i, u_1..u_A)``, its own observation
  and action in front of the joint ones, so a shared critic need not learn which slice of the
  joint action is its own from the id (agent ``i``'s own reward terms, e.g. a penalty on its
  own action, then sit at a fixed input position).

Exploration: Gaussian noise on ``u`` with a standard deviation decaying linearly from
``noise_start`` to ``noise_end`` over ``noise_decay_steps`` vectorised environment steps, after
``random_steps`` steps of uniform actions; ``u`` is clipped to ``[-1, 1]``. Targets: Polyak
(``tau``) or hard copies (``target_period``); critic loss: mean squared TD error.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from cfmimo_jax.envs import spaces

from . import offpolicy as op

DEFAULT_CONFIG = {
    **op.COMMON_DEFAULTS,
    "lr_actor": 0.001,
    "lr_critic": 0.001,
    "noise_start": 0.3,  # exploration std of u in [-1, 1]
    "noise_end": 0.05,
    "noise_decay_steps": 500,  # vectorised environment steps of the linear decay
    "random_steps": 20,  # first vectorised steps with uniform random actions
    "action_reg": 0.0,  # weight of mean(pre-tanh actor output^2) in the actor loss
    "centralised_actor": False,  # set by the preset: true = DDPG, false = MADDPG
    # MADDPG's critic input: "joint" = (s, u_1..u_A) (+ the agent id when shared), "ego" =
    # (s, o_i, u_i, u_1..u_A): agent i's own observation and action first
    "critic_input": "joint",
}


class DDPGTrainer(op.OffPolicyTrainer):
    """DDPG (``centralised_actor=True``) or MADDPG (module docstring)."""

    def __init__(self, cfg: dict, env, env_params):
        cfg = op.check_keys(cfg, DEFAULT_CONFIG, "ddpg/maddpg")
        op.check_common(cfg)
        for name in ("lr_actor", "lr_critic"):
            if not cfg[name] > 0:
                raise ValueError(f"{name} must be positive, got {cfg[name]}")
        for name in ("noise_start", "noise_end", "action_reg"):
            if not cfg[name] >= 0:
                raise ValueError(f"{name} must be >= 0, got {cfg[name]}")
        for name in ("noise_decay_steps", "random_steps"):
            if isinstance(cfg[name], bool) or not isinstance(cfg[name], int) or cfg[name] < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {cfg[name]!r}")
        if cfg["critic_input"] not in ("joint", "ego"):
            raise ValueError(f"critic_input must be 'joint' or 'ego', got {cfg['critic_input']!r}")
        if cfg["critic_input"] == "ego" and cfg["centralised_actor"]:
            raise ValueError("critic_input='ego' needs per-agent critics (centralised_actor=false)")
        for s in spaces.leaves(env.action_space):
            if not isinstance(s, spaces.Box) or not s.bounded:
                raise ValueError(
                    f"ddpg/maddpg need bounded Box action spaces, got {s} (use ddqn or a PPO "
                    "preset for discrete actions)"
                )
        super().__init__(cfg, env, env_params)
        c = self.config
        A = self.n_agents
        self.D = spaces.flat_dim(env.action_space)
        self.F = int(jnp.prod(jnp.array(env.obs_shape))) if env.obs_shape else 1
        self.S = self.joint_features()
        h = c.hidden
        if c.centralised_actor:
            self.actor = op.AgentMLP(A * self.F, h, A * self.D, None, out_scale=0.1)
            self.critic = op.AgentMLP(self.S + A * self.D, h, 1, None)
        else:
            self.actor = op.AgentMLP(self.F, h, self.D, A, c.shared_parameters, out_scale=0.1)
            ego = (self.F + self.D) if c.critic_input == "ego" else 0
            self.critic = op.AgentMLP(self.S + ego + A * self.D, h, 1, A, c.shared_parameters)
        self.noise = op.linear_schedule(c.noise_start, c.noise_end, c.noise_decay_steps)
        self.opt_actor = op.optimizer(c.lr_actor, c.max_grad_norm)
        self.opt_critic = op.optimizer(c.lr_critic, c.max_grad_norm)

    # ---- networks -------------------------------------------------------------------------

    def policy_pre(self, actor_params, obs):
        """``obs[..., A, *obs_shape] -> z[..., A, D]``, the actor's output before ``tanh``."""
        A = self.n_agents
        lead = obs.shape[: obs.ndim - 1 - len(self.env.obs_shape)]
        if self.config.centralised_actor:
            x = obs.reshape(lead + (A * self.F,))
            return self.actor.apply(actor_params, x).reshape(lead + (A, self.D))
        x = obs.reshape(lead + (A, self.F))
        return self.actor.apply(actor_params, x)

    def policy_u(self, actor_params, obs):
        """``obs[..., A, *obs_shape] -> u[..., A, D] = tanh(z)`` in ``[-1, 1]``."""
        return jnp.tanh(self.policy_pre(actor_params, obs))

    def q_values(self, critic_params, joint, u, obs=None):
        """``joint[..., S]``, ``u[..., A, D]`` -> ``Q[..., A]``: every agent's critic sees the
        same joint action (DDPG: one team value, broadcast over the agents); ``obs[..., A,
        ...]``: the agents' observations (read with ``critic_input="ego"``)."""
        A = self.n_agents
        lead = u.shape[:-2]
        flat = u.reshape(lead + (A * self.D,))
        if self.config.centralised_actor:
            x = jnp.concatenate([joint, flat], -1)
            return jnp.broadcast_to(self.critic.apply(critic_params, x), lead + (A,))
        return self.q_per_agent(
            critic_params,
            joint,
            jnp.broadcast_to(flat[..., None, :], lead + (A, A * self.D)),
            obs,
        )

    def q_per_agent(self, critic_params, joint, u_seen, obs=None):
        """``Q_i(s, u^(i))`` for every agent ``i`` at once: ``joint[..., S]``,
        ``u_seen[..., A, A D]`` (row ``i``: the joint action agent ``i``'s critic is evaluated
        at) -> ``[..., A]``. With ``critic_input="ego"`` the input of critic ``i`` is
        ``(s, o_i, u^(i)_i, u^(i))``: its own observation (``obs[..., A, ...]``) and its own
        entry of the joint action it is evaluated at, in front of the joint action."""
        A, D = self.n_agents, self.D
        lead = u_seen.shape[:-2]
        s = jnp.broadcast_to(joint[..., None, :], lead + (A, joint.shape[-1]))
        parts = [s]
        if self.config.critic_input == "ego":
            if obs is None:
                raise ValueError("critic_input='ego' needs the observations (obs=...)")
            o = obs.reshape(obs.shape[: obs.ndim - len(self.env.obs_shape)] + (self.F,))
            u_r = u_seen.reshape(lead + (A, A, D))
            own = jnp.sum(jnp.where(jnp.eye(A, dtype=bool)[..., None], u_r, 0.0), -2)  # [.., A, D]
            parts += [jnp.broadcast_to(o, lead + (A, self.F)).astype(u_seen.dtype), own]
        x = jnp.concatenate(parts + [u_seen], -1)
        return self.critic.apply(critic_params, x)[..., 0]

    # ---- hooks ----------------------------------------------------------------------------

    def init_learner(self, key):
        ka, kc = jax.random.split(key)
        actor, critic = self.actor.init(ka), self.critic.init(kc)
        params = {
            "actor": actor,
            "critic": critic,
            "actor_target": actor,
            "critic_target": critic,
        }
        opt_state = {"actor": self.opt_actor.init(actor), "critic": self.opt_critic.init(critic)}
        return params, opt_state

    def stored_action_example(self):
        return jnp.zeros((self.n_agents, self.D), jnp.float32)

    def explore(self, params, obs, key, env_step):
        c = self.config
        k_n, k_r = jax.random.split(key)
        u = self.policy_u(params["actor"], obs)
        std = self.noise(env_step)
        u = jnp.clip(u + std * jax.random.normal(k_n, u.shape), -1.0, 1.0)
        rand = jax.random.uniform(k_r, u.shape, minval=-1.0, maxval=1.0)
        u = jnp.where(env_step < c.random_steps, rand, u)
        return spaces.unflatten(self.env.action_space, u), u, {"noise_std": std}

    def learn(self, params, opt_state, batch, key, grad_step):
        c = self.config
        joint = self.joint_input(batch.obs, batch.state)
        joint2 = self.joint_input(batch.next_obs, batch.next_state)
        r = self.signal(batch.reward)
        if c.centralised_actor:
            r = jnp.broadcast_to(jnp.mean(r, -1, keepdims=True), r.shape)
        u2 = self.policy_u(params["actor_target"], batch.next_obs)
        q2 = self.q_values(params["critic_target"], joint2, u2, batch.next_obs)
        not_term = 1.0 - batch.terminated.astype(jnp.float32)[..., None]
        y = jax.lax.stop_gradient(r + c.gamma * not_term * q2)

        def critic_loss(cp):
            q = self.q_values(cp, joint, batch.action, batch.obs)
            return jnp.mean((q - y) ** 2), q

        (l_c, q), g_c = jax.value_and_grad(critic_loss, has_aux=True)(params["critic"])
        upd, os_c = self.opt_critic.update(g_c, opt_state["critic"], params["critic"])
        critic = optax.apply_updates(params["critic"], upd)

        A = self.n_agents

        def actor_loss(ap):
            z = self.policy_pre(ap, batch.obs)  # [B, A, D]
            mu = jnp.tanh(z)
            # a penalty on the pre-tanh output keeps the actor off tanh's flat tails, where its
            # gradient vanishes and a saturated action can never come back
            reg = c.action_reg * jnp.mean(z**2)
            if c.centralised_actor:
                return reg - jnp.mean(self.q_values(critic, joint, mu)[..., 0])
            # row i: agent i's action from its actor, the others' from the buffer; critic i only
            eye = jnp.eye(A, dtype=bool)[None, :, :, None]  # [1, i, j, 1]
            mix = jnp.where(eye, mu[:, None], batch.action[:, None])  # [B, i, A, D]
            mix = mix.reshape(mix.shape[:2] + (A * self.D,))
            return reg - jnp.mean(self.q_per_agent(critic, joint, mix, batch.obs))

        l_a, g_a = jax.value_and_grad(actor_loss)(params["actor"])
        upd, os_a = self.opt_actor.update(g_a, opt_state["actor"], params["actor"])
        actor = optax.apply_updates(params["actor"], upd)
        params = {
            "actor": actor,
            "critic": critic,
            "actor_target": op.target_update(
                params["actor_target"], actor, grad_step, c.tau, c.target_period
            ),
            "critic_target": op.target_update(
                params["critic_target"], critic, grad_step, c.tau, c.target_period
            ),
        }
        metrics = {"critic_loss": l_c, "actor_loss": l_a, "q": jnp.mean(q)}
        return params, {"actor": os_a, "critic": os_c}, metrics

    def act(self, params, obs, key=None):
        """The learned policy ``obs[..., A, ...] -> actions`` (deterministic; ``key`` adds the
        final exploration noise ``noise_end``)."""
        actor = params["actor"] if isinstance(params, dict) and "actor" in params else params
        u = self.policy_u(actor, obs.astype(jnp.float32))
        if key is not None:
            u = jnp.clip(u + self.config.noise_end * jax.random.normal(key, u.shape), -1.0, 1.0)
        return spaces.unflatten(self.env.action_space, u)


def make_train(config: dict, env, env_params) -> DDPGTrainer:
    """``DDPGTrainer`` for ``env`` (``config``: keys of ``DEFAULT_CONFIG``)."""
    return DDPGTrainer(dict(config), env, env_params)

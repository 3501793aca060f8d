"""PyTorch reference of the MADDPG trainer of ``algorithms/ddpg.py`` (CPU, eager).

The baseline of ``bench/bench_offpolicy.py``: the same algorithm, networks and updates as the
jitted JAX trainer (``algorithms.make_train("maddpg", ...)``, shared parameters), written the
way a PyTorch research code base runs it: ``n_envs`` NumPy environments
(``bench/numpy_power_control.py::PowerControlNumPy``, one Python object per network) stepped
one after another in a Python loop, the actors evaluated once per vectorised step on the torch
batch of all environments, a NumPy ring replay buffer, ``gradient_steps`` gradient steps per
vectorised step. No JAX in here.

Networks (``AgentMLP``, shared by all agents, the agent's one-hot id appended to the input, as
``algorithms.offpolicy.AgentMLP`` with ``shared=True``): ReLU MLPs with ``hidden`` widths,
LeCun-normal (truncated) kernels, zero biases, the actor's output layer initialised with
standard deviation scaled by 0.1:

    actor   u_i = tanh(mu([o_i, e_i]))                 in [-1, 1]^D, env action
            a_i = low + (u_i + 1) (high - low) / 2     (``spaces.unflatten``)
    critic  Q_i = Q([s, u_1 .. u_A, e_i])              s the environment's global state

Update (``TorchMADDPG.learn``, one gradient step on a uniform minibatch of ``batch_size``
transitions, Lowe et al. 2017, Algorithm 1):

* critic: ``y_i = r_i + gamma (1 - terminated) Q'_i(s', mu'(o'_1) .. mu'(o'_A))`` with the target
  networks, loss ``mean_{b,i} (Q_i(s, u) - y_i)^2``, Adam after global grad-norm clipping;
* actor (with the critic just updated): ``action_reg mean(z^2) - mean_{b,i} Q_i(s, u_1 ..
  mu(o_i) .. u_A)`` (``z`` the actor's pre-tanh output; ``action_reg = 0`` by default), agent
  ``i``'s action from the actor and the others' from the buffer; the ``A`` substitutions are one
  critic call over ``B A`` rows, critic ``i`` at substitution ``i`` only (as the JAX trainer's
  ``q_per_agent``); Adam after clipping;
* Polyak averaging of both target networks with ``tau``.

Exploration (``TorchMADDPG.act``): ``u = clip(mu(o) + sigma_t n, -1, 1)``, ``n ~ N(0, 1)``,
``sigma_t`` linear from ``noise_start`` to ``noise_end`` over ``noise_decay_steps`` vectorised
steps, uniform ``u`` during the first ``random_steps`` vectorised steps. Learning starts once
the buffer holds ``learning_starts`` transitions (one transition: all agents of one network at
one step); ``next_obs`` after a truncation is the final observation (bootstrapped).
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time

import numpy as np
import torch
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench.numpy_power_control import PowerControlNumPy  # noqa: E402

# ---- networks -------------------------------------------------------------------------------

# JAX's variance_scaling truncated normal: std of N(0, 1) truncated to [-2, 2]
_TRUNC_STD = 0.87962566103423978


class AgentMLP(nn.Module):
    """ReLU MLP shared by the agents: ``x[..., A, in] -> y[..., A, out]`` on ``[x, one-hot id]``."""

    def __init__(self, in_features, hidden, out_features, n_agents, out_scale=1.0):
        super().__init__()
        self.n_agents = int(n_agents)
        sizes = [int(in_features) + self.n_agents, *(int(h) for h in hidden), int(out_features)]
        layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            lin = nn.Linear(a, b)
            scale = out_scale if i == len(sizes) - 2 else 1.0
            std = scale / math.sqrt(a) / _TRUNC_STD
            with torch.no_grad():
                nn.init.trunc_normal_(lin.weight, std=std, a=-2 * std, b=2 * std)
                lin.bias.zero_()
            layers.append(lin)
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)
        self.register_buffer("ids", torch.eye(self.n_agents))

    def forward(self, x):
        ids = self.ids.expand(x.shape[:-1] + (self.n_agents,))
        return self.net(torch.cat([x, ids], -1))

    def linears(self):
        return [m for m in self.net if isinstance(m, nn.Linear)]


def load_params(module: AgentMLP, layers):
    """Copy ``[(kernel[in, out], bias[out]), ...]`` (NumPy, the JAX layout) into ``module``."""
    lins = module.linears()
    if len(lins) != len(layers):
        raise ValueError(f"{len(layers)} layers given, the module has {len(lins)}")
    with torch.no_grad():
        for lin, (w, b) in zip(lins, layers, strict=True):
            lin.weight.copy_(torch.from_numpy(np.array(w, np.float32).T.copy()))
            lin.bias.copy_(torch.from_numpy(np.array(b, np.float32)))


def module_params(module: AgentMLP):
    """``[(kernel[in, out], bias[out]), ...]`` as NumPy (the JAX layout)."""
    return [
        (lin.weight.detach().numpy().T.copy(), lin.bias.detach().numpy().copy())
        for lin in module.linears()
    ]


# ---- replay buffer --------------------------------------------------------------------------


class ReplayBuffer:
    """NumPy ring buffer of transitions (float32), uniform sampling with replacement."""

    def __init__(self, capacity, n_agents, obs_dim, act_dim, state_dim):
        c, A = int(capacity), int(n_agents)
        self.capacity = c
        self.obs = np.zeros((c, A, obs_dim), np.float32)
        self.action = np.zeros((c, A, act_dim), np.float32)
        self.reward = np.zeros((c, A), np.float32)
        self.next_obs = np.zeros((c, A, obs_dim), np.float32)
        self.terminated = np.zeros((c,), np.float32)
        self.state = np.zeros((c, state_dim), np.float32)
        self.next_state = np.zeros((c, state_dim), np.float32)
        self.insert = 0
        self.size = 0

    def add(self, obs, action, reward, next_obs, terminated, state, next_state):
        """Append ``B`` transitions (leading axis ``B`` on every argument)."""
        b = len(obs)
        rows = (self.insert + np.arange(b)) % self.capacity
        self.obs[rows] = obs
        self.action[rows] = action
        self.reward[rows] = reward
        self.next_obs[rows] = next_obs
        self.terminated[rows] = terminated
        self.state[rows] = state
        self.next_state[rows] = next_state
        self.insert = (self.insert + b) % self.capacity
        self.size = min(self.size + b, self.capacity)

    def sample(self, rng, n):
        idx = rng.integers(0, max(self.size, 1), n)
        return {
            k: torch.from_numpy(getattr(self, k)[idx])
            for k in ("obs", "action", "reward", "next_obs", "terminated", "state", "next_state")
        }


# ---- trainer --------------------------------------------------------------------------------


@dataclasses.dataclass
class TorchMADDPGConfig:
    """The hyper-parameters of ``algorithms.ddpg.DEFAULT_CONFIG`` that MADDPG uses."""

    n_envs: int = 16
    buffer_size: int = 20000
    batch_size: int = 128
    learning_starts: int = 500
    gradient_steps: int = 1
    gamma: float = 0.95
    tau: float = 0.01
    max_grad_norm: float = 10.0
    hidden: tuple = (64, 64)
    lr_actor: float = 0.001
    lr_critic: float = 0.001
    noise_start: float = 0.3
    noise_end: float = 0.05
    noise_decay_steps: int = 500
    random_steps: int = 20
    action_reg: float = 0.0


class TorchMADDPG:
    """MADDPG with shared parameters over ``n_envs`` NumPy environments (module docstring).

    ``setups``: the pool of network setups of ``PowerControlNumPy``; ``env_kwargs``: its keyword
    arguments (``tau_p``, ``tau_c``, ``p_max``, ``episode_steps``, observation scaling).
    ``make_env`` (optional, instead of the two): ``make_env(seed) -> env``, any NumPy
    environment with the same interface (``reset``, ``step``, ``global_state``, ``n_agents``,
    ``obs_dim``, ``state_dim``, ``action_low`` / ``action_high`` and, for ``D > 1`` action
    features per agent, ``act_dim``; e.g. ``bench/numpy_mobile_ap.py``), one per network with
    the seeds ``seed * 100003 + 1 + i``.
    """

    def __init__(
        self,
        cfg: TorchMADDPGConfig,
        setups: dict | None = None,
        env_kwargs: dict | None = None,
        seed: int = 0,
        make_env=None,
    ):
        self.cfg = cfg
        torch.manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        seeds = [seed * 100003 + 1 + i for i in range(cfg.n_envs)]
        if make_env is not None:
            self.envs = [make_env(s) for s in seeds]
        else:
            self.envs = [PowerControlNumPy(setups, seed=s, **env_kwargs) for s in seeds]
        e = self.envs[0]
        self.A, self.F, self.S = e.n_agents, e.obs_dim, e.state_dim
        self.D = int(getattr(e, "act_dim", 1))
        self.low, self.high = e.action_low, e.action_high
        h = tuple(cfg.hidden)
        A, D = self.A, self.D
        self.actor = AgentMLP(self.F, h, D, A, out_scale=0.1)
        self.critic = AgentMLP(self.S + A * D, h, 1, A)
        self.actor_target = AgentMLP(self.F, h, D, A, out_scale=0.1)
        self.critic_target = AgentMLP(self.S + A * D, h, 1, A)
        self.actor_target.load_state_dict(self.actor.state_dict())
        self.critic_target.load_state_dict(self.critic.state_dict())
        for p in (*self.actor_target.parameters(), *self.critic_target.parameters()):
            p.requires_grad_(False)
        self.opt_actor = torch.optim.Adam(self.actor.parameters(), lr=cfg.lr_actor)
        self.opt_critic = torch.optim.Adam(self.critic.parameters(), lr=cfg.lr_critic)
        self.buffer = ReplayBuffer(cfg.buffer_size, A, self.F, D, self.S)
        self.obs = np.stack([env.reset() for env in self.envs]).astype(np.float32)
        self.state = np.stack([env.global_state() for env in self.envs]).astype(np.float32)
        self.env_step = 0
        self.grad_step = 0
        self.timing = {"act_s": 0.0, "env_s": 0.0, "buffer_s": 0.0, "learn_s": 0.0}

    # ---- acting -----------------------------------------------------------------------

    def noise_std(self):
        c = self.cfg
        if c.noise_decay_steps <= 0:
            return c.noise_end
        frac = min(self.env_step / c.noise_decay_steps, 1.0)
        return c.noise_start + (c.noise_end - c.noise_start) * frac

    def act(self, obs):
        """Exploration actions ``u[n_envs, A, D]`` in ``[-1, 1]`` for ``obs[n_envs, A, F]``."""
        shape = obs.shape[:2] + (self.D,)
        if self.env_step < self.cfg.random_steps:
            return self.rng.uniform(-1.0, 1.0, shape).astype(np.float32)
        with torch.no_grad():
            u = torch.tanh(self.actor(torch.from_numpy(obs)))
            u = u + self.noise_std() * torch.randn(u.shape)
            return u.clamp_(-1.0, 1.0).numpy()

    def to_env(self, u):
        return self.low + 0.5 * (u + 1.0) * (self.high - self.low)

    # ---- learning ---------------------------------------------------------------------

    def q_values(self, critic, state, u):
        """``state[B, S]``, ``u[B, A, D]`` -> ``Q[B, A]`` (agent ``i`` through its id)."""
        x = torch.cat([state, u.reshape(u.shape[0], -1)], -1)
        return critic(x[:, None].expand(-1, self.A, -1))[..., 0]

    def learn(self, batch):
        """One gradient step of critic and actor, then the target updates: ``-> metrics``."""
        c = self.cfg
        with torch.no_grad():
            u2 = torch.tanh(self.actor_target(batch["next_obs"]))
            q2 = self.q_values(self.critic_target, batch["next_state"], u2)
            y = batch["reward"] + c.gamma * (1.0 - batch["terminated"])[:, None] * q2
        q = self.q_values(self.critic, batch["state"], batch["action"])
        critic_loss = torch.mean((q - y) ** 2)
        self.opt_critic.zero_grad()
        critic_loss.backward()
        nn.utils.clip_grad_norm_(self.critic.parameters(), c.max_grad_norm)
        self.opt_critic.step()

        z = self.actor(batch["obs"])  # [B, A, D], before tanh
        mu = torch.tanh(z)
        eye = torch.eye(self.A, dtype=torch.bool)[None, :, :, None]
        mix = torch.where(eye, mu[:, None], batch["action"][:, None])  # [B, i, A, D]
        B, A = mu.shape[0], self.A
        x = torch.cat([batch["state"][:, None].expand(-1, A, -1), mix.reshape(B, A, -1)], -1)
        actor_loss = -torch.mean(self.critic(x)[..., 0])  # row i: Q_i with u_i = mu(o_i)
        if c.action_reg:
            actor_loss = actor_loss + c.action_reg * torch.mean(z**2)
        self.opt_actor.zero_grad()
        actor_loss.backward()
        nn.utils.clip_grad_norm_(self.actor.parameters(), c.max_grad_norm)
        self.opt_actor.step()

        with torch.no_grad():
            for net, tgt in ((self.actor, self.actor_target), (self.critic, self.critic_target)):
                for p, tp in zip(net.parameters(), tgt.parameters(), strict=True):
                    tp.mul_(1.0 - c.tau).add_(p, alpha=c.tau)
        self.grad_step += 1
        return {
            "critic_loss": float(critic_loss.detach()),
            "actor_loss": float(actor_loss.detach()),
            "q": float(q.detach().mean()),
        }

    # ---- the loop ---------------------------------------------------------------------

    def step(self):
        """One vectorised step: act, step every environment, store, ``gradient_steps``
        gradient steps once the buffer is warm. ``-> metrics``."""
        c = self.cfg
        t0 = time.perf_counter()
        u = self.act(self.obs)
        actions = self.to_env(u)
        t1 = time.perf_counter()
        next_obs, rewards, next_state, terminated = [], [], [], []
        obs2, state2 = [], []
        for env, a in zip(self.envs, actions, strict=True):
            o, r, d, info = env.step(a)
            if d:
                next_obs.append(info["final_obs"])
                next_state.append(info["final_state"])
            else:
                next_obs.append(o)
                next_state.append(env.global_state())
            obs2.append(o)
            state2.append(env.global_state() if d else next_state[-1])
            rewards.append(r)
            terminated.append(info["terminated"])
        t2 = time.perf_counter()
        self.buffer.add(
            self.obs,
            u,
            np.stack(rewards),
            np.stack(next_obs),
            np.asarray(terminated, np.float32),  # a truncation bootstraps
            self.state,
            np.stack(next_state),
        )
        self.obs = np.stack(obs2).astype(np.float32)
        self.state = np.stack(state2).astype(np.float32)
        self.env_step += 1
        t3 = time.perf_counter()
        metrics = {"reward": float(np.mean(rewards)), "learning": 0.0}
        if self.buffer.size >= max(c.learning_starts, 1):
            for _ in range(c.gradient_steps):
                metrics.update(self.learn(self.buffer.sample(self.rng, c.batch_size)))
            metrics["learning"] = 1.0
        t4 = time.perf_counter()
        parts = (t1 - t0, t2 - t1, t3 - t2, t4 - t3)
        for k, dt in zip(("act_s", "env_s", "buffer_s", "learn_s"), parts, strict=True):
            self.timing[k] += dt
        return metrics

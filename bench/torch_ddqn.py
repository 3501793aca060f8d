"""PyTorch reference of the independent double DQN of ``algorithms/dqn.py`` (CPU, eager).

The baseline of ``bench/bench_ap_cooperation.py``: the same agents, networks and updates as the
jitted JAX trainer (``algorithms.make_train("ddqn", ...)`` with ``shared_parameters = false``,
the AP-cooperation paper's Table II), written the way a PyTorch research code base runs it:
``n_envs`` NumPy environments (``bench/numpy_ap_cooperation.py::APCooperationNumPy``, one Python
object per network) stepped one after another in a Python loop, the Q networks evaluated once
per vectorised step on the torch batch of all environments, a NumPy ring replay buffer,
``gradient_steps`` gradient steps per vectorised step. No JAX in here.

Networks (``StackedMLP``): one ReLU MLP per agent (per AP), ``hidden`` widths (Table II:
128-64-32), the ``A`` parameter sets stacked along a leading axis and applied with one batched
``einsum`` per layer (the stronger baseline: a Python list of ``A = 100`` modules would cost
``A`` kernel launches per layer), LeCun-normal (truncated) kernels, zero biases, inverted
dropout of rate ``dropout`` after every hidden activation while learning (none when acting), as
``algorithms.offpolicy.AgentMLP`` with ``shared=False``.

Update (``TorchDDQN.learn``, one gradient step on a uniform minibatch of ``batch_size``
transitions drawn with replacement; one transition holds every agent's own transition):
``a*_i = argmax_a Q_i(o'_i, a; theta)``, ``y_i = r_i + gamma (1 - terminated) Q_i(o'_i, a*_i;
theta^-)`` (van Hasselt, Guez, Silver 2016, eq. (4)), loss ``mean_{b,i} (Q_i(o_i, a_i) -
y_i)^2``, Adam after global gradient-norm clipping over all agents' parameters, a hard target
copy every ``target_period`` gradient steps. Exploration: epsilon-greedy per agent, epsilon
linear from ``eps_start`` to ``eps_end`` over ``eps_decay_steps`` vectorised steps. Learning
starts once the buffer holds ``learning_starts`` transitions; ``next_obs`` after a truncation
is the final observation (bootstrapped; the scenario never terminates).
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench.numpy_ap_cooperation import APCooperationNumPy  # noqa: E402

_TRUNC_STD = 0.87962566103423978  # std of N(0, 1) truncated to [-2, 2] (JAX's LeCun normal)


class StackedMLP(torch.nn.Module):
    """``A`` independent ReLU MLPs: ``x[B, A, in] -> y[B, A, out]`` (module docstring)."""

    def __init__(self, n_agents, in_features, hidden, out_features):
        super().__init__()
        sizes = [int(in_features), *(int(h) for h in hidden), int(out_features)]
        self.weights = torch.nn.ParameterList()
        self.biases = torch.nn.ParameterList()
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            std = 1.0 / math.sqrt(a) / _TRUNC_STD
            w = torch.empty(n_agents, a, b)
            torch.nn.init.trunc_normal_(w, std=std, a=-2 * std, b=2 * std)
            self.weights.append(torch.nn.Parameter(w))
            self.biases.append(torch.nn.Parameter(torch.zeros(n_agents, b)))

    def forward(self, x, dropout: float = 0.0):
        n = len(self.weights)
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = torch.einsum("bai,aio->bao", x, w) + b
            if i < n - 1:
                x = torch.relu(x)
                if dropout > 0.0:
                    x = torch.nn.functional.dropout(x, dropout, training=True)
        return x

    def load(self, layers):
        """Copy ``[(kernel[A, in, out], bias[A, out]), ...]`` (NumPy, the JAX layout)."""
        with torch.no_grad():
            for w, b, (kw, kb) in zip(self.weights, self.biases, layers, strict=True):
                w.copy_(torch.from_numpy(np.array(kw, np.float32)))
                b.copy_(torch.from_numpy(np.array(kb, np.float32)))

    def layers(self):
        return [
            (w.detach().numpy().copy(), b.detach().numpy().copy())
            for w, b in zip(self.weights, self.biases, strict=True)
        ]


class ReplayBuffer:
    """NumPy ring buffer of transitions (float32), uniform sampling with replacement."""

    def __init__(self, capacity, n_agents, obs_dim):
        c, A = int(capacity), int(n_agents)
        self.capacity, self.size, self.pos = c, 0, 0
        self.obs = np.zeros((c, A, obs_dim), np.float32)
        self.next_obs = np.zeros((c, A, obs_dim), np.float32)
        self.action = np.zeros((c, A), np.int64)
        self.reward = np.zeros((c, A), np.float32)
        self.terminated = np.zeros((c,), np.float32)

    def add(self, obs, action, reward, next_obs, terminated):
        """Append ``n`` transitions (leading axis ``n`` on every argument)."""
        n = obs.shape[0]
        rows = (self.pos + np.arange(n)) % self.capacity
        self.obs[rows], self.action[rows], self.reward[rows] = obs, action, reward
        self.next_obs[rows], self.terminated[rows] = next_obs, terminated
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, rng, n):
        idx = rng.integers(0, max(self.size, 1), n)
        return {
            "obs": torch.from_numpy(self.obs[idx]),
            "action": torch.from_numpy(self.action[idx]),
            "reward": torch.from_numpy(self.reward[idx]),
            "next_obs": torch.from_numpy(self.next_obs[idx]),
            "terminated": torch.from_numpy(self.terminated[idx]),
        }


@dataclasses.dataclass(frozen=True)
class TorchDDQNConfig:
    """The JAX trainer's hyper-parameters (``algorithms/dqn.py``, ``offpolicy.COMMON_DEFAULTS``)."""

    n_envs: int = 1
    buffer_size: int = 1000
    batch_size: int = 32
    learning_starts: int = 32
    gradient_steps: int = 1
    gamma: float = 0.95
    lr: float = 1e-3
    max_grad_norm: float = 10.0
    hidden: tuple = (128, 64, 32)
    dropout: float = 0.1
    target_period: int = 100
    eps_start: float = 0.8
    eps_end: float = 0.01
    eps_decay_steps: int = 1580
    double: bool = True


class TorchDDQN:
    """Independent double DQN over ``n_envs`` NumPy environments (module docstring)."""

    def __init__(self, cfg: TorchDDQNConfig, setups, env_kwargs, seed=0):
        self.cfg = cfg
        torch.manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.envs = [
            APCooperationNumPy(setups, seed=seed + 1 + i, **env_kwargs) for i in range(cfg.n_envs)
        ]
        e = self.envs[0]
        self.A, self.F, self.n_actions = e.M, e.obs_dim, 2**e.Q
        self.q = StackedMLP(self.A, self.F, cfg.hidden, self.n_actions)
        self.q_target = StackedMLP(self.A, self.F, cfg.hidden, self.n_actions)
        self.q_target.load_state_dict(self.q.state_dict())
        self.opt = torch.optim.Adam(self.q.parameters(), lr=cfg.lr)
        self.buffer = ReplayBuffer(cfg.buffer_size, self.A, self.F)
        self.obs = np.stack([env.reset() for env in self.envs])
        self.env_step = 0
        self.grad_step = 0
        self.timers = {"act": 0.0, "env": 0.0, "buffer": 0.0, "learn": 0.0}

    def epsilon(self):
        c = self.cfg
        frac = min(self.env_step / max(c.eps_decay_steps, 1), 1.0)
        return c.eps_start + (c.eps_end - c.eps_start) * frac if c.eps_decay_steps else c.eps_end

    def act(self, obs):
        """Epsilon-greedy actions ``obs[n, A, F] -> [n, A]`` int."""
        with torch.no_grad():
            greedy = self.q(torch.from_numpy(obs)).argmax(-1).numpy()
        rand = self.rng.integers(0, self.n_actions, greedy.shape)
        return np.where(self.rng.random(greedy.shape) < self.epsilon(), rand, greedy)

    def learn(self, batch, dropout=None):
        """One gradient step on ``batch`` (``dropout``: override the rate, e.g. 0 for parity)."""
        c = self.cfg
        rate = c.dropout if dropout is None else dropout
        with torch.no_grad():
            q_next_t = self.q_target(batch["next_obs"])
            if c.double:
                a_star = self.q(batch["next_obs"]).argmax(-1, keepdim=True)
                q_next = q_next_t.gather(-1, a_star)[..., 0]
            else:
                q_next = q_next_t.max(-1).values
            y = batch["reward"] + c.gamma * (1.0 - batch["terminated"])[:, None] * q_next
        q = self.q(batch["obs"], dropout=rate)
        q_a = q.gather(-1, batch["action"][..., None])[..., 0]
        loss = torch.mean((q_a - y) ** 2)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.q.parameters(), c.max_grad_norm)
        self.opt.step()
        self.grad_step += 1
        if c.target_period > 0 and self.grad_step % c.target_period == 0:
            self.q_target.load_state_dict(self.q.state_dict())
        return {"td_loss": loss.item(), "q": q_a.detach().mean().item()}

    def step(self):
        """One vectorised step: act, step every environment, store, learn."""
        c = self.cfg
        t0 = time.perf_counter()
        actions = self.act(self.obs)
        t1 = time.perf_counter()
        nxt, rew, fin, term = [], [], [], []
        for env, a in zip(self.envs, actions, strict=True):  # the loop over networks
            o, r, done, info = env.step(a)
            nxt.append(o)
            rew.append(r)
            fin.append(info["final_obs"] if done else o)
            term.append(0.0)  # truncations only
        t2 = time.perf_counter()
        self.buffer.add(self.obs, actions, np.stack(rew), np.stack(fin), np.array(term))
        self.obs = np.stack(nxt)
        self.env_step += 1
        t3 = time.perf_counter()
        m = {}
        if self.buffer.size >= max(c.learning_starts, 1):
            for _ in range(c.gradient_steps):
                m = self.learn(self.buffer.sample(self.rng, c.batch_size))
        t4 = time.perf_counter()
        for k, dt in zip(self.timers, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            self.timers[k] += dt
        return m

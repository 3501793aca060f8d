"""PyTorch reference of the MAPPO(-Lagrangian) trainer of ``algorithms/mappo.py`` (CPU, eager).

The baseline of ``bench/bench_training.py``: the same algorithm and the same network as the JAX
trainer, written the way a typical PyTorch research codebase runs it, i.e. ``n_envs`` NumPy
environments (``bench/numpy_ap_selection.py::APSelectionNumPy``, one Python object per network)
stepped one after another in a Python loop, the policy evaluated with torch once per step on
the batch of all environments, GAE in torch, then ``epochs`` x ``n_minibatches`` Adam steps.
No JAX in here.

Network (``TorchActorCritic``, same layer sizes and maths as ``algorithms.networks``
``AgentActorCritic`` with ``encoder="gru"``, ``critic="central"``)::

    e_i = GRU(o_i)                          torch.nn.GRU, final hidden state, h_0 = 0
    z_i = e_i + GNN(e)_i                    ``gnn_rounds`` typed single-head attention rounds
    logits_i = pi(z_i)                      Linear-ReLU-Linear
    values_i = V([z_i, mean_j z_j])         Linear-ReLU-Linear, ``n_value_heads`` outputs

One attention round (TransformerConv, one query/key/value map per edge type), over the static
``senders``/``receivers``/``edge_type`` arrays of ``env.graph()``, shared by the batch::

    score_e = <q_{r(e), t(e)}, k_{s(e), t(e)}> / sqrt(d)
    alpha_e = softmax of score over the edges of the same (receiver, type) segment
    h_i'    = relu(W_self h_i + b_self + sum_{e: r(e) = i} alpha_e v_{s(e), t(e)})

(segment max with ``scatter_reduce(amax)``, sums with ``index_add_``). Every edge and node of
the AP-selection graph is valid, so the masks of the JAX version are not needed here.
``load_jax_params`` copies the parameters of ``networks.init_params`` into the module (used by
the parity check of the benchmark).

Algorithm (``TorchMAPPO.update``), per update:

* rollout of ``n_steps`` windows; after each step the value of the next observation is the
  value of the next step's observation, or, for an environment whose episode just ended, of
  its final observation (``info["final_obs"]``; episodes are truncated, never terminated, so
  they are bootstrapped); one bootstrap forward after the last step;
* truncation-aware GAE per value head (reward, cost), as ``algorithms/gae.py``;
* Lagrangian: each advantage normalised with its own statistics, actor advantage
  ``(A_r - lambda A_c) / (1 + lambda)``, multiplier ``lambda <- max(0, lambda + eta (Jc - d))``
  after the rollout (``Jc`` the mean per-agent per-step cost);
* ``epochs`` passes over a random permutation of the ``n_steps n_envs`` samples in
  ``n_minibatches`` minibatches: clipped surrogate, clipped value loss (summed over heads),
  entropy bonus, global grad-norm clipping, Adam (eps 1e-5).
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

from bench.numpy_ap_selection import APSelectionNumPy  # noqa: E402

# ---- network --------------------------------------------------------------------------------


def _mlp(n_in, n_hidden, n_out):
    return nn.Sequential(nn.Linear(n_in, n_hidden), nn.ReLU(), nn.Linear(n_hidden, n_out))


class TorchGraphAttention(nn.Module):
    """One round of typed single-head softmax attention: ``h[B, N, F] -> [B, N, d]``."""

    def __init__(self, in_features, out_features, n_edge_types, senders, receivers, edge_type):
        super().__init__()
        self.d = int(out_features)
        self.n_types = int(n_edge_types)
        m = self.n_types * self.d
        self.query = nn.Linear(in_features, m)
        self.key = nn.Linear(in_features, m)
        self.value = nn.Linear(in_features, m)
        self.self_map = nn.Linear(in_features, self.d)
        for name, a in (("senders", senders), ("receivers", receivers), ("edge_type", edge_type)):
            self.register_buffer(name, torch.tensor(np.array(a), dtype=torch.long))
        seg = self.receivers * self.n_types + self.edge_type
        self.register_buffer("seg", seg)

    def forward(self, h):
        B, N, _ = h.shape
        shape = (B, N, self.n_types, self.d)
        q = self.query(h).view(shape)
        k = self.key(h).view(shape)
        v = self.value(h).view(shape)
        s, r, t, seg = self.senders, self.receivers, self.edge_type, self.seg
        q_e = q[:, r, t]  # [B, E, d]
        k_e = k[:, s, t]
        v_e = v[:, s, t]
        score = (q_e * k_e).sum(-1) / math.sqrt(self.d)  # [B, E]
        n_seg = N * self.n_types
        with torch.no_grad():  # the shift of the softmax (gradient stopped, as in JAX)
            seg_max = torch.full((B, n_seg), -math.inf, dtype=score.dtype)
            seg_max = seg_max.scatter_reduce(
                1, seg.expand(B, -1), score, reduce="amax", include_self=True
            )
        w = torch.exp(score - seg_max[:, seg])
        denom = torch.zeros((B, n_seg), dtype=w.dtype).index_add(1, seg, w)
        alpha = w / denom[:, seg]
        msg = torch.zeros((B, N, self.d), dtype=h.dtype).index_add(1, r, alpha[..., None] * v_e)
        return torch.relu(self.self_map(h) + msg)


class TorchActorCritic(nn.Module):
    """GRU encoder -> residual attention GNN -> actor head and central critic (module doc).

    ``obs[B, N, T, F] -> (logits[B, N, n_actions], values[B, N, n_value_heads])``.
    """

    def __init__(
        self,
        obs_features,
        n_actions,
        graph,
        *,
        hidden=64,
        gnn_rounds=2,
        n_edge_types=2,
        n_value_heads=2,
    ):
        super().__init__()
        senders, receivers, edge_type = (np.asarray(a) for a in graph)
        self.hidden = int(hidden)
        self.gru = nn.GRU(obs_features, self.hidden, batch_first=True)
        self.gnn = nn.ModuleList(
            [
                TorchGraphAttention(hidden, hidden, n_edge_types, senders, receivers, edge_type)
                for _ in range(gnn_rounds)
            ]
        )
        self.actor = _mlp(hidden, hidden, n_actions)
        self.critic = _mlp(2 * hidden, hidden, n_value_heads)

    def forward(self, obs):
        B, N, T, F = obs.shape
        _, h = self.gru(obs.reshape(B * N, T, F))
        e = h[0].view(B, N, self.hidden)
        g = e
        for layer in self.gnn:
            g = layer(g)
        z = e + g if len(self.gnn) else e
        logits = self.actor(z)
        pooled = z.mean(dim=1, keepdim=True).expand_as(z)
        values = self.critic(torch.cat([z, pooled], dim=-1))
        return logits, values


def param_pairs(module: TorchActorCritic, params):
    """``[(name, torch_parameter, jax_array, transposed)]`` pairing every parameter of
    ``module`` with its counterpart in ``networks.init_params(...)[1]`` (an
    ``AgentActorCritic`` with ``encoder="gru"``, ``critic="central"``). Flax kernels are
    ``[in, out]``, torch weights ``[out, in]`` (``transposed``); both GRUs order the gate
    columns ``(r, z, n)``."""

    def leaf(x):
        return np.asarray(getattr(x, "value", x))

    enc = params["encoder"]
    pairs = [
        ("gru.weight_ih", module.gru.weight_ih_l0, leaf(enc["dense_i"]["kernel"]), True),
        ("gru.bias_ih", module.gru.bias_ih_l0, leaf(enc["dense_i"]["bias"]), False),
        ("gru.weight_hh", module.gru.weight_hh_l0, leaf(enc["dense_h"]["kernel"]), True),
        ("gru.bias_hh", module.gru.bias_hh_l0, leaf(enc["dense_h"]["bias"]), False),
    ]

    def lin(name, dst: nn.Linear, src):
        pairs.append((name + ".weight", dst.weight, leaf(src["kernel"]), True))
        pairs.append((name + ".bias", dst.bias, leaf(src["bias"]), False))

    for i, layer in enumerate(module.gnn):
        for name in ("query", "key", "value", "self_map"):
            lin(f"gnn.{i}.{name}", getattr(layer, name), params["gnn"]["layers"][i][name])
    for head in ("actor", "critic"):
        seq = getattr(module, head)
        lin(f"{head}.0", seq[0], params[head]["layers"][0])
        lin(f"{head}.2", seq[2], params[head]["layers"][1])
    n_torch = sum(1 for _ in module.parameters())
    if len(pairs) != n_torch:
        raise ValueError(f"paired {len(pairs)} of {n_torch} torch parameters")
    return pairs


def load_jax_params(module: TorchActorCritic, params) -> None:
    """Copy ``networks.init_params(...)[1]`` into ``module`` (see ``param_pairs``)."""
    with torch.no_grad():
        for name, dst, src, transposed in param_pairs(module, params):
            src = torch.as_tensor(np.array(src), dtype=torch.float32)
            src = src.T if transposed else src
            if dst.shape != src.shape:
                raise ValueError(f"{name}: torch {tuple(dst.shape)} != jax {tuple(src.shape)}")
            dst.copy_(src)


# ---- algorithm ------------------------------------------------------------------------------


@dataclasses.dataclass
class TorchPPOConfig:
    n_envs: int = 16
    n_steps: int = 10
    epochs: int = 4
    n_minibatches: int = 4
    hidden: int = 64
    gnn_rounds: int = 2
    lagrangian: bool = True
    max_grad_norm: float = 0.5
    lr: float = 5e-4
    gamma: float = 0.9
    gae_lambda: float = 0.95
    clip: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    cost_limit: float = 0.1
    lambda_lr: float = 0.1
    lambda_init: float = 1.0
    cost_weight: float = 1.0


def _normalise(x):
    return (x - x.mean()) / (x.std(correction=0) + 1e-8)


def gae_torch(rewards, values, next_values, terminated, done, gamma, lam):
    """Truncation-aware GAE over the leading time axis (``algorithms/gae.py``)."""
    not_term = 1.0 - terminated.to(rewards.dtype)
    not_done = (1.0 - done.to(rewards.dtype)).expand_as(rewards)
    deltas = rewards + gamma * not_term * next_values - values
    adv = torch.zeros_like(deltas)
    acc = torch.zeros_like(deltas[0])
    for t in range(deltas.shape[0] - 1, -1, -1):
        acc = deltas[t] + gamma * lam * not_done[t] * acc
        adv[t] = acc
    return adv, adv + values


def ppo_loss(net, mb, clip, vf_coef, ent_coef):
    """Total loss and diagnostics of one minibatch (``Trainer._loss`` of the JAX trainer)."""
    logits, values = net(mb["obs"])
    logp_all = torch.log_softmax(logits, -1)
    logp = logp_all.gather(-1, mb["action"][..., None])[..., 0]
    adv = mb["adv"]
    ratio = torch.exp(logp - mb["logp"])
    clipped = torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    pg_loss = -torch.minimum(ratio * adv, clipped * adv).mean()
    v_old = mb["value"]
    v_clip = v_old + torch.clamp(values - v_old, -clip, clip)
    v_loss = 0.5 * torch.maximum((values - mb["ret"]) ** 2, (v_clip - mb["ret"]) ** 2).sum(-1)
    v_loss = v_loss.mean()
    entropy = -(torch.exp(logp_all) * logp_all).sum(-1).mean()
    total = pg_loss + vf_coef * v_loss - ent_coef * entropy
    aux = dict(pg_loss=pg_loss, v_loss=v_loss, entropy=entropy)
    aux = {k: v.detach() for k, v in aux.items()}
    with torch.no_grad():
        kl = ((ratio - 1.0) - torch.log(ratio)).mean()
    return total, aux | {"approx_kl": kl}


class TorchMAPPO:
    """MAPPO-Lagrangian on ``n_envs`` NumPy AP-selection environments (module docstring)."""

    def __init__(self, cfg: TorchPPOConfig, env_kwargs: dict, graph, seed: int = 0):
        self.cfg = cfg
        torch.manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.envs = [
            APSelectionNumPy(seed=seed * 100_003 + i, **env_kwargs) for i in range(cfg.n_envs)
        ]
        self.n_agents = self.envs[0].n_agents
        self.obs = np.stack([env.reset() for env in self.envs]).astype(np.float32)
        self.net = TorchActorCritic(
            self.obs.shape[-1],
            2,
            graph,
            hidden=cfg.hidden,
            gnn_rounds=cfg.gnn_rounds,
            n_edge_types=int(np.max(np.asarray(graph[2]))) + 1,
            n_value_heads=2 if cfg.lagrangian else 1,
        )
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr, eps=1e-5)
        self.lagrange = float(cfg.lambda_init)
        self.n_updates = 0
        self.last_timing = {}

    @torch.no_grad()
    def rollout(self):
        c, E, A = self.cfg, self.cfg.n_envs, self.n_agents
        obs_buf, act_buf, logp_buf, val_buf, vnext_buf = [], [], [], [], []
        sig_buf, done_buf, term_buf, cost_buf = [], [], [], []
        obs_t = torch.from_numpy(self.obs)
        logits, values = self.net(obs_t)
        for _ in range(c.n_steps):
            dist = torch.distributions.Categorical(logits=logits)
            action = dist.sample()  # [E, A]
            logp = dist.log_prob(action)
            act_np = action.numpy()
            next_obs = np.empty_like(self.obs)
            final_obs = {}
            reward = np.empty((E, A), np.float32)
            cost = np.empty((E, A), np.float32)
            done = np.zeros(E, bool)
            term = np.zeros(E, bool)
            for i, env in enumerate(self.envs):  # the environments, one after another
                o, r, d, info = env.step(act_np[i])
                next_obs[i] = o
                reward[i] = r
                cost[i] = info["cost"]
                done[i] = d
                term[i] = info["terminated"]
                if d:
                    final_obs[i] = info["final_obs"]
            next_t = torch.from_numpy(next_obs)
            logits2, values2 = self.net(next_t)  # also the policy input of the next step
            v_next = values2.clone()
            if final_obs:  # truncated episodes are bootstrapped from their final observation
                idx = sorted(final_obs)
                fo = torch.from_numpy(np.stack([final_obs[i] for i in idx]).astype(np.float32))
                _, v_final = self.net(fo)
                v_next[idx] = v_final
            r_t, c_t = torch.from_numpy(reward), torch.from_numpy(cost)
            if c.lagrangian:
                sig = torch.stack([r_t, c_t], -1)
            else:
                sig = (r_t - c.cost_weight * c_t)[..., None]
            obs_buf.append(obs_t)
            act_buf.append(action)
            logp_buf.append(logp)
            val_buf.append(values)
            vnext_buf.append(v_next)
            sig_buf.append(sig)
            done_buf.append(torch.from_numpy(done))
            term_buf.append(torch.from_numpy(term))
            cost_buf.append(c_t.mean(-1))
            self.obs, obs_t, logits, values = next_obs, next_t, logits2, values2
        st = torch.stack
        return dict(
            obs=st(obs_buf),
            action=st(act_buf),
            logp=st(logp_buf),
            value=st(val_buf),
            v_next=st(vnext_buf),
            signal=st(sig_buf),
            done=st(done_buf),
            terminated=st(term_buf),
            cost=st(cost_buf),
        )

    def update(self):
        """One PPO update (rollout + epochs x minibatches): ``-> metrics`` (floats)."""
        c = self.cfg
        t0 = time.perf_counter()
        tr = self.rollout()
        self.last_timing = {"rollout_s": time.perf_counter() - t0}
        T, E = c.n_steps, c.n_envs
        with torch.no_grad():
            bshape = (T, E, 1, 1)
            adv, ret = gae_torch(
                tr["signal"],
                tr["value"],
                tr["v_next"],
                tr["terminated"].reshape(bshape),
                tr["done"].reshape(bshape),
                c.gamma,
                c.gae_lambda,
            )
            lam = self.lagrange
            if c.lagrangian:
                actor_adv = (_normalise(adv[..., 0]) - lam * _normalise(adv[..., 1])) / (1 + lam)
                mean_cost = float(tr["cost"].mean())
                self.lagrange = max(lam + c.lambda_lr * (mean_cost - c.cost_limit), 0.0)
            else:
                actor_adv = _normalise(adv[..., 0])
        batch = T * E
        data = dict(
            obs=tr["obs"],
            action=tr["action"],
            logp=tr["logp"],
            value=tr["value"],
            adv=actor_adv,
            ret=ret,
        )
        data = {k: v.reshape((batch,) + v.shape[2:]) for k, v in data.items()}
        mb_size = batch // c.n_minibatches
        hist = []
        for _ in range(c.epochs):
            perm = torch.from_numpy(self.rng.permutation(batch))
            for j in range(c.n_minibatches):
                idx = perm[j * mb_size : (j + 1) * mb_size]
                mb = {k: v[idx] for k, v in data.items()}
                loss, aux = ppo_loss(self.net, mb, c.clip, c.vf_coef, c.ent_coef)
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(self.net.parameters(), c.max_grad_norm)
                self.opt.step()
                hist.append({k: float(v) for k, v in aux.items()} | {"loss": float(loss.detach())})
        self.n_updates += 1
        out = {k: float(np.mean([h[k] for h in hist])) for k in hist[0]}
        out["first_epoch_loss"] = float(np.mean([h["loss"] for h in hist[: c.n_minibatches]]))
        out["last_epoch_loss"] = float(np.mean([h["loss"] for h in hist[-c.n_minibatches :]]))
        out.update(
            reward=float(tr["signal"][..., 0].mean()),
            cost=float(tr["cost"].mean()),
            lagrange=lam,
            episodes=float(tr["done"].sum()),
        )
        return out

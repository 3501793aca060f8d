"""MDGNN: centralised multidimensional-GNN power control of the mobile-AP downlink, static APs.

The baseline "MDGNN (1D / 2D / 3D)" of [MOBILE-AP] (section V, Figs. 8 and 14; its ref. [34]:
S. Liu, J. Guo, C. Yang, "Multidimensional graph neural networks for wireless communications",
IEEE Trans. Wireless Commun. 23(4), 2024): one central network reads the observations of all
``M`` APs and outputs every AP's power fractions and antenna weights; the APs do not move
(``move = 0``), which is what [MOBILE-AP] contrasts with its mobile APs. Trained without labels
("unsupervised" learning of a policy through its objective, as Liu, Guo and Yang train their
precoders): gradient ascent (Adam) on the mean slot reward of ``env.transition`` of the
``mobile_ap`` scenario (``cfmimo_jax.envs.mobile_ap``), which is differentiable in the power
and antenna actions through the closed-form SE ([MOBILE-AP] Theorem 1 with per-antenna weights):

    max_theta  E_s [ (1/M) sum_m r_m(s, pi_theta(o(s))) ],
    r_m = sum_k SE_k(rho(a), q(a)) - penalty_m                      ([MOBILE-AP] (22a)-(22e))

The states ``s`` are ``n_envs`` drops (``env.reset``) stepped by the current policy itself, so the
"previous powers / weights / SEs" entries of the observation are those the policy produces: one
update is ``n_steps`` vectorised slots, each an Adam step on the gradient of the batch-mean
reward at the current states followed by ``env.step_batch`` with the action just scored (auto
reset after ``episode_steps`` slots: a new drop).

The multidimensional GNN
------------------------
The observation row of AP ``m`` (``MobileAP._obs``) is ``[g_m. (K), ghat_m. (K), pos_m (2),
rel_m. (2K, UE-major), rho_m. / P_ap (K), q_m. (N), SE (K)]``. ``dims`` chooses the tensor the
hidden representations live on and so the permutations the network respects (Liu, Guo, Yang:
the representation of every hyper-edge, i.e. every tuple of indices, is updated, none is
compressed onto a vertex):

* ``dims=1`` (AP only): ``X[M, F]`` with the whole row ``F = 6K + N + 2`` as the features of AP
  ``m`` (the UE and antenna axes flattened, their order fixed): equivariant under permutations
  of the APs only.
* ``dims=2`` (AP and UE): ``X[M, K, 8 + N]``, entry ``(m, k)`` = ``[g_mk, ghat_mk, dx_mk, dy_mk,
  rho_mk / P_ap, SE_k, pos_m (2), q_m. (N)]`` (the antenna axis flattened into the AP's
  features): equivariant under joint permutations of APs and UEs.
* ``dims=3`` (AP, UE, antenna): ``X[M, K, N, 9 + E]``, entry ``(m, k, n)`` = the eight 2D
  features of ``(m, k)`` (without ``q``), ``q_mn`` and a learned antenna embedding ``e_n[E]``
  (``antenna_embedding``; ``E = 4``). Equivariant under joint permutations of APs and UEs; with
  ``antenna_embedding=false`` also under permutations of the antennas (applied to ``q`` in the
  observation and the output weights; the features then treat antennas alike, so a policy can
  only tell them apart by their previous weights), with the embedding it is not (the ULA's
  antennas are not exchangeable; the embedding lets the weights depend on the position).

Layer ``l`` (``n_layers`` of them, width ``hidden``) on ``h[..., I_1, ..., I_D, H]`` (``D =
dims`` permuted axes; ``relu``), the multidimensional GNN update of every entry from itself and
from its mean and max aggregates along each permuted axis:

    u_i = W_0 h_i + b + sum_{d=1..D} ( W_d^mean mean_{j_d} h_{i[i_d <- j_d]}
                                     + W_d^max  max_{j_d}  h_{i[i_d <- j_d]} )
    h'_i = relu(u_i)            (first layer),     h'_i = h_i + relu(u_i)   (later layers)

(``i = (i_1..i_D)`` an index tuple, ``i[i_d <- j_d]`` the tuple with its ``d``-th index
replaced; the weights are shared by all entries, hence the equivariance). Output heads
(two-layer MLPs of width ``hidden``; ``[mean_x, max_x]`` a mean and max pooling over axis
``x``, which keeps the equivariance of the remaining axes):

* 1D: ``[z^p_m. (K), z^q_m. (N)] = MLP(h_m)``;
* 2D: ``z^p_mk = MLP_p(h_mk)``, ``z^q_m. = MLP_q([mean_k, max_k] h_m.)`` (``N`` outputs);
* 3D: ``z^p_mk = MLP_p([mean_n, max_n] h_mk.)``, ``z^q_mn = MLP_q([mean_k, max_k] h_m.n)``.

Actions: power fractions by a sigmoid per ``(m, k)`` entry, normalised so that the budget
(22d) holds by construction (no power penalty), and antenna weights by a sigmoid per
``(m, n)``:

    a_mk = sigmoid(z^p_mk) / max(1, sum_k' sigmoid(z^p_mk')),      q_mn = sigmoid(z^q_mn),
    move_m = 0.

At the initial parameters (output layers scaled by 0.1) ``z ~ 0``: ``a_mk ~ 1/K`` for ``K >= 2``
(full equal power, the ``static_equal`` heuristic) and ``q ~ 1/2`` (the weights are scale-free),
so training starts near ``static_equal``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from . import engine
from .layers import MLP
from .offpolicy import Config, optimizer, raw_key

DEFAULT_CONFIG = {
    "n_envs": 16,  # drops (parallel environments) per gradient step
    "n_steps": 10,  # slots per update: each one Adam step on the n_envs states, then env.step
    "n_updates": 100,  # updates
    "updates_per_chunk": 10,  # updates per jitted call (metrics, progress, checkpoints between)
    "dims": 3,  # permuted axes: 1 = APs | 2 = APs and UEs | 3 = APs, UEs and antennas
    "hidden": 32,  # width of every hidden representation and head
    "n_layers": 3,  # multidimensional GNN layers
    "antenna_embedding": True,  # dims=3: a learned embedding per antenna (no antenna PE)
    "lr": 0.003,  # Adam learning rate
    "max_grad_norm": 10.0,  # global gradient-norm clipping
}

_EMBED = 4  # width of the learned antenna embedding (dims=3)


def _pool(x, axis: int):
    """``[mean, max]`` of ``x[..., F]`` over ``axis`` (not the feature axis) -> ``[..., 2F]``
    with ``axis`` removed."""
    return jnp.concatenate([jnp.mean(x, axis=axis), jnp.max(x, axis=axis)], axis=-1)


class MDGNNLayer(nnx.Module):
    """One multidimensional GNN layer ``h[..., I_1..I_D, F_in] -> [..., I_1..I_D, F_out]``:
    ``u_i = W_0 h_i + b + sum_d (W_d^mean mean_{j_d} h + W_d^max max_{j_d} h)`` over the ``D``
    permuted axes (the ``D`` axes just before the feature axis), ``relu(u)``, plus ``h`` when
    ``residual`` (module docstring; the Liu-Guo-Yang multidimensional update with mean and max
    pooling). ``self_map`` holds ``W_0, b``; ``pool_map``'s kernel ``[2 D F_in, F_out]`` stacks
    ``[W_1^mean; W_1^max; ...; W_D^mean; W_D^max]``, ``d = 1`` the axis next to the features."""

    def __init__(self, in_features: int, out_features: int, n_axes: int, *, residual: bool, rngs):
        if residual and in_features != out_features:
            raise ValueError("a residual layer needs in_features == out_features")
        self.n_axes = int(n_axes)
        self.residual = bool(residual)
        self.self_map = nnx.Linear(in_features, out_features, rngs=rngs)
        self.pool_map = nnx.Linear(
            2 * self.n_axes * in_features, out_features, use_bias=False, rngs=rngs
        )

    def __call__(self, h):
        pooled = []
        for d in range(self.n_axes):  # over the 1-3 tensor dimensions, not over data
            axis = h.ndim - 2 - d
            for agg in (jnp.mean, jnp.max):
                pooled.append(jnp.broadcast_to(agg(h, axis=axis, keepdims=True), h.shape))
        u = self.self_map(h) + self.pool_map(jnp.concatenate(pooled, axis=-1))
        out = nnx.relu(u)
        return h + out if self.residual else out


class MDGNN(nnx.Module):
    """The centralised MDGNN policy network (module docstring): ``obs[..., M, 6K + N + 2] ->
    (z_power[..., M, K], z_antenna[..., M, N])``, the logits before the sigmoids."""

    def __init__(
        self,
        n_aps: int,
        n_ues: int,
        n_antennas: int,
        *,
        dims: int = 3,
        hidden: int = 32,
        n_layers: int = 3,
        antenna_embedding: bool = True,
        rngs: nnx.Rngs,
    ):
        self.M, self.K, self.N = int(n_aps), int(n_ues), int(n_antennas)
        self.dims = int(dims)
        self.use_embedding = bool(antenna_embedding) and self.dims == 3
        K, N = self.K, self.N
        self.obs_dim = 6 * K + N + 2
        in_f = {1: self.obs_dim, 2: 8 + N, 3: 9 + (_EMBED if self.use_embedding else 0)}[self.dims]
        if self.use_embedding:
            self.embedding = nnx.Param(0.5 * jax.random.normal(rngs.params(), (N, _EMBED)))
        self.gnn = nnx.List(
            [
                MDGNNLayer(in_f if i == 0 else hidden, hidden, self.dims, residual=i > 0, rngs=rngs)
                for i in range(n_layers)
            ]
        )
        h2 = (hidden,)
        if self.dims == 1:
            self.head = MLP(hidden, h2, K + N, out_scale=0.1, rngs=rngs)
        else:
            p_in = hidden if self.dims == 2 else 2 * hidden
            self.head_power = MLP(p_in, h2, 1, out_scale=0.1, rngs=rngs)
            self.head_antenna = MLP(
                2 * hidden, h2, N if self.dims == 2 else 1, out_scale=0.1, rngs=rngs
            )

    def features(self, obs):
        """The input tensor of ``dims`` (module docstring): ``[..., M, F]`` (1D),
        ``[..., M, K, 8 + N]`` (2D) or ``[..., M, K, N, 9 (+ E)]`` (3D)."""
        K, N = self.K, self.N
        if obs.shape[-1] != self.obs_dim or obs.shape[-2] != self.M:
            raise ValueError(
                f"MDGNN expects obs[..., {self.M}, {self.obs_dim}] (n_aps, 6 n_ues + n_antennas "
                f"+ 2), got shape {obs.shape}"
            )
        if self.dims == 1:
            return obs
        lead = obs.shape[:-1]  # [..., M]
        g, ghat = obs[..., :K], obs[..., K : 2 * K]
        pos = obs[..., 2 * K : 2 * K + 2]
        rel = obs[..., 2 * K + 2 : 4 * K + 2].reshape(lead + (K, 2))
        rho = obs[..., 4 * K + 2 : 5 * K + 2]
        q = obs[..., 5 * K + 2 : 5 * K + 2 + N]
        se = obs[..., 5 * K + 2 + N :]
        edge = jnp.concatenate(
            [
                jnp.stack([g, ghat], -1),
                rel,
                jnp.stack([rho, se], -1),
                jnp.broadcast_to(pos[..., None, :], lead + (K, 2)),
            ],
            -1,
        )  # [..., M, K, 8]
        if self.dims == 2:
            qk = jnp.broadcast_to(q[..., None, :], lead + (K, N))
            return jnp.concatenate([edge, qk], -1)
        parts = [
            jnp.broadcast_to(edge[..., None, :], lead + (K, N, 8)),
            jnp.broadcast_to(q[..., None, :, None], lead + (K, N, 1)),
        ]
        if self.use_embedding:
            emb = self.embedding[...].astype(obs.dtype)
            parts.append(jnp.broadcast_to(emb, lead + (K, N, _EMBED)))
        return jnp.concatenate(parts, -1)

    def __call__(self, obs):
        h = self.features(obs)
        for layer in self.gnn:  # over layers, not over data
            h = layer(h)
        if self.dims == 1:
            z = self.head(h)
            return z[..., : self.K], z[..., self.K :]
        if self.dims == 2:  # h[..., M, K, H]
            return self.head_power(h)[..., 0], self.head_antenna(_pool(h, -2))
        # h[..., M, K, N, H]
        return self.head_power(_pool(h, -2))[..., 0], self.head_antenna(_pool(h, -3))[..., 0]


def actions_from_logits(z_power, z_antenna):
    """``a_mk = sigmoid(z_mk) / max(1, sum_k sigmoid(z_mk))``, ``q_mn = sigmoid(z_mn)`` (module
    docstring; ``z_power[..., M, K]``, ``z_antenna[..., M, N]``) -> ``(a, q)``, the same
    shapes; ``sum_k a_mk <= 1`` ((22d) of [MOBILE-AP] without a penalty)."""
    s = jax.nn.sigmoid(z_power)
    a = s / jnp.maximum(1.0, jnp.sum(s, axis=-1, keepdims=True))
    return a, jax.nn.sigmoid(z_antenna)


@functools.partial(jax.tree_util.register_dataclass)
@dataclasses.dataclass(frozen=True)
class RunnerState:
    """``params`` (the MDGNN's ``nnx.State``), Adam ``opt_state``, the ``n_envs`` environments
    (``env_state``, ``obs[n_envs, M, F]``), the raw PRNG ``key``, ``update`` (updates done),
    ``env_step`` (vectorised slots done = gradient steps done) and ``ep_return[n_envs]``
    (running episode sums of the mean reward)."""

    params: Any
    opt_state: Any
    env_state: Any
    obs: jax.Array
    key: jax.Array
    update: jax.Array
    env_step: jax.Array
    ep_return: jax.Array


def _positive_int(cfg, name):
    v = cfg[name]
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")


def check_config(cfg: dict) -> dict:
    """``DEFAULT_CONFIG`` updated with ``cfg``; an unknown key or a bad value raises
    ``ValueError`` naming it."""
    unknown = sorted(set(cfg) - set(DEFAULT_CONFIG))
    if unknown:
        raise ValueError(f"unknown mdgnn trainer option(s) {unknown}")
    cfg = {**DEFAULT_CONFIG, **cfg}
    for name in ("n_envs", "n_steps", "n_updates", "updates_per_chunk", "hidden", "n_layers"):
        _positive_int(cfg, name)
    if cfg["n_updates"] % cfg["updates_per_chunk"]:
        raise ValueError(
            f"updates_per_chunk={cfg['updates_per_chunk']} must divide n_updates={cfg['n_updates']}"
        )
    if (
        not isinstance(cfg["dims"], int)
        or isinstance(cfg["dims"], bool)
        or cfg["dims"] not in (1, 2, 3)
    ):
        raise ValueError(f"dims must be 1, 2 or 3, got {cfg['dims']!r}")
    if not isinstance(cfg["antenna_embedding"], bool):
        raise ValueError(
            f"antenna_embedding must be true or false, got {cfg['antenna_embedding']!r}"
        )
    for name in ("lr", "max_grad_norm"):
        v = cfg[name]
        if isinstance(v, bool) or not isinstance(v, int | float) or not v > 0 or v == float("inf"):
            raise ValueError(f"{name} must be a positive number, got {v!r}")
    return cfg


class MDGNNTrainer:
    """The MDGNN trainer (module docstring) on a ``mobile_ap`` environment: the trainer contract
    of ``algorithms`` (``init``, ``update``, ``train``, ``act``, ``config``)."""

    def __init__(self, cfg: dict, env, env_params):
        cfg = check_config(cfg)
        keys = set(env.action_space) if isinstance(env.action_space, dict) else set()
        if keys != {"move", "power", "antenna"} or not all(
            hasattr(env, a) for a in ("M", "K", "N", "transition")
        ):
            raise ValueError(
                "mdgnn needs the mobile_ap scenario (dict actions move / power / antenna per AP, "
                f"a differentiable transition); got action space {env.action_space}"
            )
        if tuple(env.obs_shape) != (6 * env.K + env.N + 2,):
            raise ValueError(
                f"mdgnn needs the mobile_ap observation layout (6 K + N + 2 = "
                f"{6 * env.K + env.N + 2} features), got {env.obs_shape}"
            )
        self.config = Config(cfg)
        self.env = env
        self.env_params = env_params
        self.n_agents = int(env.n_agents)
        self.kw = dict(
            n_aps=env.M,
            n_ues=env.K,
            n_antennas=env.N,
            dims=cfg["dims"],
            hidden=cfg["hidden"],
            n_layers=cfg["n_layers"],
            antenna_embedding=cfg["antenna_embedding"],
        )
        self.graphdef, _ = nnx.split(MDGNN(**self.kw, rngs=nnx.Rngs(0)))
        self.opt = optimizer(cfg["lr"], cfg["max_grad_norm"])

    # ---- network --------------------------------------------------------------------------

    def init_params(self, key):
        """The MDGNN's parameters (an ``nnx.State``) from a PRNG key (raw or typed)."""
        key = raw_key(key)
        return nnx.split(MDGNN(**self.kw, rngs=nnx.Rngs(params=jax.random.wrap_key_data(key))))[1]

    def logits(self, params, obs):
        """``obs[..., M, F] -> (z_power[..., M, K], z_antenna[..., M, N])``."""
        return nnx.merge(self.graphdef, params)(obs)

    def act(self, params, obs, key=None):
        """The policy ``obs[..., M, 6K + N + 2]`` (all APs' observations) -> the actions of all
        APs, ``{"move": 0 [..., M, 2], "power": a [..., M, K], "antenna": q [..., M, N]}``
        (module docstring). Deterministic: ``key`` is accepted and ignored."""
        del key
        obs = jnp.asarray(obs).astype(jnp.float32)
        a, q = actions_from_logits(*self.logits(params, obs))
        return {"move": jnp.zeros(obs.shape[:-1] + (2,), a.dtype), "power": a, "antenna": q}

    # ---- training -------------------------------------------------------------------------

    def init(self, key) -> RunnerState:
        """A fresh ``RunnerState`` from a PRNG key (typed or raw)."""
        key = raw_key(key)
        key, k_net, k_env = jax.random.split(key, 3)
        params = self.init_params(k_net)
        n = self.config.n_envs
        obs, env_state = jax.vmap(self.env.reset, (0, None))(
            jax.random.split(k_env, n), self.env_params
        )
        return RunnerState(
            params=params,
            opt_state=self.opt.init(params),
            env_state=env_state,
            obs=obs.astype(jnp.float32),
            key=key,
            update=jnp.int32(0),
            env_step=jnp.int32(0),
            ep_return=jnp.zeros((n,), jnp.float32),
        )

    def init_with_metrics(self, key):
        """``(init(key), {})``: no pre-training."""
        return self.init(key), {}

    def objective(self, params, env_state, obs):
        """The batch-mean slot reward ``(1 / (B M)) sum_b sum_m r_m(s_b, pi(o_b))`` of
        ``env.transition`` (``env_state`` / ``obs[B, M, F]``) -> ``(value, (actions, info))``;
        differentiable in ``params``."""
        actions = self.act(params, obs)
        _, reward, info = jax.vmap(self.env.transition, (0, 0, None))(
            env_state, actions, self.env_params
        )
        return jnp.mean(reward), (actions, info)

    def _iteration(self, rs: RunnerState, _):
        c = self.config
        env = self.env

        def slot(carry, key):
            params, opt_state, env_state, obs, ep_ret = carry
            (value, (actions, _)), grad = jax.value_and_grad(self.objective, has_aux=True)(
                params, env_state, obs
            )
            neg = jax.tree.map(lambda g: -g, grad)  # ascent on the reward
            upd, opt_state = self.opt.update(neg, opt_state, params)
            params = optax.apply_updates(params, upd)
            actions = jax.lax.stop_gradient(actions)
            obs2, env_state, reward, done, info = env.step_batch(
                jax.random.split(key, c.n_envs), env_state, actions, self.env_params
            )
            reward = reward.astype(jnp.float32)
            ep_ret = ep_ret + jnp.mean(reward, -1)
            out = {
                k: jnp.mean(v.astype(jnp.float32))
                for k, v in info.items()
                if k not in ("final_obs", "final_global_state", "terminated", "truncated")
                and v.shape == (c.n_envs,)
            }
            out.update(
                reward=jnp.mean(reward),
                objective=value.astype(jnp.float32),
                grad_norm=optax.tree.norm(grad).astype(jnp.float32),
                ep_sum=jnp.sum(jnp.where(done, ep_ret, 0.0)),
                ep_n=jnp.sum(done).astype(jnp.float32),
            )
            ep_ret = jnp.where(done, 0.0, ep_ret)
            return (params, opt_state, env_state, obs2.astype(jnp.float32), ep_ret), out

        key, k_roll = jax.random.split(rs.key)
        carry = (rs.params, rs.opt_state, rs.env_state, rs.obs, rs.ep_return)
        carry, traj = jax.lax.scan(slot, carry, jax.random.split(k_roll, c.n_steps))
        params, opt_state, env_state, obs, ep_ret = carry
        n_ep = jnp.sum(traj.pop("ep_n"))
        ep_sum = jnp.sum(traj.pop("ep_sum"))
        metrics = {k: jnp.mean(v) for k, v in traj.items()}
        metrics["episodes"] = n_ep
        metrics["episode_return"] = ep_sum / jnp.maximum(n_ep, 1.0)
        rs = RunnerState(
            params=params,
            opt_state=opt_state,
            env_state=env_state,
            obs=obs,
            key=key,
            update=rs.update + 1,
            env_step=rs.env_step + c.n_steps,
            ep_return=ep_ret,
        )
        return rs, metrics

    def update(self, rs: RunnerState):
        """``updates_per_chunk`` updates: ``-> (state, metrics)``, metrics ``[chunk]`` each
        (``reward``, ``sum_se``, ``min_se``, ``penalty``, ``power_frac``, ``move_m``,
        ``objective``, ``grad_norm``, ``episodes``, ``episode_return``)."""
        return engine.update_chunk(self._iteration, rs, self.config.updates_per_chunk)

    def train(self, key):
        """All ``n_updates`` updates from ``key``: ``-> (state, metrics[n_updates])``; one
        jittable function of the key (``jax.vmap`` it over seeds)."""
        n_chunks = self.config.n_updates // self.config.updates_per_chunk
        return engine.train_all(self.init(key), self.update, n_chunks)

    def summary(self, rs: RunnerState) -> dict:
        """Gradient steps done and the network's parameter count (for ``summary.json``)."""
        return {
            "gradient_steps": int(rs.env_step),
            "parameters": int(sum(x.size for x in jax.tree.leaves(rs.params))),
        }


def make_train(config: dict, env, env_params) -> MDGNNTrainer:
    """``MDGNNTrainer`` for a ``mobile_ap`` environment (``config``: keys of ``DEFAULT_CONFIG``)."""
    return MDGNNTrainer(dict(config), env, env_params)

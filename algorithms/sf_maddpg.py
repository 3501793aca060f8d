"""SF-MADDPG and its ablations ([MOBILE-AP] section IV, Algorithm 2).

MADDPG (``algorithms.ddpg``) with three switchable parts, each of the paper:

* ``actor_input="hpn"``: the dynamic hyper permutation network of Algorithm 1
  (``algorithms.hpn``, eqs. (34)-(41)): the observation split into per-UE entities (the
  environment's ``obs_layout``), a permutation-invariant hypernetwork embedding ``A_p``
  (eq. (40)), the backbone ``B_p`` (a GRU of ``rnn_hidden`` units, Table II: 256, iterated
  ``rnn_iters`` times from a zero hidden state, Algorithm 1 lines 2-5), a PI head ``C_p`` (a
  linear layer of ``b``) for the actions that do not depend on the UE order (the move and the
  antenna weights) and a PE head ``D_p`` (eq. (41)) for the per-UE actions (the power split),
  as the environment's ``action_layout`` says (eq. (46)). ``"mlp"``: a ReLU layer of the flat
  observation as ``A_p`` and linear heads (no permutation structure);
* ``comm="gnn"``: GNN-aided communication between the agents (``algorithms.comm``,
  eqs. (42)-(45)) between ``A_p`` and ``B_p``, over the ``gnn_neighbours`` nearest APs of
  every AP, rebuilt from the observed positions at every step;
* ``credit``: ``"arn_hrn"`` (directional decoupling, eqs. (47)-(53): attention intrinsic
  rewards, hypernetwork mixing, mixed critics, an extrinsic centralised critic and the
  meta-gradient), ``"liir"`` (LIIR's per-agent intrinsic reward with fixed mixing
  ``r_ex + liir_lambda r_in``, the same meta-gradient) or ``"none"`` (MADDPG's critics of the
  extrinsic rewards).

Presets (``algorithms.names()``): ``sf_maddpg`` (hpn + gnn + arn_hrn), ``pe_maddpg`` (hpn),
``co_maddpg`` (mlp + gnn), ``airmn`` (mlp + arn_hrn: an attention-based intrinsic reward
mixing network without the actor's permutation and communication parts) and ``liir``
(mlp + liir). The actor's parameters are shared by all agents, without an agent id (the APs
are homogeneous; with ``comm`` the policy is then equivariant to permutations of the APs).

One gradient step on a minibatch (``O, s, u, r_ex, O', s'``):

1. intrinsic and mixed rewards with the current ``eta`` (recomputed from the stored
   observations and actions, so the stored experience never goes stale):
   ``r_in = A_r(O, u)``, ``r_m = H_r(r_in, r_ex)`` (eq. (47));
2. the mixed critics ``Q_l(s, u)`` regress ``y_m = r_m + gamma Q'_l(s', mu'(O'))``
   (eq. (48); the critics are MADDPG's centralised ones, the paper's ``Q_l(o_l, a_l)``
   conditioned on the global state);
3. the extrinsic critic ``Q_g(s, u)`` regresses ``y_ex = r_ex + gamma Q'_g(s', mu'(O'))``
   with the team reward ``r_ex = mean_l r_ex,l`` (eq. (52));
4. the actors take one Adam step on
   ``L(theta, eta) = -mean_l Q_l(s, mu_l(O), u_-l) - pg_weight mean_l[log pi_l(u_l | O)
   A_l(eta)]`` (the deterministic policy gradient through the mixed critic, plus the
   policy-gradient term of eqs. (49)-(51) with the Gaussian exploration policy
   ``log pi = -|u - mu(O)|^2 / 2`` (unit variance: the scale goes into the step) and the mixed
   advantage ``A_l = r_m,l + gamma V_l(s') - V_l(s)``, ``V_l(s) = Q_l(s, mu(O))``);
5. the meta-gradient (eq. (53), LIIR's): with the one-step actor
   ``theta'(eta) = theta - meta_step grad_theta L(theta, eta)`` (plain gradient step of size
   ``tau_a = meta_step``), ``eta`` ascends ``mean Q_g(s, mu_theta'(O))`` by Adam
   (``lr_meta``), differentiating through ``grad_theta L`` (second order) on ``meta_batch``
   transitions of the minibatch, every ``meta_period`` gradient steps (1: every step, as
   Algorithm 2; larger values save the second-order pass on a CPU).

Targets are Polyak averages (``tau``) as in MADDPG. With ``credit="none"`` steps 1, 3 and 5
are skipped and ``r_m = r_ex`` (then ``pe_maddpg`` / ``co_maddpg`` are MADDPG with the
permutation / communication actor).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from cfmimo_jax.envs import spaces

from . import ddpg
from . import offpolicy as op
from .comm import CommGNN, neighbour_mask
from .credit import AttentionIntrinsicReward, HyperRewardMixer, LocalIntrinsicReward
from .hpn import HyperEntityEmbedding, HyperEquivariantHead, split_entities

SF_DEFAULTS = {
    "actor_input": "hpn",  # hpn | mlp (set by the preset)
    "comm": "gnn",  # gnn | none (set by the preset)
    "credit": "arn_hrn",  # arn_hrn | liir | none (set by the preset)
    "embed_dim": 64,  # d_r, the embedding and GNN width (Table II: GNN hidden 64)
    "hyper_hidden": 128,  # hidden width of the hypernetworks (Table II: DHPN hidden 128)
    "hpn_heads": 8,  # hypernetwork heads (Table II: 8)
    "rnn_hidden": 256,  # backbone GRU width (Table II: 256)
    "rnn_iters": 1,  # GRU iterations per decision from a zero state (Algorithm 1's loop)
    "gnn_rounds": 2,  # J
    "gnn_heads": 4,  # attention heads (Table II: 4)
    "gnn_neighbours": 3,  # |N_l|: the nearest APs each AP talks to
    "intrinsic_hidden": 64,  # ARN / LIIR / HRN width
    "intrinsic_heads": 4,  # ARN attention heads
    "intrinsic_scale": 1.0,  # |r_in| <= scale (reward units)
    "liir_lambda": 0.1,  # LIIR's fixed mixing weight of r_in
    "pg_weight": 1.0,  # weight of the policy-gradient term of eqs. (49)-(51)
    "meta_step": 0.01,  # tau_a: the actor step size inside the meta-gradient (eq. (53))
    "lr_meta": 0.001,  # Adam learning rate of eta (ARN, HRN / LIIR)
    "meta_batch": 64,  # transitions of the minibatch the meta-gradient uses
    "meta_period": 1,  # a meta-gradient step every meta_period gradient steps (1: every step)
    "lr_ex_critic": 0.001,  # the extrinsic critic's learning rate
}
DEFAULT_CONFIG = {**ddpg.DEFAULT_CONFIG, **SF_DEFAULTS}
DEFAULT_CONFIG.pop("centralised_actor")
_CHOICES = {
    "actor_input": ("hpn", "mlp"),
    "comm": ("gnn", "none"),
    "credit": ("arn_hrn", "liir", "none"),
}


class _Net:
    """An NNX module as a pure function of its parameter pytree: ``init(key) -> params``,
    ``apply(params, *args)``."""

    def __init__(self, ctor):
        self.ctor = ctor
        self.graphdef, _ = nnx.split(ctor(nnx.Rngs(0)))

    def init(self, key):
        if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
            key = jax.random.wrap_key_data(key)
        return nnx.split(self.ctor(nnx.Rngs(params=key)))[1]

    def apply(self, params, *args):
        return nnx.merge(self.graphdef, params)(*args)


@dataclasses.dataclass(frozen=True)
class _Layout:
    entity: tuple
    own: tuple
    position: tuple
    position_period: float | None

    def __getitem__(self, k):  # the index arrays, as hpn.split_entities reads them
        return np.asarray(getattr(self, k), np.int32)


def _static_layout(layout) -> _Layout:
    return _Layout(
        tuple(map(tuple, np.asarray(layout["entity"]).tolist())),
        tuple(np.asarray(layout["own"]).tolist()),
        tuple(np.asarray(layout.get("position", ())).tolist()),
        layout.get("position_period"),
    )


class IteratedGRU(nnx.Module):
    """The backbone ``B_p`` of Algorithm 1: ``x[..., F] -> b[..., H]``, a GRU cell (Cho et al.
    2014, the form of ``layers.GRUEncoder``) applied ``n_iters`` times to the same input from
    the hidden state ``R^(0) = 0``, ``R^(i) = GRU(x, R^(i-1))``, ``b = R^(n_iters)``. The
    iterations are unrolled (a handful, static), which keeps second-order derivatives (the
    meta-gradient) free of loops."""

    def __init__(self, in_features: int, hidden: int, n_iters: int, *, rngs: nnx.Rngs):
        self.hidden = int(hidden)
        self.n_iters = int(n_iters)
        self.dense_i = nnx.Linear(int(in_features), 3 * self.hidden, rngs=rngs)
        self.dense_h = nnx.Linear(
            self.hidden, 3 * self.hidden, kernel_init=nnx.initializers.orthogonal(), rngs=rngs
        )

    def __call__(self, x):
        xr, xz, xn = jnp.split(self.dense_i(x), 3, axis=-1)
        h = jnp.zeros(x.shape[:-1] + (self.hidden,), x.dtype)
        for _ in range(self.n_iters):  # Algorithm 1's iterations (static, unrolled)
            hr, hz, hn = jnp.split(self.dense_h(h), 3, axis=-1)
            r = jax.nn.sigmoid(xr + hr)
            z = jax.nn.sigmoid(xz + hz)
            n = jnp.tanh(xn + r * hn)
            h = (1.0 - z) * n + z * h
        return h


class EntityActor(nnx.Module):
    """The SF-MADDPG actor of all agents: ``obs[..., A, F] -> z[..., A, D]`` (pre-``tanh``
    flat actions in ``spaces.flatten`` order); module docstring for the parts."""

    def __init__(self, env, cfg, *, rngs: nnx.Rngs):
        self.input = cfg["actor_input"]
        self.comm = cfg["comm"]
        d = int(cfg["embed_dim"])
        F = int(env.observation_space.shape[0])
        layout = getattr(env, "obs_layout", None)
        if self.input == "hpn" or self.comm == "gnn":
            if layout is None:
                raise ValueError(
                    "actor_input=hpn and comm=gnn need an environment that declares obs_layout "
                    "(its entity rows, own features and position)"
                )
        # static index tuples (hashable: not parameters)
        self.layout = None if layout is None else _static_layout(layout)
        if self.input == "hpn":
            ent = layout["entity"]
            self.embed = HyperEntityEmbedding(
                ent.shape[1],
                len(layout["own"]),
                d,
                cfg["hpn_heads"],
                cfg["hyper_hidden"],
                rngs=rngs,
            )
        else:
            self.embed = nnx.Linear(F, d, rngs=rngs)
        if self.comm == "gnn":
            self.gnn = CommGNN(d, cfg["gnn_rounds"], cfg["gnn_heads"], rngs=rngs)
            self.n_neighbours = int(cfg["gnn_neighbours"])
        x_dim = 2 * d if self.comm == "gnn" else d
        self.rnn_iters = int(cfg["rnn_iters"])
        self.rnn = IteratedGRU(x_dim, int(cfg["rnn_hidden"]), self.rnn_iters, rngs=rngs)
        # heads, one per action leaf in spaces.flatten order
        leaves, _ = jax.tree.flatten(env.action_space, is_leaf=spaces.is_space)
        keys = sorted(env.action_space) if isinstance(env.action_space, dict) else None
        kinds = getattr(env, "action_layout", None)
        self.kinds, heads = [], []
        for i, s in enumerate(leaves):
            kind = "invariant"
            if self.input == "hpn" and kinds is not None and keys is not None:
                kind = kinds.get(keys[i], "invariant")
            n = math.prod(s.shape)
            if kind == "entity":
                if tuple(s.shape) != (layout["entity"].shape[0],):
                    raise ValueError(
                        f"action leaf {keys[i]!r} is per entity but has shape {s.shape}, not "
                        f"({layout['entity'].shape[0]},)"
                    )
                heads.append(
                    HyperEquivariantHead(
                        layout["entity"].shape[1],
                        int(cfg["rnn_hidden"]),
                        d,
                        cfg["hpn_heads"],
                        cfg["hyper_hidden"],
                        rngs=rngs,
                    )
                )
            else:
                heads.append(
                    nnx.Linear(
                        int(cfg["rnn_hidden"]),
                        n,
                        rngs=rngs,
                        kernel_init=nnx.initializers.normal(0.01),
                    )
                )
            self.kinds.append(kind)
        self.heads = nnx.List(heads)

    def __call__(self, obs):
        if self.input == "hpn":
            e, own = split_entities(obs, self.layout)
            x = self.embed(e, own)  # A_p, eq. (40)
        else:
            x = jax.nn.relu(self.embed(obs))
        if self.comm == "gnn":
            pos = obs[..., jnp.asarray(self.layout.position)]
            mask = neighbour_mask(pos, self.n_neighbours, self.layout.position_period)
            x = self.gnn(x, mask)  # eqs. (42)-(45)
        b = self.rnn(x)  # B_p: Algorithm 1, from R^(0) = 0
        outs = []
        for kind, head in zip(self.kinds, self.heads, strict=True):  # over action leaves
            if kind == "entity":
                outs.append(head(e, b))  # D_p, eq. (41)
            else:
                outs.append(head(b))  # C_p
        return jnp.concatenate(outs, -1)


class SFMADDPGTrainer(ddpg.DDPGTrainer):
    """SF-MADDPG and its ablations (module docstring)."""

    def __init__(self, cfg: dict, env, env_params):
        cfg = op.check_keys(cfg, DEFAULT_CONFIG, "sf_maddpg")
        sf = {k: cfg.pop(k) for k in SF_DEFAULTS}
        for k, choices in _CHOICES.items():
            if sf[k] not in choices:
                raise ValueError(f"{k} must be one of {choices}, got {sf[k]!r}")
        for k in (
            "embed_dim",
            "hyper_hidden",
            "hpn_heads",
            "rnn_hidden",
            "rnn_iters",
            "gnn_rounds",
            "gnn_heads",
            "gnn_neighbours",
            "intrinsic_hidden",
            "intrinsic_heads",
            "meta_batch",
            "meta_period",
        ):
            v = sf[k]
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{k} must be a positive integer, got {v!r}")
        for k in ("intrinsic_scale", "liir_lambda", "pg_weight", "meta_step"):
            if not (isinstance(sf[k], int | float) and sf[k] >= 0):
                raise ValueError(f"{k} must be a number >= 0, got {sf[k]!r}")
        for k in ("lr_meta", "lr_ex_critic"):
            if not (isinstance(sf[k], int | float) and sf[k] > 0):
                raise ValueError(f"{k} must be positive, got {sf[k]!r}")
        if sf["meta_batch"] > cfg.get("batch_size", ddpg.DEFAULT_CONFIG["batch_size"]):
            raise ValueError(
                f"meta_batch={sf['meta_batch']} must not exceed batch_size={cfg['batch_size']}"
            )
        super().__init__({**cfg, "centralised_actor": False}, env, env_params)
        self.sf = op.Config(sf)
        self.actor_net = _Net(lambda rngs: EntityActor(env, sf, rngs=rngs))
        A, D, F = self.n_agents, self.D, self.F
        if sf["credit"] != "none":
            self.critic_ex = op.AgentMLP(self.S + A * D, self.config.hidden, 1, None)
            self.opt_ex = op.optimizer(sf["lr_ex_critic"], self.config.max_grad_norm)
            self.opt_meta = op.optimizer(sf["lr_meta"], self.config.max_grad_norm)
        h = sf["intrinsic_hidden"]
        if sf["credit"] == "arn_hrn":
            self.arn = _Net(
                lambda rngs: AttentionIntrinsicReward(
                    F, D, h, sf["intrinsic_heads"], sf["intrinsic_scale"], rngs=rngs
                )
            )
            self.hrn = _Net(lambda rngs: HyperRewardMixer(self.S, A, h, rngs=rngs))
        elif sf["credit"] == "liir":
            self.liir = _Net(
                lambda rngs: LocalIntrinsicReward(F, D, A, h, sf["intrinsic_scale"], rngs=rngs)
            )

    # ---- networks -------------------------------------------------------------------------

    def policy_pre(self, actor_params, obs):
        lead = obs.shape[: obs.ndim - 1 - len(self.env.obs_shape)]
        x = obs.reshape(lead + (self.n_agents, self.F))
        return self.actor_net.apply(actor_params, x)

    def mixed_reward(self, eta, obs, u, joint, r_ex):
        """``(r_m[..., A], r_in[..., A], w_ex[..., A])`` of eq. (47) with parameters ``eta``."""
        credit = self.sf.credit
        if credit == "arn_hrn":
            r_in = self.arn.apply(eta["arn"], obs, u)
            r_m, w_ex = self.hrn.apply(eta["hrn"], joint, r_ex, r_in)
            return r_m, r_in, w_ex
        if credit == "liir":
            r_in = self.liir.apply(eta["liir"], obs, u)
            return r_ex + self.sf.liir_lambda * r_in, r_in, jnp.ones_like(r_ex)
        return r_ex, jnp.zeros_like(r_ex), jnp.ones_like(r_ex)

    # ---- hooks ----------------------------------------------------------------------------

    def init_learner(self, key):
        ka, kc, kx, ki, kh = jax.random.split(key, 5)
        actor, critic = self.actor_net.init(ka), self.critic.init(kc)
        params = {
            "actor": actor,
            "critic": critic,
            "actor_target": actor,
            "critic_target": critic,
        }
        opt_state = {"actor": self.opt_actor.init(actor), "critic": self.opt_critic.init(critic)}
        if self.sf.credit != "none":
            ex = self.critic_ex.init(kx)
            eta = (
                {"arn": self.arn.init(ki), "hrn": self.hrn.init(kh)}
                if self.sf.credit == "arn_hrn"
                else {"liir": self.liir.init(ki)}
            )
            params.update(critic_ex=ex, critic_ex_target=ex, eta=eta)
            opt_state.update(critic_ex=self.opt_ex.init(ex), eta=self.opt_meta.init(eta))
        return params, opt_state

    def q_ex(self, critic_ex, joint, u):
        """The extrinsic critic ``Q_g(s, u[..., A, D]) -> [...]`` (eq. (52))."""
        flat = u.reshape(u.shape[:-2] + (self.n_agents * self.D,))
        return self.critic_ex.apply(critic_ex, jnp.concatenate([joint, flat], -1))[..., 0]

    def dpg_loss(self, critic, actor, obs, act, joint):
        """MADDPG's actor loss ``-mean_l Q_l(s, u_1..mu_l(O)..u_A)`` (+ ``action_reg``)
        through the (mixed) critics: ``obs[B, A, F]``, ``act[B, A, D]``, ``joint[B, S]``."""
        A, D = self.n_agents, self.D
        z = self.policy_pre(actor, obs)
        mu = jnp.tanh(z)
        reg = self.config.action_reg * jnp.mean(z**2)
        eye = jnp.eye(A, dtype=bool)[None, :, :, None]
        mix = jnp.where(eye, mu[:, None], act[:, None])  # [B, i, A, D]
        mix = mix.reshape(mix.shape[:2] + (A * D,))
        return reg - jnp.mean(self.q_per_agent(critic, joint, mix, obs))

    def pg_loss(self, actor, eta, obs, act, joint, r_ex, v_terms):
        """The policy-gradient term of eqs. (49)-(51): ``-pg_weight mean_l[log pi_l(u_l|O)
        A_l]`` with ``A_l = r_m,l(eta) + v_terms_l`` (``v_terms = gamma V(s') - V(s)``,
        constants) and ``log pi = -|u - mu(O)|^2 / 2``; ``r_ex[B, A]``."""
        r_m = self.mixed_reward(eta, obs, act, joint, r_ex)[0]
        mu = jnp.tanh(self.policy_pre(actor, obs))
        logp = -0.5 * jnp.sum((act - mu) ** 2, -1)  # [B, A]
        return -self.sf.pg_weight * jnp.mean(logp * (r_m + v_terms))

    def meta_objective(self, actor, critic, critic_ex, eta, obs, act, joint, r_ex, v_terms):
        """Eq. (53): the extrinsic value ``mean Q_g(s, mu_theta'(O))`` of the actors after one
        plain gradient step ``theta' = theta - meta_step grad_theta L(theta, eta)`` on the
        actor loss of step 4 (``dpg_loss + pg_loss``); a function of ``eta`` to ascend."""

        def loss(ap):
            return self.dpg_loss(critic, ap, obs, act, joint) + self.pg_loss(
                ap, eta, obs, act, joint, r_ex, v_terms
            )

        g = jax.grad(loss)(actor)
        theta1 = jax.tree.map(lambda t, d: t - self.sf.meta_step * d, actor, g)
        return jnp.mean(self.q_ex(critic_ex, joint, self.policy_u(theta1, obs)))

    def learn(self, params, opt_state, batch, key, grad_step):
        c, sf = self.config, self.sf
        credit = sf.credit != "none"
        joint = self.joint_input(batch.obs, batch.state)
        joint2 = self.joint_input(batch.next_obs, batch.next_state)
        r_ex = self.signal(batch.reward)  # [B, A]
        not_term = 1.0 - batch.terminated.astype(jnp.float32)[..., None]
        eta = params.get("eta")
        r_m, r_in, w_ex = self.mixed_reward(eta, batch.obs, batch.action, joint, r_ex)
        u2 = self.policy_u(params["actor_target"], batch.next_obs)

        # 2. mixed critics (eq. (48))
        q2 = self.q_values(params["critic_target"], joint2, u2, batch.next_obs)
        y = jax.lax.stop_gradient(r_m + c.gamma * not_term * q2)

        def critic_loss(cp):
            q = self.q_values(cp, joint, batch.action, batch.obs)
            return jnp.mean((q - y) ** 2), q

        (l_c, q), g_c = jax.value_and_grad(critic_loss, has_aux=True)(params["critic"])
        upd, os_c = self.opt_critic.update(g_c, opt_state["critic"], params["critic"])
        critic = optax.apply_updates(params["critic"], upd)
        new_params, new_opt = dict(params), dict(opt_state)
        metrics = {"critic_loss": l_c, "q": jnp.mean(q)}

        # 3. extrinsic critic (eq. (52)) of the team reward
        if credit:
            r_team = jnp.mean(r_ex, -1)
            y_ex = jax.lax.stop_gradient(
                r_team
                + c.gamma * not_term[..., 0] * self.q_ex(params["critic_ex_target"], joint2, u2)
            )

            def ex_loss(p):
                return jnp.mean((self.q_ex(p, joint, batch.action) - y_ex) ** 2)

            l_ex, g_ex = jax.value_and_grad(ex_loss)(params["critic_ex"])
            upd, os_ex = self.opt_ex.update(g_ex, opt_state["critic_ex"], params["critic_ex"])
            critic_ex = optax.apply_updates(params["critic_ex"], upd)
            new_params["critic_ex"] = critic_ex
            new_opt["critic_ex"] = os_ex
            metrics.update(ex_critic_loss=l_ex)
            # the mixed advantage's value terms (constants of theta and eta)
            v = self.q_values(critic, joint, self.policy_u(params["actor"], batch.obs), batch.obs)
            v2 = self.q_values(critic, joint2, u2, batch.next_obs)
            v_terms = jax.lax.stop_gradient(c.gamma * not_term * v2 - v)

        # 4. actor step
        def actor_loss(ap):
            l = self.dpg_loss(critic, ap, batch.obs, batch.action, joint)
            if credit and sf.pg_weight > 0:
                l = l + self.pg_loss(ap, eta, batch.obs, batch.action, joint, r_ex, v_terms)
            return l

        l_a, g_a = jax.value_and_grad(actor_loss)(params["actor"])
        upd, os_a = self.opt_actor.update(g_a, opt_state["actor"], params["actor"])
        actor = optax.apply_updates(params["actor"], upd)

        # 5. meta-gradient of eta (eq. (53)) through one plain actor step
        if credit:
            n = sf.meta_batch
            sub = jax.tree.map(lambda x: x[:n], (batch.obs, batch.action, joint, r_ex, v_terms))
            meta = functools.partial(
                self.meta_objective, params["actor"], critic, new_params["critic_ex"]
            )

            def meta_step(_):
                l_meta, g_eta = jax.value_and_grad(lambda e: -meta(e, *sub))(eta)
                upd, os_eta = self.opt_meta.update(g_eta, opt_state["eta"], eta)
                return optax.apply_updates(eta, upd), os_eta, l_meta, optax.global_norm(g_eta)

            def no_step(_):
                zero = jnp.zeros((), jnp.float32)
                return eta, opt_state["eta"], zero, zero

            if sf.meta_period == 1:
                new_eta, os_eta, l_meta, g_norm = meta_step(None)
            else:
                new_eta, os_eta, l_meta, g_norm = jax.lax.cond(
                    grad_step % sf.meta_period == 0, meta_step, no_step, None
                )
            new_params["eta"] = new_eta
            new_opt["eta"] = os_eta
            new_params["critic_ex_target"] = op.target_update(
                params["critic_ex_target"],
                new_params["critic_ex"],
                grad_step,
                c.tau,
                c.target_period,
            )
            metrics.update(
                meta_value=-l_meta,
                r_in=jnp.mean(r_in),
                r_in_std=jnp.std(r_in),
                w_ex=jnp.mean(w_ex),
                meta_grad_norm=g_norm,
            )
        new_params.update(
            actor=actor,
            critic=critic,
            actor_target=op.target_update(
                params["actor_target"], actor, grad_step, c.tau, c.target_period
            ),
            critic_target=op.target_update(
                params["critic_target"], critic, grad_step, c.tau, c.target_period
            ),
        )
        new_opt.update(actor=os_a, critic=os_c)
        metrics["actor_loss"] = l_a
        return new_params, new_opt, metrics

    def summary(self, rs) -> dict:
        return {
            **super().summary(rs),
            "actor_input": self.sf.actor_input,
            "comm": self.sf.comm,
            "credit": self.sf.credit,
        }


def make_train(config: dict, env, env_params) -> SFMADDPGTrainer:
    """``SFMADDPGTrainer`` for ``env`` (``config``: keys of ``DEFAULT_CONFIG``)."""
    return SFMADDPGTrainer(dict(config), env, env_params)

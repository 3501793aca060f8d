"""MAPPO / IPPO with parameter sharing, optionally Lagrangian (MAPPO-L), as pure JAX functions.

Algorithm: PPO with the clipped surrogate (Schulman et al. 2017, "Proximal Policy Optimization
Algorithms", eq. (7); APS-GNN eq. (15)), clipped value loss and entropy bonus, shared parameters
across agents (Yu et al. 2022, "The Surprising Effectiveness of PPO in Cooperative Multi-Agent
Games", MAPPO); the critic sees either each agent's own embedding (``critic="local"``: IPPO) or
that plus the mean over all agents (``critic="central"``: MAPPO). APS-GNN is "Graph-Neural
Multi-Agent Coordination for Distributed Access-Point Selection in Cell-Free Massive MIMO".
Advantages from truncation-aware GAE (``algorithms.gae``). With ``lagrangian=True`` a second
value head learns the cost, each advantage is normalised with its own statistics and the actor
follows the Lagrangian advantage ``A = (A_r - lambda A_c) / (1 + lambda)`` (APS-GNN eq. (13),
divided by ``1 + lambda`` to keep its scale as in Safety-Gym PPO-Lagrangian: Ray et al. 2019,
"Benchmarking Safe Exploration in Deep Reinforcement Learning"); after each rollout the
multiplier takes the projected step ``lambda <- max(0, lambda + eta (Jc - d))`` (APS-GNN eq.
(14)), ``Jc`` the mean per-agent per-step cost of the rollout and ``d`` the cost limit. Without
it the agents learn the scalarised reward ``r - cost_weight c`` (APS-GNN eq. (16) style;
``cost_weight = 0``: ``r``).

The model is a ``policies.Policy`` (``policies.make_policy``), and the trainer calls only that
protocol (``sample`` in the rollout, ``values`` of the final observations, ``log_prob`` in the
loss, ``decisions`` for the ratio's units, ``forward`` for imitation):

* ``model="agent"`` (default): the parameter-shared agent actor-critic (GRU or MLP encoder +
  GNN over the agent graph), one PPO decision per agent;
* ``single_agent=True``: APS-GNN's monolithic PPO-Lagr baseline (section VI-B), one agent whose
  state concatenates every pair's latest observation and whose action is the whole association
  matrix (a factorised joint action: the PPO ratio uses the sum of the per-pair
  log-probabilities), with the network-average reward and cost;
* ``model="mat"``: the Multi-Agent Transformer (Wen et al. 2022, "Multi-Agent Reinforcement
  Learning is a Sequence Modeling Problem"; APS-GNN's MAT-Lagr with ``lagrangian=True``: a
  second encoder for the cost values, ``algorithms.transformer``): the rollout generates each
  joint action agent by agent, the update evaluates the same conditionals in one causal pass
  given the stored actions, and each agent's ratio is that of its conditional
  ``pi_i(a_i | o, a_{<i})`` (MAT's objective).

Engine: ``make_train(config, env, env_params)`` returns a ``Trainer`` with pure
``init(key, hparams) -> RunnerState`` and ``update(state) -> (state, metrics)`` (a chunk of
``updates_per_chunk`` PPO updates inside one ``lax.scan``; rollouts are a ``lax.scan`` over
``vmap``-ed environments) and ``train(key, hparams)`` composing them, so ``jax.vmap(train)``
runs seeds or hyper-parameter sweeps in one program. ``RunnerState`` holds everything a resume
needs. Numeric hyper-parameters (learning rate, clip, gamma, ...) live in ``state.hparams`` and
may be vmapped; sizes are static in ``PPOConfig``. A rollout is a ``PPOTransition`` record
``[n_steps, n_envs, ...]``; the update's samples a ``PPOBatch``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import chex
import jax
import jax.numpy as jnp
import optax

from . import engine
from .evaluation import evaluate_policies, evaluate_policy  # noqa: F401  (re-exported)
from .gae import gae
from .policies import AgentPolicy, TransformerPolicy, graph_groups, make_policy  # noqa: F401

HPARAM_NAMES = (
    "lr",
    "gamma",
    "gae_lambda",
    "clip",
    "ent_coef",
    "vf_coef",
    "cost_limit",
    "lambda_lr",
    "lambda_init",
    "cost_weight",
    "lambda_kp",
    "lambda_ki",
    "lambda_kd",
)


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """Trainer configuration. Sizes and switches are static; the ``HPARAM_NAMES`` fields are the
    defaults of ``RunnerState.hparams`` (traced, vmappable)."""

    n_envs: int = 16
    n_steps: int = 10
    n_updates: int = 50
    updates_per_chunk: int = 5
    epochs: int = 4
    n_minibatches: int = 4
    hidden: int = 64
    encoder: str = "gru"
    gnn_rounds: int = 2
    critic: str = "central"
    lagrangian: bool = False
    max_grad_norm: float = 0.5
    lr: float = 3e-4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    cost_limit: float = 0.0
    lambda_lr: float = 0.05
    lambda_init: float = 0.0
    cost_weight: float = 0.0
    team_reward: bool = False
    single_agent: bool = False
    model: str = "agent"
    mat_blocks: int = 1
    mat_heads: int = 1
    pretrain_policy: str | None = None
    pretrain_updates: int = 0
    pretrain_lr: float = 3e-3
    pretrain_smoothing: float = 0.0
    critic_warmup: int = 0
    lambda_update: str = "plain"
    lambda_kp: float = 0.0
    lambda_ki: float = 0.1
    lambda_kd: float = 0.0
    lambda_max: float = 100.0
    ent_target: float | None = None
    ent_adapt_lr: float = 0.1
    ent_coef_max: float = 0.1
    adv_norm: str = "separate"
    select: str = "last"
    select_envs: int = 16
    select_steps: int = 10

    def __post_init__(self):
        for name in ("n_envs", "n_steps", "n_updates", "updates_per_chunk", "epochs"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.n_minibatches < 1 or (self.n_envs * self.n_steps) % self.n_minibatches:
            raise ValueError(
                f"n_minibatches={self.n_minibatches} must divide n_envs * n_steps = "
                f"{self.n_envs * self.n_steps}"
            )
        if self.n_updates % self.updates_per_chunk:
            raise ValueError(
                f"updates_per_chunk={self.updates_per_chunk} must divide n_updates={self.n_updates}"
            )
        if self.pretrain_updates < 0:
            raise ValueError(f"pretrain_updates must be >= 0, got {self.pretrain_updates}")
        if not 0.0 <= self.pretrain_smoothing < 1.0:
            raise ValueError(
                f"pretrain_smoothing must lie in [0, 1), got {self.pretrain_smoothing}"
            )
        if self.critic_warmup < 0:
            raise ValueError(f"critic_warmup must be >= 0, got {self.critic_warmup}")
        if self.pretrain_updates and not self.pretrain_policy:
            raise ValueError("pretrain_updates > 0 needs a pretrain_policy (a heuristic's name)")
        if self.lambda_update not in ("plain", "pid"):
            raise ValueError(f"lambda_update must be 'plain' or 'pid', got {self.lambda_update!r}")
        for name in ("lambda_kp", "lambda_ki", "lambda_kd"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not v >= 0:
                raise ValueError(f"{name} must be a non-negative number, got {v!r}")
        if not self.lambda_max > 0:
            raise ValueError(f"lambda_max must be positive, got {self.lambda_max!r}")
        if self.ent_target is not None and not 0 < self.ent_target:
            raise ValueError(f"ent_target must be null or positive, got {self.ent_target!r}")
        if not self.ent_adapt_lr > 0:
            raise ValueError(f"ent_adapt_lr must be positive, got {self.ent_adapt_lr!r}")
        if self.adv_norm not in ("separate", "joint"):
            raise ValueError(f"adv_norm must be 'separate' or 'joint', got {self.adv_norm!r}")
        if not self.ent_coef_max > 0:
            raise ValueError(f"ent_coef_max must be positive, got {self.ent_coef_max!r}")
        if self.select not in ("last", "best"):
            raise ValueError(f"select must be 'last' or 'best', got {self.select!r}")
        for name in ("select_envs", "select_steps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.critic not in ("central", "local"):
            raise ValueError(f"critic must be 'central' or 'local', got {self.critic!r}")
        if self.encoder not in ("gru", "mlp"):
            raise ValueError(f"encoder must be 'gru' or 'mlp', got {self.encoder!r}")
        if self.model not in ("agent", "mat"):
            raise ValueError(f"model must be 'agent' or 'mat', got {self.model!r}")
        if self.model == "mat" and self.single_agent:
            raise ValueError("model='mat' and single_agent=True exclude each other")
        if self.mat_blocks < 1 or self.mat_heads < 1 or self.hidden % self.mat_heads:
            raise ValueError(
                f"mat_blocks and mat_heads must be >= 1 and divide hidden: got mat_blocks="
                f"{self.mat_blocks}, mat_heads={self.mat_heads}, hidden={self.hidden}"
            )
        if self.gnn_rounds < 0:
            raise ValueError(f"gnn_rounds must be >= 0, got {self.gnn_rounds}")
        for name in ("lr", "clip", "max_grad_norm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        # gamma = 0 is allowed: where actions do not move the state (AP selection: the channels
        # evolve by mobility whatever is selected) the problem is a contextual bandit and the
        # myopic return r_t is the unbiased, lowest-variance target
        if not 0 <= self.gamma <= 1 or not 0 <= self.gae_lambda <= 1:
            raise ValueError(
                f"gamma must lie in [0, 1] and gae_lambda in [0, 1]: got gamma={self.gamma}, "
                f"gae_lambda={self.gae_lambda}"
            )

    @classmethod
    def from_dict(cls, d: dict) -> PPOConfig:
        fields = {f.name: f.type for f in dataclasses.fields(cls)}
        unknown = set(d) - set(fields)
        if unknown:
            raise ValueError(f"unknown trainer options: {sorted(unknown)}")
        return cls(**d)

    def hparams(self, **overrides) -> dict:
        """The traced hyper-parameters as a dict of float32 scalars (vmappable)."""
        unknown = set(overrides) - set(HPARAM_NAMES)
        if unknown:
            raise ValueError(f"unknown hyper-parameters: {sorted(unknown)}")
        return {
            n: jnp.asarray(overrides.get(n, getattr(self, n)), jnp.float32) for n in HPARAM_NAMES
        }


# The keys a configuration sets (``algorithms.default_config("mappo")``); the algorithm presets
# (``algorithms.preset``) set ``critic``, ``lagrangian``, ``single_agent`` and ``model``.
DEFAULT_CONFIG = {
    "n_envs": 16,  # parallel environments
    "n_steps": 10,  # rollout steps per update
    "n_updates": 60,  # PPO updates
    "updates_per_chunk": 5,  # updates per jitted call (metrics, progress, checkpoints between)
    "epochs": 4,
    "n_minibatches": 4,
    "hidden": 32,
    "encoder": "gru",  # gru | mlp
    "gnn_rounds": 2,  # attention message-passing rounds over the agent graph's edge types
    "mat_blocks": 1,  # mat / mat_lagr: encoder and decoder blocks of the transformer
    "mat_heads": 1,  # mat / mat_lagr: attention heads (must divide hidden)
    "lr": 0.001,
    "gamma": 0.9,
    "gae_lambda": 0.95,
    "clip": 0.2,
    "ent_coef": 0.01,
    "vf_coef": 0.5,
    "max_grad_norm": 0.5,
    "cost_limit": 0.1,  # d in the multiplier update
    "lambda_lr": 0.1,  # eta of the projected multiplier step
    "lambda_init": 1.0,
    "cost_weight": 1.0,  # unconstrained presets learn r - cost_weight * c
    "team_reward": False,  # every agent learns the mean signal over all agents
    "pretrain_policy": None,  # imitation teacher: a heuristic's name (None: no imitation)
    "pretrain_updates": 0,  # supervised steps before RL
    "pretrain_lr": 0.003,
    "pretrain_smoothing": 0.0,  # label smoothing of the imitation targets
    "critic_warmup": 0,  # first PPO updates that train the value heads only
    # multiplier update: plain (APS-GNN eq. (14): lambda += lambda_lr (Jc - d), projected) |
    # pid (Stooke, Achiam, Abbeel 2020: lambda = Kp e + Ki I + Kd max(0, Jc - Jc_prev),
    # e = Jc - d, I = max(0, I + e), clipped to [0, lambda_max])
    "lambda_update": "plain",
    "lambda_kp": 0.0,
    "lambda_ki": 0.1,
    "lambda_kd": 0.0,
    "lambda_max": 100.0,
    # target entropy (nats per decision; null: the fixed ent_coef): the entropy coefficient
    # adapts, ent_coef *= exp(ent_adapt_lr (H_target - H) / H_target), within
    # [1e-4, ent_coef_max] (the cap keeps a long stretch below the target from winding it up)
    "ent_target": None,
    "ent_adapt_lr": 0.1,
    "ent_coef_max": 0.1,
    # Lagrangian advantage: separate (each of A_r, A_c normalised, then combined) | joint (the
    # raw advantages combined, then normalised: lambda then weighs the signals in their units)
    "adv_norm": "separate",
    # which parameters a run reports: last | best (after every chunk of updates the greedy
    # policy runs on fixed validation episodes, held out from training and from the final
    # evaluation; best = the best feasible one: validation cost <= cost_limit first, then the
    # highest reward; Lagrangian trainers; otherwise the highest reward - cost_weight cost);
    # the post-imitation start is a candidate
    "select": "last",
    "select_envs": 16,  # validation episodes (environments) of the selection
    "select_steps": 10,  # steps per validation environment
}


@functools.partial(jax.tree_util.register_dataclass)
@dataclasses.dataclass(frozen=True)
class RunnerState:
    """Everything a resume needs. ``key`` is a raw ``uint32[2]`` PRNG key; ``lagrange`` the
    multiplier; ``update`` the number of PPO updates done; ``ep_*`` running episode sums."""

    params: Any
    opt_state: Any
    env_state: Any
    obs: jax.Array
    key: jax.Array
    lagrange: jax.Array
    update: jax.Array
    hparams: dict
    ep_return: jax.Array
    ep_cost: jax.Array
    control: dict
    best: dict


def _raw_key(key):
    key = jnp.asarray(key) if not hasattr(key, "dtype") else key
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(key)
    return key


def _is_value_head(path) -> bool:
    """Whether a parameter path belongs to the critics only, for any of the policies
    (``Policy.is_value_head``: ``critic`` of the actor-critics; for the transformer, the
    ``value`` MLP of its first encoder and the whole of the others)."""
    return AgentPolicy.is_value_head(path) or TransformerPolicy.is_value_head(path)


class _Record:
    """Read access by field name (``rec["adv"] is rec.adv``) for callers of the dict era."""

    def __getitem__(self, name: str):
        if name not in self.__dataclass_fields__:
            raise KeyError(name)
        return getattr(self, name)


@functools.partial(jax.tree_util.register_dataclass)
@dataclasses.dataclass(frozen=True)
class PPOTransition(_Record):
    """One rollout step of ``n_envs`` environments (stacked by the rollout's scan to
    ``[n_steps, n_envs, ...]``); ``A`` agents, ``H`` value heads.

    ``obs[E, A, *obs_shape]`` the observation acted on, ``action[E, A]`` int32, ``logp[E, A]``
    its log-probability, ``value[E, A, H]`` the values of ``obs``, ``signal[E, A, H]`` the
    learning signal (reward and cost, or the scalarised reward; team mean when shared),
    ``v_next[E, A, H]`` the values of the step's final observation (before an automatic reset),
    ``terminated[E]`` and ``done[E]`` (terminated or truncated) flags, ``ep_ret[E]`` and
    ``ep_cost[E]`` the finished episodes' mean-over-agents sums (0 where not done),
    ``reward[E]`` and ``cost[E]`` the step's means over agents, ``env_metrics`` the environment's
    per-environment scalars ``{name: [E]}``.
    """

    obs: jax.Array
    action: jax.Array
    logp: jax.Array
    value: jax.Array
    signal: jax.Array
    v_next: jax.Array
    terminated: jax.Array
    done: jax.Array
    ep_ret: jax.Array
    ep_cost: jax.Array
    cost: jax.Array
    reward: jax.Array
    env_metrics: dict


@functools.partial(jax.tree_util.register_dataclass)
@dataclasses.dataclass(frozen=True)
class PPOBatch(_Record):
    """The samples of a PPO update (leading axis: samples ``B``): ``obs[B, A, *obs_shape]``,
    ``action[B, A]``, ``logp[B, A]`` (behaviour log-probabilities), ``value[B, A, H]`` (old
    values), ``adv[B, A]`` (the actor's normalised advantage), ``ret[B, A, H]`` (GAE returns)."""

    obs: jax.Array
    action: jax.Array
    logp: jax.Array
    value: jax.Array
    adv: jax.Array
    ret: jax.Array

    @classmethod
    def of(cls, mb) -> PPOBatch:
        """A ``PPOBatch`` from itself or a mapping with its field names."""
        if isinstance(mb, cls):
            return mb
        return cls(**{f.name: mb[f.name] for f in dataclasses.fields(cls)})


def _normalise(x):
    return (x - jnp.mean(x)) / (jnp.std(x) + 1e-8)


class Trainer:
    """Pure training functions for one environment kind (see module docstring)."""

    def __init__(self, config: PPOConfig, env, env_params):
        self.config = config
        self.env = env
        self.env_params = env_params
        self.graph = env.graph()
        self.policy = make_policy(config, env)
        self._act_policy = self.policy.for_inference()
        c = config
        self.batch = c.n_envs * c.n_steps
        self.mb = self.batch // c.n_minibatches

    @property
    def net_kwargs(self) -> dict:
        """The policy network's ``networks.init_params`` arguments."""
        return self.policy.net_kwargs

    @property
    def graphdef(self):
        """The policy network's static structure (``nnx.GraphDef``)."""
        return self.policy.graphdef

    # ---- policy ---------------------------------------------------------------------------

    def forward(self, params, obs, action=None):
        """``obs[..., n_agents, *obs_shape] -> (logits[..., A, n_actions], values[..., A, H])``
        (``Policy.forward``; for the transformer, ``model="mat"``, the logits are the
        conditionals given ``action[..., A]``, required: teacher forcing)."""
        return self.policy.forward(params, obs, action)

    def values(self, params, obs):
        """``obs[..., A, *obs_shape] -> values[..., A, H]``."""
        return self.policy.values(params, obs)

    def sample(self, params, obs, key, greedy: bool = False):
        """Actions of the policy with their log-probabilities and the values:
        ``-> (action[..., A] int32, logp[..., A], values[..., A, H])`` (greedy: argmax)."""
        return self.policy.sample(params, obs, key, greedy)

    def _optimizer(self, hp):
        return optax.chain(
            optax.clip_by_global_norm(self.config.max_grad_norm),
            optax.inject_hyperparams(optax.adam)(learning_rate=hp["lr"], eps=1e-5),
        )

    # ---- init / update --------------------------------------------------------------------

    def init(self, key, hparams: dict | None = None) -> RunnerState:
        """A fresh ``RunnerState`` from a PRNG key (typed or raw) and optional hyper-parameters
        (after the imitation pre-training when ``pretrain_updates > 0``)."""
        return self.init_with_metrics(key, hparams)[0]

    def init_with_metrics(self, key, hparams: dict | None = None):
        """``init`` that also returns the pre-training metrics: ``(state, {"loss":
        [pretrain_updates], "accuracy": [pretrain_updates]})`` (empty dict without it)."""
        hp = self.config.hparams(**(hparams or {}))
        key = _raw_key(key)
        key, k_net, k_env = jax.random.split(key, 3)
        params = self.policy.init(k_net)
        pre = {}
        if self.config.pretrain_updates:
            key, k_pre = jax.random.split(key)
            params, pre = self.pretrain(params, k_pre)
        opt_state = self._optimizer(hp).init(params)
        env_keys = jax.random.split(k_env, self.config.n_envs)
        obs, env_state = jax.vmap(self.env.reset, (0, None))(env_keys, self.env_params)
        obs = obs.astype(jnp.float32)
        n = self.config.n_envs
        lam0 = jnp.asarray(hp["lambda_init"], jnp.float32)
        ki = hp["lambda_ki"]
        control = {
            # PID: the integral starts where Ki I = lambda_init
            "integral": jnp.where(ki > 0, lam0 / jnp.where(ki > 0, ki, 1.0), 0.0),
            "prev_cost": jnp.float32(0.0),
            "ent_coef": jnp.asarray(hp["ent_coef"], jnp.float32),
        }
        best = None
        if self.config.select == "best":
            # validation episodes: a key derived from the run's key without consuming it, so
            # the training streams equal those of select="last"
            k_val = jax.random.fold_in(key, 0x5E1EC7)
            r, cst = self.validate(params, k_val)
            best = {
                "key": k_val,
                "params": params,
                "feasible": self._feasible(cst, hp),
                "reward": r,
                "cost": cst,
                "update": jnp.int32(0),
            }
        state = RunnerState(
            params=params,
            opt_state=opt_state,
            env_state=env_state,
            obs=obs,
            key=key,
            lagrange=lam0,
            update=jnp.int32(0),
            hparams=hp,
            ep_return=jnp.zeros((n,), jnp.float32),
            ep_cost=jnp.zeros((n,), jnp.float32),
            control=control,
            best=best,
        )
        return state, pre

    # ---- checkpoint selection ---------------------------------------------------------------

    def validate(self, params, key):
        """The greedy policy of ``params`` on the validation episodes of ``key``
        (``select_envs`` environments x ``select_steps`` steps): ``-> (reward, cost)``, the
        means per agent and step (cost 0 where the environment has none)."""
        c = self.config
        out = evaluate_policy(
            self.env,
            self.env_params,
            lambda obs, k, s: self.sample(params, obs.astype(jnp.float32), k, greedy=True)[0],
            key,
            c.select_envs,
            c.select_steps,
        )
        reward = jnp.mean(out["reward"]).astype(jnp.float32)
        cost = jnp.mean(out["cost"]).astype(jnp.float32) if "cost" in out else jnp.float32(0)
        return reward, cost

    def _feasible(self, cost, hp):
        if self.config.lagrangian:
            return cost <= hp["cost_limit"]
        return jnp.bool_(True)

    def _select(self, rs: RunnerState):
        """Validate ``rs.params`` and keep them in ``rs.best`` when better: a feasible
        candidate beats an infeasible one; among feasible ones the higher validation reward
        wins (unconstrained trainers: ``reward - cost_weight cost``), among infeasible ones the
        lower cost. ``-> (state, validation metrics)``."""
        hp, best = rs.hparams, rs.best
        r, cst = self.validate(rs.params, best["key"])
        feas = self._feasible(cst, hp)
        if self.config.lagrangian:
            score, best_score = r, best["reward"]
        else:
            score = r - hp["cost_weight"] * cst
            best_score = best["reward"] - hp["cost_weight"] * best["cost"]
        better = better_candidate(feas, score, cst, best["feasible"], best_score, best["cost"])
        cand = dict(best, params=rs.params, feasible=feas, reward=r, cost=cst, update=rs.update)
        new_best = jax.tree.map(lambda a, b: jnp.where(better, a, b), cand, best)
        val = {"val_reward": r, "val_cost": cst, "best_update": new_best["update"]}
        return dataclasses.replace(rs, best=new_best), val

    def report_params(self, rs: RunnerState):
        """The parameters a run reports: the selected ones with ``select="best"``, else the
        last."""
        return rs.best["params"] if self.config.select == "best" else rs.params

    def pretrain(self, params, key):
        """Supervised imitation of a heuristic (APS-GNN section V-B): ``pretrain_updates``
        Adam steps on the cross-entropy between the actor and the teacher's actions, on
        observations of ``n_envs`` environments driven by the teacher. Returns ``(params,
        metrics)`` with per-step ``loss`` and ``accuracy`` (greedy actor vs teacher, measured on
        each batch before the step)."""
        c = self.config
        heur = self.env.heuristics()
        if c.pretrain_policy not in heur:
            raise ValueError(
                f"pretrain_policy {c.pretrain_policy!r} is not a heuristic of this environment "
                f"(known: {sorted(heur)})"
            )
        teacher = heur[c.pretrain_policy]
        opt = optax.adam(c.pretrain_lr)
        k_reset, k_run = jax.random.split(key)
        obs, env_state = jax.vmap(self.env.reset, (0, None))(
            jax.random.split(k_reset, c.n_envs), self.env_params
        )

        def ce(p, obs, target):
            logits, _ = self.forward(p, obs, target)  # (teacher forcing for the transformer)
            logp = jax.nn.log_softmax(logits)
            eps = c.pretrain_smoothing  # label smoothing keeps some entropy for RL to explore
            soft = (1.0 - eps) * jax.nn.one_hot(target, logits.shape[-1]) + eps / logits.shape[-1]
            loss = -jnp.mean(jnp.sum(soft * logp, -1))
            acc = jnp.mean((jnp.argmax(logits, -1) == target).astype(jnp.float32))
            return loss, acc

        def body(carry, k):
            p, opt_state, env_state, obs = carry
            target = teacher(obs, env_state).astype(jnp.int32)
            (loss, acc), g = jax.value_and_grad(ce, has_aux=True)(p, obs, target)
            upd, opt_state = opt.update(g, opt_state, p)
            p = optax.apply_updates(p, upd)
            obs, env_state, _, _, _ = self.env.step_batch(
                jax.random.split(k, c.n_envs), env_state, target, self.env_params
            )
            return (p, opt_state, env_state, obs), dict(loss=loss, accuracy=acc)

        (params, _, _, _), m = jax.lax.scan(
            body,
            (params, opt.init(params), env_state, obs),
            jax.random.split(k_run, c.pretrain_updates),
        )
        return params, m

    def _rollout(self, rs: RunnerState):
        c = self.config

        def step(carry, key):
            env_state, obs, ep_ret, ep_cost = carry
            k_act, k_env = jax.random.split(key)
            action, logp, values = self.sample(rs.params, obs, k_act)
            keys = jax.random.split(k_env, c.n_envs)
            obs2, env_state2, reward, done, info = self.env.step_batch(
                keys, env_state, action, self.env_params
            )
            v_next = self.values(rs.params, info["final_obs"])
            obs2 = obs2.astype(jnp.float32)  # the trainer works in float32 (also under x64)
            reward = reward.astype(jnp.float32)
            cost = info.get("cost", jnp.zeros_like(reward)).astype(jnp.float32)
            # the environment's credit-assigned learning signals where it offers them (e.g.
            # difference rewards); reward and cost themselves drive the metrics and multiplier
            s_r = info.get("signal_reward", reward).astype(jnp.float32)
            s_c = info.get("signal_cost", cost).astype(jnp.float32)
            if c.lagrangian:
                sig = jnp.stack([s_r, s_c], -1)
            else:  # a scalarised reward (cost_weight = 0: the plain reward)
                sig = (s_r - rs.hparams["cost_weight"] * s_c)[..., None]
            sig = sig.astype(jnp.float32)
            if c.team_reward or self.policy.team_signal:  # the mean over agents (team signal)
                sig = jnp.broadcast_to(jnp.mean(sig, axis=-2, keepdims=True), sig.shape)
            ep_ret = ep_ret + jnp.mean(reward, -1)
            ep_cost = ep_cost + jnp.mean(cost, -1)
            env_metrics = {
                k: v.astype(jnp.float32)
                for k, v in info.items()
                if k not in ("final_obs", "terminated", "truncated") and v.shape == (c.n_envs,)
            }
            tr = PPOTransition(
                obs=obs,
                action=action,
                logp=logp,
                value=values,
                signal=sig,
                v_next=v_next,
                terminated=info["terminated"],
                done=done,
                ep_ret=jnp.where(done, ep_ret, 0.0),
                ep_cost=jnp.where(done, ep_cost, 0.0),
                cost=jnp.mean(cost, -1),
                reward=jnp.mean(reward, -1),
                env_metrics=env_metrics,
            )
            ep_ret = jnp.where(done, 0.0, ep_ret)
            ep_cost = jnp.where(done, 0.0, ep_cost)
            return (env_state2, obs2, ep_ret, ep_cost), tr

        key, k_roll = jax.random.split(rs.key)
        carry, traj = jax.lax.scan(
            step,
            (rs.env_state, rs.obs, rs.ep_return, rs.ep_cost),
            jax.random.split(k_roll, c.n_steps),
        )
        return key, carry, traj

    def _loss(self, params, mb, hp):
        """PPO loss of a minibatch (a ``PPOBatch`` or a mapping with its fields):
        ``-> (total, {pg_loss, v_loss, entropy, approx_kl, clip_frac})`` with ``r =
        exp(log pi(a) - log pi_old(a))`` per PPO decision (``Policy.decisions``)::

            pg_loss = -mean(min(r A, clip(r, 1 - eps, 1 + eps) A))
            v_loss  = 0.5 mean(sum_heads max((V - R)^2, (V_old + clip(V - V_old, -eps, eps) - R)^2))
            total   = pg_loss + vf_coef v_loss - ent_coef mean(H)
        """
        mb = PPOBatch.of(mb)
        logp, entropy, values = self.policy.log_prob(params, mb.obs, mb.action)
        chex.assert_equal_shape([logp, entropy, mb.logp, mb.adv])
        chex.assert_equal_shape([values, mb.value, mb.ret])
        log_ratio, adv = self.policy.decisions(logp - mb.logp, mb.adv)
        ratio = jnp.exp(log_ratio)
        clipped = jnp.clip(ratio, 1.0 - hp["clip"], 1.0 + hp["clip"])
        pg_loss = -jnp.mean(jnp.minimum(ratio * adv, clipped * adv))
        v_old = mb.value
        v_clip = v_old + jnp.clip(values - v_old, -hp["clip"], hp["clip"])
        v_loss = 0.5 * jnp.mean(
            jnp.sum(jnp.maximum((values - mb.ret) ** 2, (v_clip - mb.ret) ** 2), -1)
        )
        entropy = jnp.mean(entropy)
        total = pg_loss + hp["vf_coef"] * v_loss - hp["ent_coef"] * entropy
        kl = jnp.mean((ratio - 1.0) - jnp.log(ratio))
        clip_frac = jnp.mean((jnp.abs(ratio - 1.0) > hp["clip"]).astype(jnp.float32))
        return total, dict(
            pg_loss=pg_loss, v_loss=v_loss, entropy=entropy, approx_kl=kl, clip_frac=clip_frac
        )

    def _update_step(self, rs: RunnerState, _):
        c = self.config
        hp = rs.hparams
        key, (env_state, obs, ep_ret, ep_cost), tr = self._rollout(rs)
        T, E = c.n_steps, c.n_envs
        A, H = self.policy.n_agents, self.policy.n_value_heads
        chex.assert_shape([tr.signal, tr.value, tr.v_next], (T, E, A, H))
        chex.assert_shape([tr.terminated, tr.done], (T, E))
        bshape = (T, E, 1, 1)
        adv, ret = gae(
            tr.signal,
            tr.value,
            tr.v_next,
            tr.terminated.reshape(bshape),
            tr.done.reshape(bshape),
            hp["gamma"],
            hp["gae_lambda"],
        )
        chex.assert_shape([adv, ret], (T, E, A, H))
        lam = rs.lagrange
        control = dict(rs.control)
        if c.lagrangian:
            if c.adv_norm == "joint":
                actor_adv = _normalise((adv[..., 0] - lam * adv[..., 1]) / (1.0 + lam))
            else:
                actor_adv = (_normalise(adv[..., 0]) - lam * _normalise(adv[..., 1])) / (1.0 + lam)
            mean_cost = jnp.mean(tr.cost)
            if c.lambda_update == "pid":
                new_lam, control = pid_multiplier(control, mean_cost, rs.update, hp, c.lambda_max)
            else:
                new_lam = jnp.maximum(lam + hp["lambda_lr"] * (mean_cost - hp["cost_limit"]), 0.0)
        else:
            actor_adv = _normalise(adv[..., 0])
            new_lam = lam
        if c.ent_target is not None:  # the loss uses the adaptive entropy coefficient
            hp = dict(hp, ent_coef=control["ent_coef"])
        chex.assert_shape(actor_adv, (T, E, A))
        data = PPOBatch(
            obs=tr.obs, action=tr.action, logp=tr.logp, value=tr.value, adv=actor_adv, ret=ret
        )
        data = jax.tree.map(lambda x: x.reshape((self.batch,) + x.shape[2:]), data)
        opt = self._optimizer(hp)
        grad_fn = jax.value_and_grad(self._loss, has_aux=True)
        # critic warm-up: the first ``critic_warmup`` updates train the value heads only (after
        # imitation the critics start untrained, and their noisy advantages would move the
        # imitated policy in random directions; the shared backbone is frozen too)
        actor_on = (rs.update >= c.critic_warmup).astype(jnp.float32)

        def epoch(carry, k):
            params, opt_state = carry
            perm = jax.random.permutation(k, self.batch)
            shuffled = jax.tree.map(
                lambda x: x[perm].reshape((c.n_minibatches, self.mb) + x.shape[1:]), data
            )

            def minibatch(carry, mb):
                params, opt_state = carry
                (_, aux), grads = grad_fn(params, mb, hp)
                if c.critic_warmup:
                    grads = jax.tree_util.tree_map_with_path(
                        lambda path, g: g if self.policy.is_value_head(path) else g * actor_on,
                        grads,
                    )
                updates, opt_state = opt.update(grads, opt_state, params)
                params = optax.apply_updates(params, updates)
                return (params, opt_state), aux

            (params, opt_state), aux = jax.lax.scan(minibatch, (params, opt_state), shuffled)
            return (params, opt_state), aux

        key, k_ep = jax.random.split(key)
        (params, opt_state), aux = jax.lax.scan(
            epoch, (rs.params, rs.opt_state), jax.random.split(k_ep, c.epochs)
        )
        n_done = jnp.sum(tr.done)
        metrics = {k: jnp.mean(v) for k, v in aux.items()}
        if c.ent_target is not None:
            metrics["ent_coef"] = control["ent_coef"]
            control["ent_coef"] = adapt_entropy_coef(
                control["ent_coef"],
                metrics["entropy"],
                c.ent_target,
                c.ent_adapt_lr,
                c.ent_coef_max,
            )
        metrics.update(
            reward=jnp.mean(tr.reward),
            cost=jnp.mean(tr.cost),
            episodes=n_done.astype(jnp.float32),
            episode_return=jnp.sum(tr.ep_ret) / jnp.maximum(n_done, 1),
            episode_cost=jnp.sum(tr.ep_cost) / jnp.maximum(n_done, 1),
            lagrange=lam,
            value=jnp.mean(tr.value[..., 0]),
        )
        metrics.update({k: jnp.mean(v) for k, v in tr.env_metrics.items()})
        rs = RunnerState(
            params=params,
            opt_state=opt_state,
            env_state=env_state,
            obs=obs,
            key=key,
            lagrange=new_lam,
            update=rs.update + 1,
            hparams=rs.hparams,
            ep_return=ep_ret,
            ep_cost=ep_cost,
            control=control,
            best=rs.best,
        )
        return rs, metrics

    def update(self, rs: RunnerState):
        """``updates_per_chunk`` PPO updates: ``-> (state, metrics)``, metrics ``[chunk]`` each
        (with ``select="best"`` then the validation of the chunk's last parameters:
        ``val_reward``, ``val_cost``, ``best_update``, repeated over the chunk)."""
        n = self.config.updates_per_chunk
        rs, metrics = engine.update_chunk(self._update_step, rs, n)
        if self.config.select == "best":
            rs, val = self._select(rs)
            metrics.update({k: jnp.broadcast_to(v, (n,)) for k, v in val.items()})
        return rs, metrics

    def summary(self, rs: RunnerState) -> dict:
        """Scalars of a final state worth reporting (the Lagrange multiplier, the selection)."""
        out = {"final_lagrange": float(rs.lagrange)}
        if self.config.select == "best":
            b = rs.best
            out["selected"] = {
                "update": int(b["update"]),
                "feasible": bool(b["feasible"]),
                "val_reward": float(b["reward"]),
                "val_cost": float(b["cost"]),
            }
        return out

    def train(self, key, hparams: dict | None = None):
        """All ``n_updates`` updates from ``key``: ``-> (state, metrics[n_updates])``. One
        jittable function of the key (and hyper-parameters): ``jax.vmap`` it over seeds."""
        n_chunks = self.config.n_updates // self.config.updates_per_chunk
        return engine.train_all(self.init(key, hparams), self.update, n_chunks)

    # ---- acting ---------------------------------------------------------------------------

    def act(self, params, obs, key=None):
        """Actions of the learned policy: sampled with ``key``, greedy (argmax; for the
        transformer, agent by agent) without. A forward pass only, so through
        ``Policy.for_inference`` (a GRU encoder's scan unrolled, up to 16 steps)."""
        if key is None:
            return self._act_policy.sample(params, obs, jax.random.PRNGKey(0), greedy=True)[0]
        return self._act_policy.sample(params, obs, key)[0]


def better_candidate(feasible, score, cost, best_feasible, best_score, best_cost):
    """Whether a candidate beats the best so far: a feasible one beats an infeasible one;
    between two feasible ones the higher score (validation reward), between two infeasible
    ones the lower cost; ties keep the earlier one."""
    return (feasible & ~best_feasible) | (
        (feasible == best_feasible) & jnp.where(feasible, score > best_score, cost < best_cost)
    )


def pid_multiplier(control: dict, cost, update, hp: dict, lambda_max: float):
    """PID Lagrange multiplier (Stooke, Achiam, Abbeel 2020, "Responsive Safety in
    Reinforcement Learning by PID Lagrangian Methods", Algorithm 2): with ``e = Jc - d``,
    ``I <- min(max(0, I + e), lambda_max / Ki)``, ``D = max(0, Jc - Jc_prev)`` (0 at the first
    update), ``lambda = clip(Kp e + Ki I + Kd D, 0, lambda_max)``. ``Kp = Kd = 0`` is the
    integral-only controller, the plain projected step of APS-GNN eq. (14) with ``eta = Ki``.
    ``-> (lambda, control)`` (``control`` with the new ``integral`` and ``prev_cost``)."""
    kp, ki, kd = hp["lambda_kp"], hp["lambda_ki"], hp["lambda_kd"]
    e = cost - hp["cost_limit"]
    cap = jnp.where(ki > 0, lambda_max / jnp.where(ki > 0, ki, 1.0), 0.0)
    integral = jnp.clip(control["integral"] + e, 0.0, cap)
    deriv = jnp.where(update > 0, jnp.maximum(cost - control["prev_cost"], 0.0), 0.0)
    lam = jnp.clip(kp * e + ki * integral + kd * deriv, 0.0, lambda_max)
    control = dict(control, integral=integral, prev_cost=jnp.asarray(cost, jnp.float32))
    return lam.astype(jnp.float32), control


def adapt_entropy_coef(coef, entropy, target: float, lr: float, coef_max: float = 1.0):
    """Target-entropy control of the entropy bonus: ``coef * exp(lr (H_target - H) /
    H_target)`` clipped to ``[1e-4, coef_max]`` (the coefficient grows while the policy's mean
    entropy per decision is below the target and shrinks above it)."""
    coef = coef * jnp.exp(lr * (target - entropy) / target)
    return jnp.clip(coef, 1e-4, coef_max).astype(jnp.float32)


def make_train(config: PPOConfig | dict, env, env_params) -> Trainer:
    """``Trainer`` for ``env`` (a ``cfmimo_jax.envs.MultiAgentEnv``) with ``env_params``."""
    if isinstance(config, dict):
        config = PPOConfig.from_dict(config)
    return Trainer(config, env, env_params)

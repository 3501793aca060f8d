"""One policy protocol for the PPO trainers (``algorithms.mappo``), and its three models.

Every PPO model is a categorical policy over ``n_actions`` per agent with ``H`` value heads
(``H = 1``: reward; ``H = 2``: reward and cost, Lagrangian), evaluated over the agent axis ``A``
of an environment and its ``AgentGraph``. Arrays carry any leading batch dimensions ``...``
(environments, rollout steps, minibatch samples); ``obs[..., A, *obs_shape]``; ``params`` is a
plain pytree (an ``nnx.State``) that jit/vmap/scan and optax handle directly. The protocol
(``Policy``)::

    init(key)                            -> params
    forward(params, obs, action=None)    -> (logits[..., A, n_actions], values[..., A, H])
    sample(params, obs, key, greedy)     -> (action[..., A] int32, logp[..., A], values[..., A, H])
    log_prob(params, obs, action)        -> (logp[..., A], entropy[..., A], values[..., A, H])
    values(params, obs)                  -> values[..., A, H]
    decisions(log_ratio[..., A], adv[..., A]) -> (log_ratio[..., U], adv[..., U])
    is_value_head(path)                  -> bool
    for_inference()                      -> Policy
    team_signal                          (bool attribute)

``logp_i = log pi_i(a_i | .)`` is agent ``i``'s log-probability of its action and ``entropy_i =
-sum_a pi_i(a | .) log pi_i(a | .)`` the entropy of its distribution; the joint policy is the
product of the agents' (conditional) distributions. ``sample`` draws
``a_i = jax.random.categorical(key, logits_i)`` (Gumbel-max on the raw logits), or
``a_i = argmax_a logits_i`` with ``greedy=True``; ``log_prob`` evaluates the same conditionals
for given actions, so ``log_prob(params, obs, sample(...)[0])[0]`` equals ``sample``'s ``logp``.
``decisions`` groups the per-agent log-ratios ``log pi(a) - log pi_old(a)`` and advantages into
the units of PPO's clipped ratio (one per agent, or one per joint decision); ``team_signal``:
the policy learns the network-average signal (one value for all agents); ``is_value_head``:
whether a parameter path belongs to the critics only (the critic warm-up trains those alone);
``for_inference``: the same policy for forward passes only (a GRU's scan fully unrolled).

Implementations (``make_policy(config, env)`` chooses one):

``AgentPolicy``        the parameter-shared agent actor-critic (``networks.AgentActorCritic``:
                       GRU or MLP encoder, typed graph attention over the agent graph, local or
                       centralised critic): IPPO / MAPPO (Yu et al. 2022, "The Surprising
                       Effectiveness of PPO in Cooperative Multi-Agent Games") and the APS-GNN
                       actor ("Graph-Neural Multi-Agent Coordination for Distributed
                       Access-Point Selection in Cell-Free Massive MIMO").
``CentralPolicy``      one agent over every pair (``networks.CentralActorCritic``): APS-GNN's
                       single-agent PPO-Lagr baseline; its joint action is one PPO decision
                       (the ratio of the summed log-probabilities) with a team signal.
``TransformerPolicy``  the Multi-Agent Transformer (Wen et al. 2022, "Multi-Agent Reinforcement
                       Learning is a Sequence Modeling Problem"; ``transformer``): ``sample``
                       generates the joint action agent by agent, ``log_prob`` evaluates the
                       conditionals ``pi_i(a_i | o, a_{<i})`` in one causal pass given the
                       actions (teacher forcing).

Log-probabilities come from ``distrax.Categorical``. The entropy is ``-sum_a p_a log p_a`` of
that distribution's normalised log-probabilities (``Categorical.logits``):
``Categorical.entropy()`` normalises them a second time, which changes the last bit of some
entropies and so every training run; sampling keeps ``jax.random.categorical`` on the raw logits
for the same reason (``Categorical.sample`` draws from the normalised ones).
"""

from __future__ import annotations

import copy
from typing import Any, Protocol, runtime_checkable

import distrax
import jax
import jax.numpy as jnp
import numpy as np

from . import networks

__all__ = [
    "Policy",
    "AgentPolicy",
    "CentralPolicy",
    "TransformerPolicy",
    "categorical_log_prob_entropy",
    "graph_groups",
    "make_policy",
]


@runtime_checkable
class Policy(Protocol):
    """The PPO policy protocol (see the module docstring for shapes and equations)."""

    n_agents: int
    n_actions: int
    n_value_heads: int
    team_signal: bool

    def init(self, key: jax.Array) -> Any: ...

    def forward(self, params, obs, action=None) -> tuple[jax.Array, jax.Array]: ...

    def sample(self, params, obs, key, greedy: bool = False): ...

    def log_prob(self, params, obs, action): ...

    def values(self, params, obs) -> jax.Array: ...

    def decisions(self, log_ratio, adv) -> tuple[jax.Array, jax.Array]: ...

    def is_value_head(self, path) -> bool: ...

    def for_inference(self) -> Policy: ...


def categorical_log_prob_entropy(logits: jax.Array, action: jax.Array):
    """``logits[..., n]``, ``action[...]`` (int) -> ``(log pi(action)[...], H(pi)[...])`` of
    ``pi = softmax(logits)``, via ``distrax.Categorical``: ``log pi(a) = l_a`` and ``H = -sum_a
    exp(l_a) l_a`` with ``l = log_softmax(logits)`` (``Categorical.logits``; see the module
    docstring for why not ``Categorical.entropy()``)."""
    dist = distrax.Categorical(logits=logits)
    logp = dist.log_prob(action)
    lp = dist.logits
    return logp, -jnp.sum(jnp.exp(lp) * lp, axis=-1)


def _dict_names(path) -> list[str]:
    return [str(k.key) for k in path if isinstance(k, jax.tree_util.DictKey)]


class _NetworkPolicy:
    """Shared parts of the three policies: an NNX model given by ``net_kwargs`` (for
    ``networks.init_params``), factorised categorical sampling and ``log_prob`` through
    ``forward``. Subclasses set ``net_kwargs`` and implement ``forward``."""

    team_signal = False

    def __init__(self, env, n_value_heads: int, net_kwargs: dict):
        self.n_agents = int(env.n_agents)
        self.n_actions = int(env.n_actions)
        self.obs_shape = tuple(env.obs_shape)
        self.graph = env.graph()
        self.n_value_heads = int(n_value_heads)
        self.net_kwargs = dict(net_kwargs)
        self.graphdef, _ = networks.init_params(jax.random.PRNGKey(0), **self.net_kwargs)

    def init(self, key):
        """Parameters from a PRNG key (raw ``uint32[2]`` or typed; may be traced)."""
        return networks.init_params(key, **self.net_kwargs)[1]

    def forward(self, params, obs, action=None):
        raise NotImplementedError

    def sample(self, params, obs, key, greedy: bool = False):
        """``-> (action[..., A] int32, logp[..., A], values[..., A, H])``: ``a_i =
        jax.random.categorical(key, logits_i)`` (greedy: ``argmax``; ``key`` unused)."""
        logits, values = self.forward(params, obs)
        if greedy:
            action = jnp.argmax(logits, -1).astype(jnp.int32)
        else:
            action = jax.random.categorical(key, logits).astype(jnp.int32)
        return action, distrax.Categorical(logits=logits).log_prob(action), values

    def log_prob(self, params, obs, action):
        """``-> (logp[..., A], entropy[..., A], values[..., A, H])`` of ``action[..., A]``."""
        logits, values = self.forward(params, obs, action)
        logp, entropy = categorical_log_prob_entropy(logits, action)
        return logp, entropy, values

    def values(self, params, obs):
        """``obs[..., A, *obs_shape] -> values[..., A, H]``."""
        return self.forward(params, obs)[1]

    def decisions(self, log_ratio, adv):
        """Each agent's action is a PPO decision of its own: identity."""
        return log_ratio, adv

    @staticmethod
    def is_value_head(path) -> bool:
        """The actor-critics' critic: parameters under ``critic``."""
        return "critic" in _dict_names(path)

    def for_inference(self):
        return self


class AgentPolicy(_NetworkPolicy):
    """Parameter-shared agent actor-critic over the agent graph (``networks.AgentActorCritic``).

    ``encoder="gru"`` needs ``obs_shape = (T, F)`` (a history per agent); ``encoder="mlp"``
    flattens the per-agent observation to ``prod(obs_shape)`` features. ``gru_unroll``: the
    GRU's scan unroll (``None``: the module's, 1; ``for_inference`` unrolls up to 16 steps).
    """

    def __init__(
        self,
        env,
        *,
        hidden: int,
        encoder: str = "gru",
        gnn_rounds: int = 2,
        critic: str = "central",
        n_value_heads: int = 1,
        gru_unroll: int | None = None,
    ):
        obs_shape = tuple(env.obs_shape)
        if encoder == "gru":
            if len(obs_shape) != 2:
                raise ValueError(f"encoder 'gru' needs obs [T, F] per agent, got {obs_shape}")
            obs_features = obs_shape[-1]
        else:
            obs_features = int(np.prod(obs_shape))
        graph = env.graph()
        self.encoder = encoder
        self.gru_unroll = gru_unroll
        super().__init__(
            env,
            n_value_heads,
            dict(
                obs_features=obs_features,
                n_actions=env.n_actions,
                hidden=hidden,
                encoder=encoder,
                gnn_rounds=gnn_rounds,
                n_edge_types=max(int(np.max(np.asarray(graph.edge_type), initial=0)) + 1, 1),
                critic=critic,
                n_value_heads=n_value_heads,
            ),
        )

    def forward(self, params, obs, action=None):
        """``-> (logits[..., A, n_actions], values[..., A, H])`` (``action`` unused)."""
        if self.encoder == "mlp":
            obs = obs.reshape(obs.shape[: obs.ndim - len(self.obs_shape)] + (-1,))
        g = self.graph
        extra = {}
        if self.gru_unroll is not None and self.encoder == "gru":
            extra["gru_unroll"] = self.gru_unroll
        return networks.apply_model(
            self.graphdef,
            params,
            obs.astype(jnp.float32),
            **extra,
            senders=g.senders,
            receivers=g.receivers,
            edge_type=g.edge_type,
            edge_mask=g.edge_mask,
            node_mask=g.node_mask,
        )

    def for_inference(self):
        """A GRU encoder's scan unrolled over the history (up to 16 steps): a forward pass
        only runs faster so (``layers.GRUEncoder``)."""
        if self.encoder != "gru":
            return self
        pol = copy.copy(self)
        pol.gru_unroll = min(self.obs_shape[0], 16)
        return pol


class CentralPolicy(_NetworkPolicy):
    """One agent over all pairs (``networks.CentralActorCritic``): the state is every pair's
    latest observation; the action, the whole association matrix, is one joint decision whose
    log-probability is the sum of the per-pair ones (``decisions``), learned from the
    network-average signal (``team_signal``)."""

    team_signal = True

    def __init__(self, env, *, hidden: int, n_value_heads: int = 1):
        super().__init__(
            env,
            n_value_heads,
            dict(
                model="central",
                n_agents=env.n_agents,
                obs_features=tuple(env.obs_shape)[-1],
                n_actions=env.n_actions,
                hidden=hidden,
                n_value_heads=n_value_heads,
            ),
        )

    def forward(self, params, obs, action=None):
        """``-> (logits[..., A, n_actions], values[..., A, H])`` (one value, broadcast)."""
        return networks.apply_model(self.graphdef, params, obs.astype(jnp.float32))

    def decisions(self, log_ratio, adv):
        """One joint decision: ``-> (sum_i log_ratio_i [...], adv[..., 0] [...])`` (every
        agent carries the same team advantage)."""
        return jnp.sum(log_ratio, axis=-1), adv[..., 0]


def graph_groups(graph, n_agents: int):
    """Group labels of the agents from an agent graph: for every edge type ``t`` the connected
    components of the valid type-``t`` edges, labelled ``0..n_t-1`` in order of first agent
    (for AP selection: type 0 = same AP, type 1 = same UE, so the labels are each pair's AP and
    UE). ``-> int32[n_agents, n_types]`` (NumPy; static, computed once)."""
    snd, rcv = np.asarray(graph.senders), np.asarray(graph.receivers)
    typ, ok = np.asarray(graph.edge_type), np.asarray(graph.edge_mask, bool)
    n_types = int(typ.max(initial=0)) + 1 if len(typ) else 1
    out = np.zeros((n_agents, n_types), np.int32)
    for t in range(n_types):  # union-find at set-up time, outside any jitted code
        parent = list(range(n_agents))

        def find(i, parent=parent):
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        for a, b in zip(snd[(typ == t) & ok], rcv[(typ == t) & ok], strict=True):
            parent[find(int(a))] = find(int(b))
        labels: dict[int, int] = {}
        for i in range(n_agents):
            out[i, t] = labels.setdefault(find(i), len(labels))
    return out


class TransformerPolicy(_NetworkPolicy):
    """Multi-Agent Transformer (``transformer.MultiAgentTransformer``) over the agents in index
    order. The agents' group labels (``graph_groups`` of the agent graph, e.g. each pair's AP
    and UE) give the transformer their identities. ``sample`` generates agent by agent
    (``lax.scan`` with key/value caches); ``forward``/``log_prob`` need the actions (teacher
    forcing: ``logits_i`` conditions on ``action[..., :i]``)."""

    def __init__(
        self, env, *, hidden: int, n_blocks: int = 1, n_heads: int = 1, n_value_heads: int = 1
    ):
        self.group_ids = graph_groups(env.graph(), env.n_agents)
        super().__init__(
            env,
            n_value_heads,
            dict(
                n_groups=tuple(int(n) for n in self.group_ids.max(0) + 1),
                model="mat",
                obs_features=int(np.prod(tuple(env.obs_shape))),
                n_actions=env.n_actions,
                hidden=hidden,
                n_blocks=n_blocks,
                n_heads=n_heads,
                n_value_heads=n_value_heads,
            ),
        )

    def forward(self, params, obs, action=None):
        """``-> (logits[..., A, n_actions], values[..., A, H])``, the conditionals given
        ``action[..., A]`` (required)."""
        if action is None:
            raise ValueError("model='mat' needs the actions to evaluate its conditionals")
        return networks.apply_model(
            self.graphdef, params, obs.astype(jnp.float32), action, group_ids=self.group_ids
        )

    def sample(self, params, obs, key, greedy: bool = False):
        """Autoregressive generation (``MultiAgentTransformer.sample``): ``a_i`` drawn from
        ``pi_i(. | o, a_{<i})`` with the ``i``-th of ``jax.random.split(key, A)`` (greedy:
        ``argmax``) ``-> (action[..., A] int32, logp[..., A], values[..., A, H])``."""
        return networks.apply_method(
            self.graphdef,
            params,
            "sample",
            obs.astype(jnp.float32),
            key,
            greedy=greedy,
            group_ids=self.group_ids,
        )

    def values(self, params, obs):
        """The encoders' values (no decoder pass): ``-> [..., A, H]``."""
        return networks.apply_method(
            self.graphdef, params, "values", obs.astype(jnp.float32), group_ids=self.group_ids
        )

    @staticmethod
    def is_value_head(path) -> bool:
        """The ``value`` MLP of the first encoder and the whole of the others (the cost
        encoders feed nothing but cost values)."""
        names = _dict_names(path)
        if names[:1] == ["encoders"] and len(names) > 2:
            return names[1] != "0" or names[2] == "value"
        return False


def make_policy(config, env) -> Policy:
    """The policy of a PPO configuration (``mappo.PPOConfig``: ``model``, ``single_agent``,
    ``encoder``, ``hidden``, ``gnn_rounds``, ``critic``, ``lagrangian``, ``mat_blocks``,
    ``mat_heads``) for ``env`` (a ``cfmimo_jax.envs.MultiAgentEnv``): ``model="mat"``:
    ``TransformerPolicy``; ``single_agent=True``: ``CentralPolicy``; else ``AgentPolicy``.
    ``lagrangian=True`` gives two value heads (reward, cost), else one."""
    n_heads = 2 if config.lagrangian else 1
    if config.model == "mat":
        return TransformerPolicy(
            env,
            hidden=config.hidden,
            n_blocks=config.mat_blocks,
            n_heads=config.mat_heads,
            n_value_heads=n_heads,
        )
    if config.single_agent:
        return CentralPolicy(env, hidden=config.hidden, n_value_heads=n_heads)
    return AgentPolicy(
        env,
        hidden=config.hidden,
        encoder=config.encoder,
        gnn_rounds=config.gnn_rounds,
        critic=config.critic,
        n_value_heads=n_heads,
    )

"""Flax NNX networks shared by every scenario (SPEC sections 3 and 3b).

Everything is pure JAX inside: the agent axis, the graph nodes/edges and the time axis are array
axes (no Python loops over them), graph arrays are static-shaped with masks, and any number of
leading batch dimensions (environments, rollout steps, ...) are accepted.

Components
----------
``MLP``              plain multi-layer perceptron on the last axis.
``GRUEncoder``       final hidden state of a GRU (Cho et al. 2014) run over an observation history.
``GraphAttention``   one round of typed, single-head softmax-attention message passing
                     (Shi et al. 2021, "Masked label prediction: unified message passing model
                     for semi-supervised classification", i.e. PyG ``TransformerConv``; the GNN
                     of APS-GNN, seed 003 section IV-B, with one set of maps per edge type).
``GraphEncoder``     ``rounds`` stacked ``GraphAttention`` layers.
``AgentActorCritic`` shared-parameter actor-critic for all agents: encoder (GRU or MLP) ->
                     GNN (residual) -> policy logits and ``n_value_heads`` values, with a local
                     (IPPO) or centralised (MAPPO, Yu et al. 2022) critic.

Functional helpers for trainers (``split_model``, ``apply_model``, ``init_params``) keep the
parameters as a plain pytree (an ``nnx.State``) that jit/vmap/scan and optax handle directly::

    graphdef, _ = init_params(jax.random.PRNGKey(0), **kw)          # static structure, once
    params = jax.vmap(lambda k: init_params(k, **kw)[1])(keys)       # one set per seed
    logits, values = jax.jit(jax.vmap(lambda p, o: apply_model(graphdef, p, o, **graph)))(
        params, obs
    )
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = [
    "MLP",
    "GRUEncoder",
    "GraphAttention",
    "GraphEncoder",
    "grid_layout",
    "AgentActorCritic",
    "split_model",
    "apply_model",
    "apply_method",
    "init_params",
    "param_count",
]


def _scaled_lecun(scale: float):
    """LeCun-normal kernel init whose standard deviation is multiplied by ``scale``."""
    return nnx.initializers.variance_scaling(scale**2, "fan_in", "truncated_normal")


# --------------------------------------------------------------------------------------------
# MLP
# --------------------------------------------------------------------------------------------


class MLP(nnx.Module):
    """Multi-layer perceptron acting on the last axis: ``x[..., in] -> y[..., out]``.

    ``y = W_L a(... a(W_1 x + b_1) ...) + b_L`` with ``a = activation`` after every hidden layer
    and no activation after the output layer. ``hidden`` may be empty (a single linear map).
    ``out_scale`` multiplies the standard deviation of the output layer's (LeCun-normal) kernel
    init, e.g. 0.01 for near-uniform initial policy logits.
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        out_features: int,
        *,
        activation: Callable[[jax.Array], jax.Array] = nnx.relu,
        out_scale: float = 1.0,
        rngs: nnx.Rngs,
    ):
        sizes = [int(in_features), *(int(h) for h in hidden), int(out_features)]
        layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            last = i == len(sizes) - 2
            init = _scaled_lecun(out_scale) if last else _scaled_lecun(1.0)
            layers.append(nnx.Linear(a, b, kernel_init=init, rngs=rngs))
        self.layers = nnx.List(layers)
        self.activation = activation
        self.in_features = int(in_features)
        self.out_features = int(out_features)

    def __call__(
        self, x: jax.Array, *, dropout_rate: float = 0.0, dropout_key: jax.Array | None = None
    ) -> jax.Array:
        """``dropout_key`` given: inverted dropout of rate ``dropout_rate`` after every hidden
        activation (Srivastava et al. 2014; kept units scaled by ``1 / (1 - rate)``)."""
        if x.shape[-1] != self.in_features:
            raise ValueError(f"MLP expects {self.in_features} input features, got {x.shape}")
        if not 0.0 <= dropout_rate < 1.0:
            raise ValueError(f"dropout_rate must lie in [0, 1), got {dropout_rate}")
        n = len(self.layers)
        for i, layer in enumerate(self.layers):  # a loop over layers, not over data
            x = layer(x)
            if i < n - 1:
                x = self.activation(x)
                if dropout_key is not None and dropout_rate > 0.0:
                    dropout_key, k = jax.random.split(dropout_key)
                    keep = jax.random.bernoulli(k, 1.0 - dropout_rate, x.shape)
                    x = jnp.where(keep, x / (1.0 - dropout_rate), 0.0)
        return x


# --------------------------------------------------------------------------------------------
# GRU encoder
# --------------------------------------------------------------------------------------------


class GRUEncoder(nnx.Module):
    """Final hidden state of a GRU over the ``T`` axis: ``x[..., T, F] -> h_T[..., hidden]``.

    GRU of Cho et al. (2014) in the cuDNN / PyTorch form, from ``h_0 = 0``::

        r_t = sigmoid(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
        z_t = sigmoid(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
        n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))
        h_t = (1 - z_t) * n_t + z_t * h_{t-1}

    Parameters: ``dense_i`` (kernel ``[F, 3H]``, bias ``[3H]``) and ``dense_h`` (kernel
    ``[H, 3H]``, orthogonal init, bias ``[3H]``); the ``3H`` columns are ordered ``(r, z, n)``.
    The input projections of all time steps are one matmul; only the recurrence runs in
    ``jax.lax.scan`` with ``unroll`` steps per loop iteration (at most ``T``; the constructor's
    ``unroll`` unless the call gives one). Unrolling a short history completely lets XLA fuse the
    steps: a forward pass (inference) of ``T = 10`` runs about 4x faster on a CPU, whereas
    training (forward and backward) runs slightly slower and compiles longer, hence the default
    1. Any leading dimensions (agents, environments, ...) are batch dimensions.
    """

    def __init__(self, in_features: int, hidden: int, *, unroll: int = 1, rngs: nnx.Rngs):
        if int(unroll) < 1:
            raise ValueError(f"unroll must be >= 1, got {unroll}")
        self.in_features = int(in_features)
        self.hidden = int(hidden)
        self.unroll = int(unroll)
        self.dense_i = nnx.Linear(self.in_features, 3 * self.hidden, rngs=rngs)
        self.dense_h = nnx.Linear(
            self.hidden,
            3 * self.hidden,
            kernel_init=nnx.initializers.orthogonal(),
            rngs=rngs,
        )

    def __call__(self, x: jax.Array, unroll: int | None = None) -> jax.Array:
        if x.ndim < 2 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"GRUEncoder expects x[..., T, {self.in_features}], got shape {x.shape}"
            )
        unroll = self.unroll if unroll is None else int(unroll)
        if unroll < 1:
            raise ValueError(f"unroll must be >= 1, got {unroll}")
        xi = self.dense_i(x)  # [..., T, 3H]
        xi = jnp.moveaxis(xi, -2, 0)  # [T, ..., 3H]
        h0 = jnp.zeros(xi.shape[1:-1] + (self.hidden,), xi.dtype)
        dense_h = self.dense_h

        def step(h, xi_t):
            xr, xz, xn = jnp.split(xi_t, 3, axis=-1)
            hr, hz, hn = jnp.split(dense_h(h), 3, axis=-1)
            r = jax.nn.sigmoid(xr + hr)
            z = jax.nn.sigmoid(xz + hz)
            n = jnp.tanh(xn + r * hn)
            h = (1.0 - z) * n + z * h
            return h.astype(h0.dtype), None

        h, _ = jax.lax.scan(step, h0, xi, unroll=max(1, min(xi.shape[0], unroll)))
        return h


# --------------------------------------------------------------------------------------------
# Graph attention
# --------------------------------------------------------------------------------------------


def _check_graph(n_nodes, senders, receivers, edge_type, edge_mask, node_mask):
    senders = jnp.asarray(senders)
    receivers = jnp.asarray(receivers)
    if senders.ndim != 1 or receivers.ndim != 1:
        raise ValueError(
            f"senders/receivers must be 1-D [E], got {senders.shape} and {receivers.shape}"
        )
    n_edges = senders.shape[0]
    if receivers.shape[0] != n_edges:
        raise ValueError(
            f"senders and receivers differ in length: {senders.shape[0]} != {receivers.shape[0]}"
        )
    if edge_type is None:
        edge_type = jnp.zeros((n_edges,), jnp.int32)
    edge_type = jnp.asarray(edge_type)
    if edge_type.shape != (n_edges,):
        raise ValueError(f"edge_type must have shape ({n_edges},), got {edge_type.shape}")
    if edge_mask is None:
        edge_mask = jnp.ones((n_edges,), bool)
    edge_mask = jnp.asarray(edge_mask, bool)
    if edge_mask.shape != (n_edges,):
        raise ValueError(f"edge_mask must have shape ({n_edges},), got {edge_mask.shape}")
    if node_mask is None:
        node_mask = jnp.ones((n_nodes,), bool)
    node_mask = jnp.asarray(node_mask, bool)
    if node_mask.shape != (n_nodes,):
        raise ValueError(f"node_mask must have shape ({n_nodes},), got {node_mask.shape}")
    return (
        senders.astype(jnp.int32),
        receivers.astype(jnp.int32),
        edge_type.astype(jnp.int32),
        edge_mask,
        node_mask,
    )


def _concrete(x):
    """``x`` as a NumPy array, or ``None`` when it is traced (not known at trace time)."""
    try:
        return np.asarray(x)
    except (TypeError, jax.errors.ConcretizationTypeError):
        return None


def grid_layout(senders, receivers, edge_type=None, edge_mask=None, n_nodes=None):
    """``(L, K)`` when the graph is the complete AP-UE pair graph, else ``None``.

    The pair graph of ``n_nodes = L K`` agents numbered ``i = l K + k`` (AP ``l``, UE ``k``):
    type-0 edges ``(l, j) -> (l, k)`` for all ``j != k`` (same AP) and type-1 edges
    ``(m, k) -> (l, k)`` for all ``m != l`` (same UE), each exactly once, in any order, with no
    other edge and every ``edge_mask`` entry true (``None``: all true). Only concrete (untraced)
    arrays are recognised; traced ones give ``None``. ``senders[E]``, ``receivers[E]``,
    ``edge_type[E]`` (``None``: all 0), ``edge_mask[E]``; ``n_nodes`` an int.
    """
    s, r = _concrete(senders), _concrete(receivers)
    if s is None or r is None or n_nodes is None or s.ndim != 1 or s.shape != r.shape:
        return None
    n = int(n_nodes)
    t = np.zeros(s.shape, np.int64) if edge_type is None else _concrete(edge_type)
    if t is None or t.shape != s.shape:
        return None
    if edge_mask is not None:
        em = _concrete(edge_mask)
        if em is None or em.shape != s.shape or not np.all(em):
            return None
    if n < 1:
        return None
    s, r, t = s.astype(np.int64), r.astype(np.int64), t.astype(np.int64)
    n0, n1 = int(np.sum(t == 0)), int(np.sum(t == 1))
    if n0 + n1 != s.size or n0 % n or n1 % n:
        return None
    K, L = n0 // n + 1, n1 // n + 1
    if L * K != n or np.any((s < 0) | (s >= n) | (r < 0) | (r >= n)) or np.any(s == r):
        return None
    s0, r0, s1, r1 = s[t == 0], r[t == 0], s[t == 1], r[t == 1]
    if np.any(s0 // K != r0 // K) or np.any(s1 % K != r1 % K):
        return None
    if np.unique(s0 * n + r0).size != n0 or np.unique(s1 * n + r1).size != n1:
        return None
    return L, K


def _masked_softmax(score, valid):
    """Softmax over the last axis restricted to ``valid`` (all invalid: zeros), max shift with
    the gradient stopped, as in the segment path."""
    neg_inf = jnp.asarray(-jnp.inf, score.dtype)
    mx = jnp.max(jnp.where(valid, score, neg_inf), axis=-1, keepdims=True)
    mx = jax.lax.stop_gradient(jnp.where(jnp.isfinite(mx), mx, 0.0))
    w = jnp.where(valid, jnp.exp(jnp.where(valid, score - mx, 0.0)), 0.0)
    den = jnp.sum(w, axis=-1, keepdims=True)
    return w / jnp.where(den > 0, den, 1.0)


def _grid_messages(q, k, v, node_mask, L, K):
    """Attention messages on the ``L x K`` pair grid: ``q, k, v[..., L K, types, d]`` ->
    ``[..., L K, d]`` (type 0 within a row = same AP, type 1 within a column = same UE)."""
    lead, d = q.shape[:-3], q.shape[-1]
    scale = jnp.sqrt(jnp.asarray(d, q.dtype))
    nm = node_mask.reshape(L, K)

    def grid(a, t):
        return a[..., t, :].reshape(lead + (L, K, d))

    msg = jnp.zeros(lead + (L, K, d), q.dtype)
    if K > 1:  # receiver (l, k) <- sender (l, j)
        score = jnp.einsum("...lkd,...ljd->...lkj", grid(q, 0), grid(k, 0)) / scale
        valid = ~np.eye(K, dtype=bool)[None] & nm[:, :, None] & nm[:, None, :]
        msg = msg + jnp.einsum("...lkj,...ljd->...lkd", _masked_softmax(score, valid), grid(v, 0))
    if L > 1:  # receiver (l, k) <- sender (m, k)
        score = jnp.einsum("...lkd,...mkd->...lkm", grid(q, 1), grid(k, 1)) / scale
        valid = ~np.eye(L, dtype=bool)[:, None, :] & nm[:, :, None] & nm.T[None, :, :]
        msg = msg + jnp.einsum("...lkm,...mkd->...lkd", _masked_softmax(score, valid), grid(v, 1))
    return msg.reshape(lead + (L * K, d))


class GraphAttention(nnx.Module):
    """One round of typed single-head softmax-attention message passing.

    TransformerConv of Shi et al. (2021) (eqs. (4)-(6), one head, no edge features), with one
    query/key/value map per edge type as in APS-GNN (seed 003 section IV-B). For an edge
    ``j -> i`` of type ``t`` (``d = out_features``)::

        q_i^t = W_q^t h_i + b_q^t,  k_j^t = W_k^t h_j + b_k^t,  v_j^t = W_v^t h_j + b_v^t
        e_ij  = <q_i^t, k_j^t> / sqrt(d)
        a_ij  = softmax of e_ij over the valid incoming edges of receiver i of type t
        m_i^t = sum_j a_ij v_j^t                  (zero if i has no such edge)
        h_i'  = relu(W_self h_i + b_self + sum_t m_i^t)

    The softmax is computed per (receiver, type) segment with ``jax.ops.segment_max`` (shift,
    gradient stopped) and ``jax.ops.segment_sum``; empty segments give a zero message, never a
    NaN. An edge is valid if ``edge_mask`` is set and both end nodes are in ``node_mask``; invalid
    edges contribute nothing, masked nodes send nothing and output zeros.

    Parameters: ``query``, ``key``, ``value`` are ``nnx.Linear(F, n_edge_types * d)`` whose
    output reshapes to ``[n_edge_types, d]`` (type ``t`` uses columns ``t*d:(t+1)*d``, i.e. the
    per-type maps stacked), and ``self_map = nnx.Linear(F, d)``.

    Call: ``h[..., n_nodes, F]``, ``senders[E]``, ``receivers[E]``, ``edge_type[E]`` (int, in
    ``[0, n_edge_types)``; ``None``: all 0), ``edge_mask[E]`` and ``node_mask[n_nodes]`` (bool,
    ``None``: all true) -> ``[..., n_nodes, d]``. The graph arrays are shared by all leading
    batch elements. Permuting the nodes (and relabelling senders/receivers) permutes the output.

    Fast path: when the graph arrays are concrete (not traced) and form the complete AP-UE pair
    graph of :func:`grid_layout` (the agent graph of the AP-selection scenario), the same
    attention is computed densely over the ``L x K`` grid of agents (row-wise softmax over the
    ``K - 1`` pairs of the same AP, column-wise over the ``L - 1`` pairs of the same UE) with
    batched matmuls instead of per-edge gathers and scatter-adds: identical up to float
    rounding, 5-15x faster on a CPU. ``self.grid_fast_path = False`` forces the segment path.
    """

    def __init__(self, in_features: int, out_features: int, n_edge_types: int, *, rngs):
        if n_edge_types < 1:
            raise ValueError(f"n_edge_types must be >= 1, got {n_edge_types}")
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.n_edge_types = int(n_edge_types)
        m = self.n_edge_types * self.out_features
        self.query = nnx.Linear(self.in_features, m, rngs=rngs)
        self.key = nnx.Linear(self.in_features, m, rngs=rngs)
        self.value = nnx.Linear(self.in_features, m, rngs=rngs)
        self.self_map = nnx.Linear(self.in_features, self.out_features, rngs=rngs)
        self.grid_fast_path = True

    def __call__(
        self,
        h: jax.Array,
        senders: jax.Array,
        receivers: jax.Array,
        edge_type: jax.Array | None = None,
        edge_mask: jax.Array | None = None,
        node_mask: jax.Array | None = None,
    ) -> jax.Array:
        if h.ndim < 2 or h.shape[-1] != self.in_features:
            raise ValueError(
                f"GraphAttention expects h[..., n_nodes, {self.in_features}], got {h.shape}"
            )
        n_nodes = h.shape[-2]
        grid = None
        if self.grid_fast_path:
            grid = grid_layout(senders, receivers, edge_type, edge_mask, n_nodes)
        senders, receivers, edge_type, edge_mask, node_mask = _check_graph(
            n_nodes, senders, receivers, edge_type, edge_mask, node_mask
        )
        n_types, d = self.n_edge_types, self.out_features
        lead = h.shape[:-2]
        shape = lead + (n_nodes, n_types, d)
        q = self.query(h).reshape(shape)
        k = self.key(h).reshape(shape)
        v = self.value(h).reshape(shape)
        if grid is not None and (grid[0] == 1 or n_types >= 2):
            msg = _grid_messages(q, k, v, node_mask, *grid)
            out = nnx.relu(self.self_map(h) + msg)
            return jnp.where(node_mask[:, None], out, jnp.zeros((), out.dtype))
        # Per-edge gathers (shared graph, broadcast over the leading dims): [..., E, d].
        q_e = q[..., receivers, edge_type, :]
        k_e = k[..., senders, edge_type, :]
        v_e = v[..., senders, edge_type, :]
        # Edge axis first for the segment ops: [E, ..., (d)].
        q_e, k_e, v_e = (jnp.moveaxis(a, -2, 0) for a in (q_e, k_e, v_e))
        score = jnp.sum(q_e * k_e, axis=-1) / jnp.sqrt(jnp.asarray(d, q_e.dtype))  # [E, ...]

        valid = edge_mask & node_mask[senders] & node_mask[receivers]  # [E]
        valid_b = valid.reshape((-1,) + (1,) * len(lead))
        n_seg = n_nodes * n_types
        seg = receivers * n_types + edge_type
        neg_inf = jnp.asarray(-jnp.inf, score.dtype)
        seg_max = jax.ops.segment_max(jnp.where(valid_b, score, neg_inf), seg, num_segments=n_seg)
        seg_max = jax.lax.stop_gradient(jnp.where(jnp.isfinite(seg_max), seg_max, 0.0))
        w = jnp.where(valid_b, jnp.exp(jnp.where(valid_b, score - seg_max[seg], 0.0)), 0.0)
        denom = jax.ops.segment_sum(w, seg, num_segments=n_seg)
        denom = jnp.where(denom > 0, denom, 1.0)
        alpha = w / denom[seg]  # [E, ...]
        # Sum over edge types too: segment by receiver only (each type is normalised already).
        msg = jax.ops.segment_sum(alpha[..., None] * v_e, receivers, num_segments=n_nodes)
        msg = jnp.moveaxis(msg, 0, -2)  # [..., n_nodes, d]
        out = nnx.relu(self.self_map(h) + msg)
        return jnp.where(node_mask[:, None], out, jnp.zeros((), out.dtype))


class GraphEncoder(nnx.Module):
    """``rounds`` stacked ``GraphAttention`` layers: ``[..., n, in] -> [..., n, hidden]``.

    Layer 1 maps ``in_features -> hidden``, later ones ``hidden -> hidden``. With
    ``rounds == 0`` it is the identity (output features ``in_features``); ``out_features``
    holds the output width either way.
    """

    def __init__(
        self, in_features: int, hidden: int, n_edge_types: int, rounds: int, *, rngs: nnx.Rngs
    ):
        if rounds < 0:
            raise ValueError(f"rounds must be >= 0, got {rounds}")
        self.rounds = int(rounds)
        self.layers = nnx.List(
            [
                GraphAttention(in_features if r == 0 else hidden, hidden, n_edge_types, rngs=rngs)
                for r in range(self.rounds)
            ]
        )
        self.out_features = int(hidden) if self.rounds > 0 else int(in_features)

    def __call__(self, h, senders, receivers, edge_type=None, edge_mask=None, node_mask=None):
        for layer in self.layers:  # a loop over rounds (layers), not over data
            h = layer(h, senders, receivers, edge_type, edge_mask, node_mask)
        return h


# --------------------------------------------------------------------------------------------
# Actor-critic
# --------------------------------------------------------------------------------------------


class AgentActorCritic(nnx.Module):
    """Shared-parameter actor-critic for all agents of a scenario.

    ``obs[..., n_agents, T, F]`` (``encoder="gru"``) or ``obs[..., n_agents, F]``
    (``encoder="mlp"``; an ``obs[..., n_agents, T, F]`` with ``T*F == obs_features`` is
    flattened) plus optional graph arrays over the agents -> ``(logits[..., n_agents,
    n_actions], values[..., n_agents, n_value_heads])``.

    Backbone (shared by actor and critic heads, as APS-GNN's reward and cost critics share the
    actor's GRU+GNN, seed 003 section IV-B)::

        e_i = GRU(o_i)  or  relu(MLP(o_i))                            [hidden]
        z_i = e_i + GNN(e)_i   (if gnn_rounds > 0 and senders given; else z_i = e_i)
        z_i = 0 for agents outside node_mask

    Heads (two-layer MLPs, ``hidden`` units, ReLU)::

        logits_i = pi(z_i)                      (output kernel init scaled by 0.01)
        values_i = V(z_i)                       critic="local"   (IPPO)
        values_i = V([z_i, mean_{j in mask} z_j])  critic="central" (MAPPO, Yu et al. 2022)

    ``n_value_heads``: 1 for a reward critic, 2 for reward + cost (Lagrangian). ``gru_unroll``
    (call): the GRU's scan unroll for this call (``GRUEncoder``; inference uses a full unroll).
    """

    def __init__(
        self,
        obs_features: int,
        n_actions: int,
        *,
        hidden: int = 64,
        encoder: str = "gru",
        gnn_rounds: int = 2,
        n_edge_types: int = 2,
        critic: str = "local",
        n_value_heads: int = 1,
        rngs: nnx.Rngs,
    ):
        if encoder not in ("gru", "mlp"):
            raise ValueError(f"unknown encoder {encoder!r}; expected 'gru' or 'mlp'")
        if critic not in ("local", "central"):
            raise ValueError(f"unknown critic {critic!r}; expected 'local' or 'central'")
        if gnn_rounds < 0 or n_value_heads < 1 or n_actions < 1 or hidden < 1:
            raise ValueError("gnn_rounds must be >= 0; n_value_heads, n_actions, hidden >= 1")
        self.obs_features = int(obs_features)
        self.n_actions = int(n_actions)
        self.hidden = int(hidden)
        self.encoder_kind = encoder
        self.critic_kind = critic
        self.n_value_heads = int(n_value_heads)
        if encoder == "gru":
            self.encoder = GRUEncoder(self.obs_features, self.hidden, rngs=rngs)
        else:
            self.encoder = MLP(self.obs_features, (self.hidden,), self.hidden, rngs=rngs)
        self.gnn = GraphEncoder(self.hidden, self.hidden, n_edge_types, gnn_rounds, rngs=rngs)
        self.actor = MLP(self.hidden, (self.hidden,), self.n_actions, out_scale=0.01, rngs=rngs)
        critic_in = self.hidden * (2 if critic == "central" else 1)
        self.critic = MLP(critic_in, (self.hidden,), self.n_value_heads, rngs=rngs)

    def __call__(
        self,
        obs: jax.Array,
        senders: jax.Array | None = None,
        receivers: jax.Array | None = None,
        edge_type: jax.Array | None = None,
        edge_mask: jax.Array | None = None,
        node_mask: jax.Array | None = None,
        gru_unroll: int | None = None,
    ) -> tuple[jax.Array, jax.Array]:
        obs = jnp.asarray(obs)
        if self.encoder_kind == "gru":
            if obs.ndim < 3 or obs.shape[-1] != self.obs_features:
                raise ValueError(
                    "encoder 'gru' expects obs[..., n_agents, T, "
                    f"{self.obs_features}], got shape {obs.shape}"
                )
            n_agents = obs.shape[-3]
        else:
            if (
                obs.ndim >= 3
                and obs.shape[-1] != self.obs_features
                and obs.shape[-2] * obs.shape[-1] == self.obs_features
            ):
                obs = obs.reshape(obs.shape[:-2] + (self.obs_features,))
            if obs.ndim < 2 or obs.shape[-1] != self.obs_features:
                raise ValueError(
                    f"encoder 'mlp' expects obs[..., n_agents, {self.obs_features}] (or "
                    f"[..., n_agents, T, F] with T*F == {self.obs_features}), got {obs.shape}"
                )
            n_agents = obs.shape[-2]
        if not jnp.issubdtype(obs.dtype, jnp.floating):
            obs = obs.astype(jnp.float32)

        if node_mask is None:
            mask = jnp.ones((n_agents,), bool)
        else:
            mask = jnp.asarray(node_mask, bool)
            if mask.shape != (n_agents,):
                raise ValueError(f"node_mask must have shape ({n_agents},), got {mask.shape}")

        if self.encoder_kind == "gru":
            e = self.encoder(obs, unroll=gru_unroll)
        else:
            e = nnx.relu(self.encoder(obs))
        z = e
        if self.gnn.rounds > 0 and senders is not None:
            if receivers is None:
                raise ValueError("receivers must be given together with senders")
            z = e + self.gnn(e, senders, receivers, edge_type, edge_mask, mask)
        z = jnp.where(mask[:, None], z, jnp.zeros((), z.dtype))

        logits = self.actor(z)
        if self.critic_kind == "central":
            w = mask.astype(z.dtype)[:, None]
            pooled = jnp.sum(z * w, axis=-2, keepdims=True) / jnp.maximum(jnp.sum(w), 1.0)
            c_in = jnp.concatenate([z, jnp.broadcast_to(pooled, z.shape)], axis=-1)
        else:
            c_in = z
        values = self.critic(c_in)
        return logits, values


class CentralActorCritic(nnx.Module):
    """One monolithic agent over all pairs (seed 003's PPO-Lagr baseline, section VI-B).

    The state is the concatenation of every agent's latest observation (for a history
    ``obs[..., n_agents, T, F]`` the last step ``obs[..., -1, :]``, the instantaneous channel
    magnitudes of all AP-UE pairs), ``s[..., n_agents F]``; a shared MLP trunk
    ``x = relu(W2 relu(W1 s))`` feeds an actor head with ``n_agents n_actions`` logits (a
    factorised joint action: one categorical per agent, their log-probabilities summed by the
    trainer) and a critic head with ``n_value_heads`` global values, broadcast to every agent.
    ``-> (logits[..., n_agents, n_actions], values[..., n_agents, n_value_heads])``. Graph
    arguments are accepted and ignored (same call signature as ``AgentActorCritic``).
    """

    def __init__(
        self,
        n_agents: int,
        obs_features: int,
        n_actions: int,
        *,
        hidden: int = 64,
        n_value_heads: int = 1,
        rngs: nnx.Rngs,
    ):
        if min(n_agents, obs_features, n_actions, hidden, n_value_heads) < 1:
            raise ValueError(
                "n_agents, obs_features, n_actions, hidden and n_value_heads must be >= 1"
            )
        self.n_agents = int(n_agents)
        self.obs_features = int(obs_features)
        self.n_actions = int(n_actions)
        self.n_value_heads = int(n_value_heads)
        d = self.n_agents * self.obs_features
        self.trunk = MLP(d, (hidden,), hidden, rngs=rngs)
        self.actor = MLP(
            hidden, (hidden,), self.n_agents * self.n_actions, out_scale=0.01, rngs=rngs
        )
        self.critic = MLP(hidden, (hidden,), self.n_value_heads, rngs=rngs)

    def __call__(
        self, obs, senders=None, receivers=None, edge_type=None, edge_mask=None, node_mask=None
    ):
        obs = jnp.asarray(obs)
        if obs.ndim >= 3 and obs.shape[-3] == self.n_agents:
            obs = obs[..., -1, :]  # the latest step of each agent's history
        if obs.ndim < 2 or obs.shape[-2:] != (self.n_agents, self.obs_features):
            raise ValueError(
                f"CentralActorCritic expects obs[..., {self.n_agents}, (T,) "
                f"{self.obs_features}], got shape {obs.shape}"
            )
        lead = obs.shape[:-2]
        x = nnx.relu(self.trunk(obs.reshape(lead + (-1,))))
        logits = self.actor(x).reshape(lead + (self.n_agents, self.n_actions))
        values = self.critic(x)[..., None, :]
        values = jnp.broadcast_to(values, lead + (self.n_agents, self.n_value_heads))
        return logits, values


# --------------------------------------------------------------------------------------------
# Functional helpers
# --------------------------------------------------------------------------------------------


def split_model(model: nnx.Module) -> tuple[Any, nnx.State]:
    """``nnx.split``: ``(graphdef, params)``; ``params`` is a pytree of arrays (``nnx.State``).

    ``graphdef`` is static (hashable, no arrays): close over it or pass it as a static argument.
    """
    return nnx.split(model)


def apply_model(graphdef: Any, params: nnx.State, *args, **kwargs):
    """Rebuild the module from ``(graphdef, params)`` (``nnx.merge``) and call it.

    Pure function of ``params`` and the inputs: safe under ``jax.jit``/``vmap``/``scan``/``grad``.
    """
    return nnx.merge(graphdef, params)(*args, **kwargs)


def apply_method(graphdef: Any, params: nnx.State, method: str, *args, **kwargs):
    """Like ``apply_model`` but calls the module's method ``method`` (e.g. the transformer's
    ``"sample"`` or ``"values"``)."""
    return getattr(nnx.merge(graphdef, params), method)(*args, **kwargs)


def init_params(key: jax.Array, **ctor_kwargs) -> tuple[Any, nnx.State]:
    """``AgentActorCritic(**ctor_kwargs)`` (or, with ``model="central"``,
    ``CentralActorCritic``; with ``model="mat"``, ``transformer.MultiAgentTransformer``)
    initialised from a PRNG key: ``(graphdef, params)``.

    ``key`` may be a raw ``uint32[2]`` key or a typed key, and may be traced: inside
    ``jax.vmap`` over keys only ``params`` can be returned (``graphdef`` is static; take it from
    one call outside the transformation). Identical keys give identical parameters.
    """
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.wrap_key_data(key)
    ctor_kwargs = dict(ctor_kwargs)
    kind = ctor_kwargs.pop("model", "agent")
    if kind == "agent":
        model = AgentActorCritic(**ctor_kwargs, rngs=nnx.Rngs(params=key))
    elif kind == "central":
        model = CentralActorCritic(**ctor_kwargs, rngs=nnx.Rngs(params=key))
    elif kind == "mat":
        from .transformer import MultiAgentTransformer

        model = MultiAgentTransformer(**ctor_kwargs, rngs=nnx.Rngs(params=key))
    else:
        raise ValueError(f"model must be 'agent', 'central' or 'mat', got {kind!r}")
    return split_model(model)


def param_count(params: nnx.State) -> int:
    """Number of scalar parameters in a params pytree."""
    return int(sum(x.size for x in jax.tree.leaves(params)))

"""Building blocks of the policy networks, written once (Flax NNX; pure JAX inside).

The agent axis, the graph nodes/edges and the time axis are array axes (no Python loops over
them), graph arrays are static-shaped with masks, and any number of leading batch dimensions
(environments, rollout steps, ...) are accepted. ``algorithms.networks`` (actor-critics) and
``algorithms.transformer`` (Multi-Agent Transformer) build on these; neither imports the other's
layers.

``MLP``                multi-layer perceptron on the last axis (optional inverted dropout).
``GRUEncoder``         final hidden state of a GRU (Cho et al. 2014, "Learning Phrase
                       Representations using RNN Encoder-Decoder for Statistical Machine
                       Translation") over an observation history.
``masked_softmax``     softmax over the last axis restricted to a mask (empty rows: zeros).
``attend``             multi-head scaled dot-product attention (Vaswani et al. 2017, "Attention
                       Is All You Need") with a boolean mask.
``MultiHeadAttention`` ``attend`` with learned query/key/value/output maps.
``grid_layout``        recognises the complete AP-UE pair graph (fast path of the GNN).
``GraphAttention``     one round of typed, single-head softmax-attention message passing (Shi et
                       al. 2021, "Masked Label Prediction: Unified Message Passing Model for
                       Semi-Supervised Classification", i.e. PyG ``TransformerConv``; the GNN of
                       APS-GNN, "Graph-Neural Multi-Agent Coordination for Distributed
                       Access-Point Selection in Cell-Free Massive MIMO", section IV-B, with one
                       set of maps per edge type).
``GraphEncoder``       ``rounds`` stacked ``GraphAttention`` layers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = [
    "MLP",
    "GRUEncoder",
    "masked_softmax",
    "attend",
    "MultiHeadAttention",
    "grid_layout",
    "GraphAttention",
    "GraphEncoder",
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
# Masked softmax and multi-head attention
# --------------------------------------------------------------------------------------------


def masked_softmax(score: jax.Array, valid: jax.Array) -> jax.Array:
    """Softmax over the last axis restricted to ``valid``.

    ``score[..., n]``, ``valid`` (bool, broadcastable to ``score``) -> ``w[..., n]`` with::

        w_j = valid_j exp(s_j - m) / sum_{k valid} exp(s_k - m),   m = max_{k valid} s_k

    (``m`` with its gradient stopped; a row with no valid entry gives zeros, never a NaN).
    Shared by the dense pair-grid path of ``GraphAttention`` and by ``attend``.
    """
    neg_inf = jnp.asarray(-jnp.inf, score.dtype)
    mx = jnp.max(jnp.where(valid, score, neg_inf), axis=-1, keepdims=True)
    mx = jax.lax.stop_gradient(jnp.where(jnp.isfinite(mx), mx, 0.0))
    w = jnp.where(valid, jnp.exp(jnp.where(valid, score - mx, 0.0)), 0.0)
    den = jnp.sum(w, axis=-1, keepdims=True)
    return w / jnp.where(den > 0, den, 1.0)


def attend(q, k, v, mask, n_heads: int):
    """Scaled dot-product attention over ``n_heads`` heads (Vaswani et al. 2017, "Attention Is
    All You Need", eq. (1)).

    ``q[..., nq, d]``, ``k[..., nk, d]``, ``v[..., nk, d]``, ``mask`` broadcastable to
    ``[..., nq, nk]`` (True: attend; ``None``: all) -> ``[..., nq, d]``::

        out_h = masked_softmax(q_h k_h^T / sqrt(d / n_heads), mask) v_h

    with ``q_h`` the ``h``-th block of ``d / n_heads`` columns. Rows whose mask is all False
    give zeros.
    """
    d = q.shape[-1]
    dh = d // n_heads

    def heads(x):  # [..., n, d] -> [..., H, n, dh]
        return jnp.moveaxis(x.reshape(x.shape[:-1] + (n_heads, dh)), -2, -3)

    qh, kh, vh = heads(q), heads(k), heads(v)
    s = jnp.einsum("...qd,...kd->...qk", qh, kh) / jnp.sqrt(jnp.asarray(dh, q.dtype))
    if mask is not None:
        w = masked_softmax(s, jnp.expand_dims(jnp.asarray(mask, bool), -3))  # over heads
    else:
        w = jax.nn.softmax(s, axis=-1)
    out = jnp.einsum("...qk,...kd->...qd", w, vh)  # [..., H, nq, dh]
    out = jnp.moveaxis(out, -3, -2)
    return out.reshape(out.shape[:-2] + (d,))


class MultiHeadAttention(nnx.Module):
    """``out = W_o attend(W_q xq, W_k xkv, W_v xkv, mask)`` with ``n_heads`` heads
    (``d % n_heads == 0``); ``xq[..., nq, d]``, ``xkv[..., nk, d]`` -> ``[..., nq, d]``."""

    def __init__(self, d: int, n_heads: int, *, rngs: nnx.Rngs):
        if d % n_heads:
            raise ValueError(f"hidden={d} must be a multiple of n_heads={n_heads}")
        self.n_heads = int(n_heads)
        self.q = nnx.Linear(d, d, rngs=rngs)
        self.k = nnx.Linear(d, d, rngs=rngs)
        self.v = nnx.Linear(d, d, rngs=rngs)
        self.o = nnx.Linear(d, d, rngs=rngs)

    def __call__(self, xq, xkv, mask=None):
        return self.o(attend(self.q(xq), self.k(xkv), self.v(xkv), mask, self.n_heads))


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
        msg = msg + jnp.einsum("...lkj,...ljd->...lkd", masked_softmax(score, valid), grid(v, 0))
    if L > 1:  # receiver (l, k) <- sender (m, k)
        score = jnp.einsum("...lkd,...mkd->...lkm", grid(q, 1), grid(k, 1)) / scale
        valid = ~np.eye(L, dtype=bool)[:, None, :] & nm[:, :, None] & nm.T[None, :, :]
        msg = msg + jnp.einsum("...lkm,...mkd->...lkd", masked_softmax(score, valid), grid(v, 1))
    return msg.reshape(lead + (L * K, d))


class GraphAttention(nnx.Module):
    """One round of typed single-head softmax-attention message passing.

    TransformerConv of Shi et al. (2021) (eqs. (4)-(6), one head, no edge features), with one
    query/key/value map per edge type as in APS-GNN (section IV-B of "Graph-Neural
    Multi-Agent Coordination for Distributed Access-Point Selection in Cell-Free Massive
    MIMO"). For an edge
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

"""Tests for ``algorithms.networks``: NumPy float64 references for the GRU and the typed graph
attention, permutation equivariance (hypothesis), shapes, gradients, jit/vmap and the
functional split/apply helpers. All shapes are tiny so that compilation stays cheap."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

from algorithms import networks as net

HID = 8
N_NODES = 5

# A small graph with two edge types. Node 4 has no incoming edges at all; node 3 is masked
# (it has incoming and outgoing edges); edge 6 is masked. Receivers 1 (type 0) and 2 (type 1)
# have several valid incoming edges, so the attention weights are non-trivial.
SENDERS = np.array([0, 2, 3, 0, 1, 4, 4, 1, 0, 3], np.int32)
RECEIVERS = np.array([1, 1, 1, 2, 2, 2, 0, 0, 3, 0], np.int32)
EDGE_TYPE = np.array([0, 0, 0, 1, 1, 1, 0, 1, 0, 1], np.int32)
EDGE_MASK = np.array([1, 1, 1, 1, 1, 1, 0, 1, 1, 1], bool)
NODE_MASK = np.array([1, 1, 1, 0, 1], bool)
GRAPH = dict(
    senders=SENDERS,
    receivers=RECEIVERS,
    edge_type=EDGE_TYPE,
    edge_mask=EDGE_MASK,
    node_mask=NODE_MASK,
)


def _np(x):
    return np.asarray(x[...], np.float64)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# ------------------------------------------------------------------------------------------
# MLP / GRU
# ------------------------------------------------------------------------------------------


def test_mlp_shapes_and_equation():
    mlp = net.MLP(3, (HID, 6), 4, rngs=nnx.Rngs(0))
    x = np.random.default_rng(0).normal(size=(2, 3, 3))
    y = np.asarray(mlp(jnp.asarray(x)))
    assert y.shape == (2, 3, 4)
    a = x
    for i, layer in enumerate(mlp.layers):
        a = a @ _np(layer.kernel) + _np(layer.bias)
        if i < 2:
            a = np.maximum(a, 0.0)
    np.testing.assert_allclose(y, a, rtol=1e-10, atol=1e-12)
    lin = net.MLP(3, (), 2, rngs=nnx.Rngs(0))
    assert lin(jnp.ones((7, 3))).shape == (7, 2)
    with pytest.raises(ValueError):
        mlp(jnp.ones((2, 4)))


def _numpy_gru(x, enc):
    """Independent float64 GRU (Cho et al. 2014, cuDNN/PyTorch form) from h_0 = 0."""
    wi, bi = _np(enc.dense_i.kernel), _np(enc.dense_i.bias)
    wh, bh = _np(enc.dense_h.kernel), _np(enc.dense_h.bias)
    H = enc.hidden
    h = np.zeros(x.shape[:-2] + (H,))
    for t in range(x.shape[-2]):
        gi = x[..., t, :] @ wi + bi
        gh = h @ wh + bh
        r = _sigmoid(gi[..., :H] + gh[..., :H])
        z = _sigmoid(gi[..., H : 2 * H] + gh[..., H : 2 * H])
        n = np.tanh(gi[..., 2 * H :] + r * gh[..., 2 * H :])
        h = (1.0 - z) * n + z * h
    return h


def test_gru_matches_numpy():
    enc = net.GRUEncoder(3, HID, rngs=nnx.Rngs(1))
    rng = np.random.default_rng(1)
    # Non-zero biases so that every bias term of the equations is exercised.
    for lin in (enc.dense_i, enc.dense_h):
        lin.bias[...] = jnp.asarray(rng.normal(size=lin.bias.shape), jnp.float32)
    x = rng.normal(size=(2, 4, 5, 3))  # [envs, agents, T, F], float64
    h = enc(jnp.asarray(x))
    assert h.shape == (2, 4, HID) and h.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(h), _numpy_gru(x, enc), rtol=1e-10, atol=1e-12)
    # Partly unrolled scans (2 does not divide T = 5) and the plain loop give the same state.
    for unroll in (2, 5, 16):
        np.testing.assert_allclose(
            np.asarray(enc(jnp.asarray(x), unroll=unroll)), np.asarray(h), rtol=1e-12
        )
    with pytest.raises(ValueError, match="unroll"):
        net.GRUEncoder(3, HID, unroll=0, rngs=nnx.Rngs(1))
    with pytest.raises(ValueError, match="unroll"):
        enc(jnp.asarray(x), unroll=0)
    # No leading dims, T = 1.
    x1 = x[0, 0, :1]
    np.testing.assert_allclose(
        np.asarray(enc(jnp.asarray(x1))), _numpy_gru(x1, enc), rtol=1e-10, atol=1e-12
    )
    with pytest.raises(ValueError):
        enc(jnp.ones((3,)))
    with pytest.raises(ValueError):
        enc(jnp.ones((4, 2)))


# ------------------------------------------------------------------------------------------
# Graph attention
# ------------------------------------------------------------------------------------------


def _numpy_gat(h, layer, senders, receivers, edge_type, edge_mask, node_mask):
    """Dense loop implementation of typed single-head TransformerConv, float64."""
    T, d = layer.n_edge_types, layer.out_features
    F = h.shape[-1]
    wq = _np(layer.query.kernel).reshape(F, T, d)
    bq = _np(layer.query.bias).reshape(T, d)
    wk = _np(layer.key.kernel).reshape(F, T, d)
    bk = _np(layer.key.bias).reshape(T, d)
    wv = _np(layer.value.kernel).reshape(F, T, d)
    bv = _np(layer.value.bias).reshape(T, d)
    ws, bs = _np(layer.self_map.kernel), _np(layer.self_map.bias)
    n = h.shape[0]
    out = np.zeros((n, d))
    for i in range(n):
        if not node_mask[i]:
            continue
        acc = h[i] @ ws + bs
        for t in range(T):
            js = [
                senders[e]
                for e in range(len(senders))
                if receivers[e] == i
                and edge_type[e] == t
                and edge_mask[e]
                and node_mask[senders[e]]
            ]
            if not js:
                continue
            q = h[i] @ wq[:, t] + bq[t]
            scores = np.array([q @ (h[j] @ wk[:, t] + bk[t]) / np.sqrt(d) for j in js])
            a = np.exp(scores - scores.max())
            a /= a.sum()
            acc = acc + sum(a[m] * (h[j] @ wv[:, t] + bv[t]) for m, j in enumerate(js))
        out[i] = np.maximum(acc, 0.0)
    return out


def _gat_with_biases(seed=2):
    layer = net.GraphAttention(3, HID, 2, rngs=nnx.Rngs(seed))
    rng = np.random.default_rng(seed)
    for lin in (layer.query, layer.key, layer.value, layer.self_map):
        lin.bias[...] = jnp.asarray(0.3 * rng.normal(size=lin.bias.shape), jnp.float32)
    return layer


def test_graph_attention_matches_numpy():
    layer = _gat_with_biases()
    rng = np.random.default_rng(3)
    h = rng.normal(size=(2, N_NODES, 3))  # one leading batch dim
    out = np.asarray(layer(jnp.asarray(h), **GRAPH))
    assert out.shape == (2, N_NODES, HID)
    assert np.all(np.isfinite(out))
    for b in range(2):
        ref = _numpy_gat(h[b], layer, SENDERS, RECEIVERS, EDGE_TYPE, EDGE_MASK, NODE_MASK)
        np.testing.assert_allclose(out[b], ref, rtol=1e-9, atol=1e-12)
    # Node 4 has no incoming edge: only its self term. Masked node 3 outputs zeros.
    self4 = np.maximum(h[:, 4] @ _np(layer.self_map.kernel) + _np(layer.self_map.bias), 0)
    np.testing.assert_allclose(out[:, 4], self4, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(out[:, 3], 0.0)
    # Masked nodes send nothing: changing node 3's features changes nothing.
    h2 = h.copy()
    h2[:, 3] += 5.0
    np.testing.assert_allclose(np.asarray(layer(jnp.asarray(h2), **GRAPH)), out, atol=1e-12)
    # Defaults (no masks, all edges type 0) also match the reference.
    out0 = np.asarray(layer(jnp.asarray(h[0]), SENDERS, RECEIVERS))
    ones_e, ones_n = np.ones(len(SENDERS), bool), np.ones(N_NODES, bool)
    zeros_t = np.zeros(len(SENDERS), np.int32)
    ref0 = _numpy_gat(h[0], layer, SENDERS, RECEIVERS, zeros_t, ones_e, ones_n)
    np.testing.assert_allclose(out0, ref0, rtol=1e-9, atol=1e-12)
    # All edges masked: zero messages, no NaN.
    outm = np.asarray(
        layer(jnp.asarray(h[0]), SENDERS, RECEIVERS, EDGE_TYPE, np.zeros(len(SENDERS), bool))
    )
    selfm = np.maximum(h[0] @ _np(layer.self_map.kernel) + _np(layer.self_map.bias), 0)
    np.testing.assert_allclose(outm, selfm, rtol=1e-10, atol=1e-12)


def test_graph_encoder_rounds():
    h = jnp.asarray(np.random.default_rng(4).normal(size=(N_NODES, 3)))
    enc0 = net.GraphEncoder(3, HID, 2, 0, rngs=nnx.Rngs(0))
    assert enc0.out_features == 3
    np.testing.assert_array_equal(np.asarray(enc0(h, SENDERS, RECEIVERS)), np.asarray(h))
    enc3 = net.GraphEncoder(3, HID, 2, 3, rngs=nnx.Rngs(0))
    assert enc3.out_features == HID and len(enc3.layers) == 3
    out = enc3(h, **GRAPH)
    a = h
    for layer in enc3.layers:
        a = layer(a, **GRAPH)
    np.testing.assert_allclose(np.asarray(out), np.asarray(a), atol=1e-12)
    with pytest.raises(ValueError):
        net.GraphEncoder(3, HID, 2, -1, rngs=nnx.Rngs(0))


def _pair_graph(L, K):
    """The complete AP-UE pair graph written from its definition (agent ``l K + k``)."""
    s, r, t = [], [], []
    for l in range(L):
        for k in range(K):
            for j in range(K):
                if j != k:
                    s.append(l * K + j), r.append(l * K + k), t.append(0)
            for m in range(L):
                if m != l:
                    s.append(m * K + k), r.append(l * K + k), t.append(1)
    return np.array(s, np.int32), np.array(r, np.int32), np.array(t, np.int32)


def test_grid_layout_recognises_only_the_pair_graph():
    for L, K in ((3, 4), (1, 4), (4, 1), (2, 2)):
        s, r, t = _pair_graph(L, K)
        assert net.grid_layout(s, r, t, None, L * K) == (L, K)
        eo = np.random.default_rng(L * K).permutation(len(s))  # edge order is irrelevant
        assert net.grid_layout(s[eo], r[eo], t[eo], np.ones(len(s), bool), L * K) == (L, K)
    s, r, t = _pair_graph(3, 4)
    ok = np.ones(len(s), bool)
    assert net.grid_layout(s[1:], r[1:], t[1:], None, 12) is None  # an edge missing
    assert net.grid_layout(s, r, t, np.r_[False, ok[1:]], 12) is None  # an edge masked
    s2, r2, t2 = s.copy(), r.copy(), t.copy()
    s2[0], r2[0] = r[0], r[0]  # a self loop instead of an edge
    assert net.grid_layout(s2, r2, t2, None, 12) is None
    s3 = np.r_[s[:-1], s[0]].astype(np.int32)  # a duplicate edge instead of the last one
    r3 = np.r_[r[:-1], r[0]].astype(np.int32)
    assert net.grid_layout(s3, r3, t, None, 12) is None
    assert net.grid_layout(s, r, 1 - t, None, 12) is None  # types swapped
    assert net.grid_layout(s, r, t, None, 13) is None
    assert net.grid_layout(SENDERS, RECEIVERS, EDGE_TYPE, EDGE_MASK, N_NODES) is None
    # traced graph arrays are not recognised (the segment path runs)
    seen = []
    jax.jit(lambda a, b: seen.append(net.grid_layout(a, b, t, None, 12)) or a)(s, r)
    assert seen == [None]


@pytest.mark.parametrize("L, K", [(3, 4), (1, 4), (4, 1)])
def test_grid_fast_path_equals_segment_path_and_numpy(L, K):
    """The dense pair-grid attention equals the segment (gather/scatter) path and the NumPy
    loop reference, values and gradients, with masked nodes."""
    s, r, t = _pair_graph(L, K)
    layer = net.GraphAttention(3, HID, 2, rngs=nnx.Rngs(L + K))
    rng = np.random.default_rng(L * 10 + K)
    for lin in (layer.query, layer.key, layer.value, layer.self_map):
        lin.bias[...] = jnp.asarray(0.3 * rng.normal(size=lin.bias.shape), jnp.float32)
    h = jnp.asarray(rng.normal(size=(2, L * K, 3)))
    nm = rng.random(L * K) > 0.3
    nm[0] = True
    w = jnp.asarray(rng.normal(size=(2, L * K, HID)))
    graphdef, params = nnx.split(layer)

    def loss(params, h, fast):
        m = nnx.merge(graphdef, params)
        m.grid_fast_path = fast
        out = m(h, s, r, t, None, nm)
        return jnp.sum(w * out), out

    (_, fast), g_fast = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params, h, True)
    (_, slow), g_slow = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params, h, False)
    np.testing.assert_allclose(np.asarray(fast), np.asarray(slow), rtol=1e-10, atol=1e-12)
    for a, b in zip(jax.tree.leaves(g_fast), jax.tree.leaves(g_slow), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-9, atol=1e-11)
    for b in range(2):
        ref = _numpy_gat(np.asarray(h[b]), layer, s, r, t, np.ones(len(s), bool), nm)
        np.testing.assert_allclose(np.asarray(fast[b]), ref, rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------------------------------
# Actor-critic
# ------------------------------------------------------------------------------------------

T_OBS, F_OBS, N_ACT = 3, 4, 5
KW = dict(
    obs_features=F_OBS,
    n_actions=N_ACT,
    hidden=HID,
    encoder="gru",
    gnn_rounds=2,
    n_edge_types=2,
    critic="central",
    n_value_heads=2,
)
GRAPHDEF, _ = net.init_params(jax.random.PRNGKey(0), **KW)


@jax.jit
def _apply(params, obs, senders, receivers, edge_type, edge_mask, node_mask):
    return net.apply_model(
        GRAPHDEF,
        params,
        obs,
        senders=senders,
        receivers=receivers,
        edge_type=edge_type,
        edge_mask=edge_mask,
        node_mask=node_mask,
    )


def _obs(seed, lead=()):
    return np.random.default_rng(seed).normal(size=lead + (N_NODES, T_OBS, F_OBS))


@settings(max_examples=12, deadline=None)
@given(
    perm=st.permutations(range(N_NODES)),
    senders=st.lists(st.integers(0, N_NODES - 1), min_size=8, max_size=8),
    receivers=st.lists(st.integers(0, N_NODES - 1), min_size=8, max_size=8),
    types=st.lists(st.integers(0, 1), min_size=8, max_size=8),
    emask=st.lists(st.booleans(), min_size=8, max_size=8),
    nmask=st.lists(st.booleans(), min_size=N_NODES, max_size=N_NODES),
    seed=st.integers(0, 2**16),
)
def test_permutation_equivariance(perm, senders, receivers, types, emask, nmask, seed):
    _, params = net.init_params(jax.random.PRNGKey(seed % 7), **KW)
    obs = _obs(seed)
    s, r = np.array(senders, np.int32), np.array(receivers, np.int32)
    t, em, nm = np.array(types, np.int32), np.array(emask), np.array(nmask)
    logits, values = _apply(params, obs, s, r, t, em, nm)
    # Node perm[i] of the permuted graph is node i of the original one.
    perm = np.array(perm)
    inv = np.argsort(perm)
    obs_p = obs[inv]
    nm_p = nm[inv]
    s_p, r_p = perm[s].astype(np.int32), perm[r].astype(np.int32)
    # Also shuffle the edge order (edges are a set).
    eo = np.random.default_rng(seed).permutation(len(s))
    lp, vp = _apply(params, obs_p, s_p[eo], r_p[eo], t[eo], em[eo], nm_p)
    np.testing.assert_allclose(np.asarray(lp)[perm], np.asarray(logits), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(np.asarray(vp)[perm], np.asarray(values), rtol=1e-9, atol=1e-12)
    assert np.all(np.isfinite(np.asarray(logits))) and np.all(np.isfinite(np.asarray(values)))


@pytest.mark.parametrize(
    "kw, obs_shape, lead, graph",
    [
        (dict(KW), (2, 3, N_NODES, T_OBS, F_OBS), (2, 3, N_NODES), GRAPH),
        (
            dict(KW, gnn_rounds=0, critic="local", n_value_heads=1),
            (N_NODES, T_OBS, F_OBS),
            (N_NODES,),
            {},
        ),
        (
            dict(KW, encoder="mlp", obs_features=T_OBS * F_OBS),
            (2, N_NODES, T_OBS, F_OBS),
            (2, N_NODES),
            GRAPH,
        ),
        (dict(KW, encoder="mlp", critic="local"), (2, 1, N_NODES, F_OBS), (2, 1, N_NODES), {}),
    ],
)
def test_output_shapes(kw, obs_shape, lead, graph):
    model = net.AgentActorCritic(**kw, rngs=nnx.Rngs(0))
    obs = jnp.asarray(np.random.default_rng(0).normal(size=obs_shape))
    logits, values = model(obs, **graph)
    assert logits.shape == lead + (N_ACT,)
    assert values.shape == lead + (kw["n_value_heads"],)
    assert np.all(np.isfinite(np.asarray(logits))) and np.all(np.isfinite(np.asarray(values)))


def test_masked_agent_and_central_critic():
    _, params = net.init_params(jax.random.PRNGKey(1), **KW)
    obs = _obs(5)
    logits, values = _apply(params, obs, *GRAPH.values())
    obs2 = obs.copy()
    obs2[3] += 3.0  # masked agent: affects nobody (also not the central critic's mean)
    l2, v2 = _apply(params, obs2, *GRAPH.values())
    np.testing.assert_allclose(np.asarray(l2), np.asarray(logits), atol=1e-12)
    np.testing.assert_allclose(np.asarray(v2), np.asarray(values), atol=1e-12)
    # The central critic of agent 4 (no incoming edges) still sees agent 0's observation.
    obs3 = obs.copy()
    obs3[0] += 1.0
    l3, v3 = _apply(params, obs3, *GRAPH.values())
    np.testing.assert_allclose(np.asarray(l3)[4], np.asarray(logits)[4], atol=1e-12)
    assert np.abs(np.asarray(v3)[4] - np.asarray(values)[4]).max() > 1e-6


def test_gradients_flow_to_all_parameters():
    _, params = net.init_params(jax.random.PRNGKey(2), **KW)
    obs = _obs(6, (2,))
    rng = np.random.default_rng(7)
    cl = rng.normal(size=(2, N_NODES, N_ACT))
    cv = rng.normal(size=(2, N_NODES, 2))

    def loss(p):
        lg, v = _apply(p, obs, *GRAPH.values())
        return jnp.sum(jax.nn.log_softmax(lg) * cl) + jnp.sum(v * cv)

    grads = jax.grad(loss)(params)
    flat = jax.tree_util.tree_leaves_with_path(grads)
    assert len(flat) == len(jax.tree.leaves(params))
    for path, g in flat:
        g = np.asarray(g)
        assert np.all(np.isfinite(g)), path
        assert np.abs(g).max() > 0, f"zero gradient at {jax.tree_util.keystr(path)}"


def test_jit_equals_eager_and_optax_step():
    graphdef, params = net.init_params(jax.random.PRNGKey(3), **KW)
    obs = _obs(8, (2,))
    eager = net.apply_model(graphdef, params, jnp.asarray(obs), **GRAPH)
    jitted = _apply(params, obs, *GRAPH.values())
    for a, b in zip(eager, jitted):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-9, atol=1e-12)
    # One optax step on the params pytree under jit.
    opt = optax.adam(1e-2)
    opt_state = opt.init(params)

    @jax.jit
    def step(p, s):
        g = jax.grad(lambda p: jnp.sum(_apply(p, obs, *GRAPH.values())[1] ** 2))(p)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s

    p2, _ = step(params, opt_state)
    assert jax.tree.structure(p2) == jax.tree.structure(params)
    diffs = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), p2, params)
    assert max(jax.tree.leaves(diffs)) > 0


def test_vmap_init_and_apply_match_loop():
    keys = jax.random.split(jax.random.PRNGKey(4), 3)

    def init(k):
        return net.init_params(k, **KW)[1]

    batched = jax.jit(jax.vmap(init))(keys)
    obs = np.stack([_obs(10 + i) for i in range(3)])
    lb, vb = jax.vmap(_apply, (0, 0) + (None,) * 5)(batched, obs, *GRAPH.values())
    for i in range(3):
        graphdef, p = net.init_params(keys[i], **KW)
        assert graphdef == GRAPHDEF
        for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(batched)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b)[i])
        li, vi = net.apply_model(graphdef, p, jnp.asarray(obs[i]), **GRAPH)
        np.testing.assert_allclose(np.asarray(lb[i]), np.asarray(li), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(np.asarray(vb[i]), np.asarray(vi), rtol=1e-9, atol=1e-12)
    # Identical keys -> identical params (typed and raw keys alike); different keys differ.
    _, pa = net.init_params(jax.random.PRNGKey(4), **KW)
    _, pb = net.init_params(jax.random.key(4), **KW)
    for a, b in zip(jax.tree.leaves(pa), jax.tree.leaves(pb)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    k0 = np.asarray(jax.tree.leaves(batched)[-1])
    assert np.abs(k0[0] - k0[1]).max() > 0
    assert net.param_count(pa) == sum(x.size for x in jax.tree.leaves(pa))


def test_initial_policy_near_uniform():
    _, params = net.init_params(jax.random.PRNGKey(5), **KW)
    logits, _ = _apply(params, _obs(11), *GRAPH.values())
    probs = np.asarray(jax.nn.softmax(logits))
    assert np.abs(np.asarray(logits)).max() < 0.1
    np.testing.assert_allclose(probs, 1.0 / N_ACT, atol=0.02)


def test_value_errors():
    rngs = nnx.Rngs(0)
    with pytest.raises(ValueError, match="encoder"):
        net.AgentActorCritic(F_OBS, N_ACT, hidden=HID, encoder="lstm", rngs=rngs)
    with pytest.raises(ValueError, match="critic"):
        net.AgentActorCritic(F_OBS, N_ACT, hidden=HID, critic="global", rngs=rngs)
    model = net.AgentActorCritic(F_OBS, N_ACT, hidden=HID, gnn_rounds=1, rngs=rngs)
    with pytest.raises(ValueError, match="obs"):
        model(jnp.ones((N_NODES, F_OBS)))  # gru needs [..., n_agents, T, F]
    with pytest.raises(ValueError, match="obs"):
        model(jnp.ones((N_NODES, T_OBS, F_OBS + 1)))
    mlp = net.AgentActorCritic(F_OBS, N_ACT, hidden=HID, encoder="mlp", rngs=rngs)
    with pytest.raises(ValueError, match="obs"):
        mlp(jnp.ones((F_OBS,)))
    obs = jnp.ones((N_NODES, T_OBS, F_OBS))
    with pytest.raises(ValueError, match="length"):
        model(obs, SENDERS, RECEIVERS[:-1])
    with pytest.raises(ValueError, match="node_mask"):
        model(obs, SENDERS, RECEIVERS, node_mask=np.ones(N_NODES + 1, bool))
    with pytest.raises(ValueError, match="edge_type"):
        model(obs, SENDERS, RECEIVERS, edge_type=EDGE_TYPE[:-1])
    with pytest.raises(ValueError, match="receivers"):
        model(obs, SENDERS)


# ------------------------------------------------------------------------------------------
# Central (single-agent) actor-critic: APS-GNN's PPO-Lagr baseline
# ------------------------------------------------------------------------------------------


def test_central_actor_critic_equation_and_shapes():
    """State = every agent's latest observation, concatenated; an MLP trunk; per-agent logits
    from one head; one global value per head, broadcast to the agents (NumPy float64 check)."""
    A, T, F, H = 6, 3, 2, 8
    graphdef, params = net.init_params(
        jax.random.PRNGKey(0),
        model="central",
        n_agents=A,
        obs_features=F,
        n_actions=2,
        hidden=H,
        n_value_heads=2,
    )
    model = nnx.merge(graphdef, params)
    obs = np.random.default_rng(1).normal(size=(4, A, T, F))
    logits, values = model(jnp.asarray(obs, jnp.float32), senders=np.zeros(3, np.int32))
    assert logits.shape == (4, A, 2) and values.shape == (4, A, 2)

    def dense(layer, x):
        return x @ _np(layer.kernel) + _np(layer.bias)

    def mlp(m, x):
        for i, layer in enumerate(m.layers):
            x = dense(layer, x)
            if i < len(m.layers) - 1:
                x = np.maximum(x, 0.0)
        return x

    s = obs[:, :, -1, :].reshape(4, A * F)
    x = np.maximum(mlp(model.trunk, s), 0.0)
    np.testing.assert_allclose(_np(logits), mlp(model.actor, x).reshape(4, A, 2), atol=1e-5)
    v = mlp(model.critic, x)
    np.testing.assert_allclose(_np(values), np.broadcast_to(v[:, None, :], (4, A, 2)), atol=1e-5)
    # only the latest step of the history enters the state
    obs2 = obs.copy()
    obs2[:, :, 0, :] += 5.0
    np.testing.assert_array_equal(_np(model(jnp.asarray(obs2, jnp.float32))[0]), _np(logits))
    with pytest.raises(ValueError, match="CentralActorCritic expects"):
        model(jnp.zeros((4, A + 1, T, F)))
    with pytest.raises(ValueError, match="model must be"):
        net.init_params(jax.random.PRNGKey(0), model="transformer")


def test_layers_are_shared_and_masked_softmax_matches_numpy():
    """The building blocks live once in ``algorithms.layers`` (re-exported by ``networks`` and
    ``transformer``); ``masked_softmax`` against NumPy, an all-masked row giving zeros."""
    from algorithms import layers, transformer

    for name in ("MLP", "GRUEncoder", "GraphAttention", "GraphEncoder", "grid_layout"):
        assert getattr(net, name) is getattr(layers, name)
    assert transformer.attend is layers.attend
    assert transformer.MultiHeadAttention is layers.MultiHeadAttention
    rng = np.random.default_rng(0)
    s = rng.normal(size=(4, 5)) * 3.0
    valid = rng.random((4, 5)) < 0.6
    valid[1] = False
    valid[2] = True
    want = np.where(valid, np.exp(s - np.where(valid, s, -np.inf).max(-1, keepdims=True)), 0.0)
    want = want / np.maximum(want.sum(-1, keepdims=True), 1e-300)
    want[1] = 0.0

    def loss(x):
        return jnp.sum(layers.masked_softmax(x, valid) ** 2)

    @jax.jit  # one compile (eager dispatch would compile every primitive)
    def run(x):
        return layers.masked_softmax(x, valid), jax.grad(loss)(x)

    got, g = run(jnp.asarray(s, jnp.float32))
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-7)
    assert np.all(np.isfinite(np.asarray(g)))

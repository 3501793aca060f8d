"""AP-cooperation physics of [AP-COOP]: threshold clusters (eq. (2)), interference metric
(eq. (7)), neighbours (eq. (11)), clusters from mutual agreements, cluster RZF / MRT
(eqs. (14)-(18)) and the SINR (eq. (9)), against hand-computed cases and the NumPy float64
reference ``tests/numpy_cooperation.py``. Runs in float64 (``conftest.py``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import numpy_cooperation as ref
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cfmimo_jax import cooperation as co
from cfmimo_jax import pilots, processing

# One jitted version of each kernel (few shapes below -> few compilations).
j_threshold = jax.jit(pilots.threshold_clusters, static_argnums=2)
j_metric = jax.jit(co.interference_metric, static_argnames="exclude_desired")
j_neighbours = jax.jit(co.interference_neighbours, static_argnames=("max_neighbours", "per_ap"))
j_agree = jax.jit(co.agreement_matrix)
j_clusters = jax.jit(co.clusters_from_agreements)
j_rzf = jax.jit(processing.cluster_rzf)
j_sinr = jax.jit(co.downlink_sinr)

M, K, N = 6, 5, 2  # the random cases
ALPHA = 0.3


def _channels(rng, shape=(M, K, N), scale=None):
    H = (rng.normal(size=shape) + 1j * rng.normal(size=shape)) / np.sqrt(2)
    if scale is not None:
        H = H * np.sqrt(scale)[..., None]
    return H


@pytest.fixture(scope="module")
def case():
    """Clusters {0, 2, 5} (AP 5 serves no UE), {1} alone, {3, 4}; UE 1 and 3 are served by
    two clusters; unequal large-scale gains."""
    rng = np.random.default_rng(7)
    gain = rng.uniform(0.2, 5.0, size=(M, K))
    H = _channels(rng, scale=gain)
    D = np.zeros((M, K), bool)
    for m, ks in {0: [0, 4], 1: [3], 2: [1], 3: [1, 3], 4: [2], 5: []}.items():
        D[m, ks] = True
    cluster = np.array([0, 1, 0, 3, 3, 0], np.int32)
    rho = rng.uniform(10.0, 100.0, size=(M, K))
    return dict(H=H, D=D, cluster=cluster, rho=rho, gain=gain, rng=rng)


# ------------------------------------------------------------------ eq. (2): threshold clusters

# Hand-made gains (M = 4 APs, K = 4 UEs); expected sets worked out by hand below.
GAIN = np.array(
    [
        [1.0, 0.2, 0.3, 0.5],
        [0.6, 0.1, 0.3, 1.0],
        [0.4, 0.8, 0.3, 0.49],
        [0.55, 0.05, 0.1, 0.0],
    ]
)


def _sets(D):
    return [sorted(np.flatnonzero(D[:, k]).tolist()) for k in range(D.shape[1])]


@pytest.mark.parametrize(
    "delta, max_aps, expected",
    [
        # UE 0: threshold 0.5 passes {0 (1.0), 1 (0.6), 3 (0.55)}, the 2 strongest {0, 1};
        # UE 1: threshold 0.4 passes {2}; UE 2: 0.15 passes {0, 1, 2} (equal), lower indices
        # first -> {0, 1}; UE 3: 0.5 passes {1 (1.0), 0 (exactly 0.5)}.
        (0.5, 2, [[0, 1], [2], [0, 1], [0, 1]]),
        (0.5, 5, [[0, 1, 3], [2], [0, 1, 2], [0, 1]]),
        # delta = 1: only the best (ties all pass: UE 2 has three equal APs).
        (1.0, 5, [[0], [2], [0, 1, 2], [1]]),
        (1.0, 1, [[0], [2], [0], [1]]),
        # delta tiny: every AP with a gain > 0 (UE 3 has a zero-gain AP), then the cap.
        (1e-3, 5, [[0, 1, 2, 3], [0, 1, 2, 3], [0, 1, 2, 3], [0, 1, 2]]),
        (1e-3, 3, [[0, 1, 3], [0, 1, 2], [0, 1, 2], [0, 1, 2]]),
    ],
)
def test_threshold_clusters_hand_made(delta, max_aps, expected):
    D = np.asarray(pilots.threshold_clusters(GAIN, delta, max_aps))
    assert D.dtype == np.bool_ and D.shape == GAIN.shape
    assert _sets(D) == expected


def test_threshold_clusters_vs_numpy_jit_vmap():
    rng = np.random.default_rng(1)
    gains = 10.0 ** rng.uniform(-3, 0, size=(8, 10, 7))
    gains[0, :, 3] = 0.0  # a UE no AP reaches: served by its first AP (the strongest, tied)
    gains[1, :4, 2] = 0.5  # ties
    deltas = np.array([0.05, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0, 0.2])
    batch = np.asarray(jax.vmap(j_threshold, in_axes=(0, 0, None))(gains, deltas, 3))
    for b in range(len(gains)):
        expected = ref.threshold_clusters(gains[b], deltas[b], 3)
        np.testing.assert_array_equal(batch[b], expected)
        assert batch[b].any(axis=0).all() and (batch[b].sum(axis=0) <= 3).all()
    # jit equals eager
    np.testing.assert_array_equal(
        np.asarray(j_threshold(gains[2], deltas[2], 3)),
        np.asarray(pilots.threshold_clusters(gains[2], deltas[2], 3)),
    )


@pytest.mark.parametrize("delta", [0.0, -0.1, 1.5, float("nan"), np.array([0.5, 0.5])])
def test_threshold_clusters_bad_delta(delta):
    with pytest.raises(ValueError, match="delta"):
        pilots.threshold_clusters(GAIN, delta, 2)


@pytest.mark.parametrize(
    "gain, max_aps, name",
    [
        (GAIN, 0, "max_aps"),
        (GAIN, 2.5, "max_aps"),
        (GAIN, True, "max_aps"),
        (GAIN[0], 2, "gain"),
        (-GAIN, 2, "gain"),
        (np.where(GAIN > 0.9, np.nan, GAIN), 2, "gain"),
    ],
)
def test_threshold_clusters_bad_input(gain, max_aps, name):
    with pytest.raises(ValueError, match=name):
        pilots.threshold_clusters(gain, 0.5, max_aps)


# ------------------------------------------------------------------ eq. (7): interference metric


def _hand_metric_case():
    # M = 3 APs, K = 2 UEs, N = 1. AP 0 serves UE 0, AP 1 UE 1, AP 2 both.
    H = np.array([[[1.0], [2.0]], [[3.0], [1.0]], [[1.0], [2.0]]], complex)
    W = np.array([[[1.0], [0.0]], [[0.0], [1.0]], [[1.0], [1j]]], complex)
    rho = np.array([[2.0, 5.0], [7.0, 3.0], [1.0, 1.0]])  # 5, 7: not served, must not count
    D = np.array([[True, False], [False, True], [True, True]])
    return H, W, rho, D


def test_interference_metric_hand_made():
    H, W, rho, D = _hand_metric_case()
    # I_01 = rho_11 |h_10 w_11|^2 = 3 * 9; I_02 = |h_20 w_20|^2 + |h_20 w_21|^2 = 1 + 1;
    # I_10 = rho_00 |h_01 w_00|^2 = 2 * 4; I_12 = |2 * 1|^2 + |2 * 1j|^2 = 8;
    # I_20 = (2 * |1|^2 + 2 * |2|^2) / 2 = 5; I_21 = (3 * |3|^2 + 3 * |1|^2) / 2 = 15.
    expected = np.array([[0, 27, 2], [8, 0, 8], [5, 15, 0]], float)
    np.testing.assert_allclose(np.asarray(co.interference_metric(H, W, rho, D)), expected)
    # Without the desired terms j = k: I_02 = 1, I_12 = 4, I_20 = 8 / 2, I_21 = 27 / 2.
    expected_x = np.array([[0, 27, 1], [8, 0, 4], [4, 13.5, 0]], float)
    got = co.interference_metric(H, W, rho, D, exclude_desired=True)
    np.testing.assert_allclose(np.asarray(got), expected_x)


@pytest.mark.parametrize("exclude_desired", [False, True])
def test_interference_metric_vs_numpy(case, exclude_desired):
    W = np.asarray(j_rzf(case["H"], case["cluster"], case["D"], ALPHA))
    rng = np.random.default_rng(3)
    Htrue = case["H"] + 0.3 * _channels(rng)
    D = np.asarray(processing.cluster_serving(case["cluster"], case["D"]))
    for Dm in (case["D"], D):
        got = np.asarray(j_metric(Htrue, W, case["rho"], Dm, exclude_desired=exclude_desired))
        want = ref.interference_metric(Htrue, W, case["rho"], Dm, exclude_desired)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
        assert (got[5] == 0.0).all() == (not Dm[5].any())  # AP 5 serves nobody on case["D"]
        assert (np.diagonal(got) == 0.0).all() and (got[:5] > 0).any()


# ------------------------------------------------------------------ eq. (11): neighbours

# The diagonal (I[5, 5] = 100) is ignored: global max 10 -> threshold 0.5.
I_HAND = np.array(
    [
        [0.0, 10.0, 0.4, 3.0, 0.6, 2.0],
        [5.0, 0.0, 0.5, 0.51, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        [1.0, 2.0, 3.0, 0.0, 4.0, 5.0],
        [0.7, 0.7, 0.0, 0.1, 0.0, 0.0],
        [0.2, 0.0, 0.0, 0.0, 0.3, 100.0],
    ]
)


@pytest.mark.parametrize(
    "per_ap, expected",
    [
        # global: row 1's 0.5 is not > 0.5; row 3 has 5 candidates, the 4 largest kept;
        # row 4: equal values, lower index first; row 5: nothing above 0.5.
        (False, [[1, 3, 5, 4], [0, 3], [], [5, 4, 2, 1], [0, 1], []]),
        # per AP: thresholds 0.5, 0.25, 0 (none > 0), 0.25, 0.035, 0.015.
        (True, [[1, 3, 5, 4], [0, 3, 2], [], [5, 4, 2, 1], [0, 1, 3], [4, 0]]),
    ],
)
def test_neighbours_hand_made(per_ap, expected):
    idx, mask = co.interference_neighbours(I_HAND, 4, per_ap=per_ap)
    idx, mask = np.asarray(idx), np.asarray(mask)
    assert idx.shape == mask.shape == (6, 4) and idx.dtype == np.int32
    for m in range(6):
        assert idx[m][mask[m]].tolist() == expected[m]
        assert (idx[m][~mask[m]] == m).all()  # padding: the AP itself
        assert mask[m].tolist() == sorted(mask[m].tolist(), reverse=True)  # valid slots first


def test_neighbours_more_slots_than_aps():
    I = np.array([[0.0, 1.0, 2.0], [0.0, 0.0, 0.0], [3.0, 0.0, 0.0]])
    idx, mask = co.interference_neighbours(I, 5)
    assert np.asarray(idx).shape == (3, 5)
    got = [np.asarray(idx)[m][np.asarray(mask)[m]].tolist() for m in range(3)]
    assert got == [[2, 1], [], [0]]


def test_neighbours_vs_numpy_jit_vmap(case):
    rng = np.random.default_rng(5)
    Is = rng.exponential(size=(6, 9, 9)) ** 3
    Is[1, 2:6] = 0.0
    idx, mask = jax.vmap(functools.partial(j_neighbours, max_neighbours=4))(Is)
    for b in range(len(Is)):
        want = ref.interference_neighbours(Is[b], 4)
        got = [np.asarray(idx[b, m])[np.asarray(mask[b, m])].tolist() for m in range(9)]
        assert got == want
    e_idx, e_mask = co.interference_neighbours(Is[0], 4)
    np.testing.assert_array_equal(np.asarray(e_idx), np.asarray(idx[0]))
    np.testing.assert_array_equal(np.asarray(e_mask), np.asarray(mask[0]))


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(I=I_HAND[:, :5]), "I"),
        (dict(I=-I_HAND), "I"),
        (dict(I=I_HAND, max_neighbours=0), "max_neighbours"),
        (dict(I=I_HAND, ratio=-0.1), "ratio"),
        (dict(I=I_HAND, ratio=np.array([0.1, 0.2])), "ratio"),
    ],
)
def test_neighbours_bad_input(kwargs, name):
    with pytest.raises(ValueError, match=name):
        co.interference_neighbours(**kwargs)


# ------------------------------------------------------------------ agreements and clusters


def test_agreement_matrix_hand_made():
    idx = np.array([[1, 2], [0, 3], [0, 0], [1, 1]], np.int32)
    mask = np.array([[1, 1], [1, 1], [1, 0], [1, 0]], bool)
    # AP 2's second slot wants AP 0 but is padding (ignored); AP 3's too.
    coop = np.array([[1, 1], [1, 0], [0, 1], [1, 1]], bool)
    A = np.asarray(co.agreement_matrix(idx, mask, coop))
    # 0 wants {1, 2}, 1 wants {0}, 2 wants {}, 3 wants {1}: only 0 - 1 is mutual.
    expected = np.zeros((4, 4), bool)
    expected[0, 1] = expected[1, 0] = True
    np.testing.assert_array_equal(A, expected)
    np.testing.assert_array_equal(
        np.asarray(co.cooperation_clusters(idx, mask, coop)), [0, 0, 2, 3]
    )


def test_clusters_hand_made():
    # chain 5 - 4 - 3 - 2 - 1 (links listed from the top, long diameter), 6 - 7, 0 alone;
    # 0 -> 6 is one-sided (no link).
    A = np.zeros((8, 8), bool)
    for a, b in [(5, 4), (4, 3), (3, 2), (2, 1), (6, 7)]:
        A[a, b] = A[b, a] = True
    A[0, 6] = True
    A[3, 3] = True  # the diagonal is ignored
    labels = np.asarray(co.clusters_from_agreements(A))
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(labels, [0, 1, 1, 1, 1, 1, 6, 6])
    np.testing.assert_array_equal(np.asarray(j_clusters(A)), labels)  # jit equals eager


def test_clusters_vs_union_find_vmap():
    rng = np.random.default_rng(11)
    Mg, B = 12, 48
    dens = rng.uniform(0.0, 0.5, size=(B, 1, 1))
    agree = rng.uniform(size=(B, Mg, Mg)) < dens  # one-sided wishes, mutual where both
    for b in range(0, B, 4):  # some random long paths (relabelled chains)
        perm = rng.permutation(Mg)
        agree[b] = False
        for a, c in zip(perm[:-1], perm[1:], strict=True):
            agree[b, a, c] = agree[b, c, a] = True
    batch = np.asarray(jax.vmap(j_clusters)(agree))
    for b in range(B):
        np.testing.assert_array_equal(batch[b], ref.union_find_labels(agree[b]))
    assert (batch[0] == 0).all()  # the path connects everything


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 11), st.integers(0, 11)), max_size=30))
def test_clusters_property(links):
    A = np.zeros((12, 12), bool)
    for a, b in links:
        A[a, b] = A[b, a] = True
    np.testing.assert_array_equal(np.asarray(j_clusters(A)), ref.union_find_labels(A))


@pytest.mark.parametrize(
    "fn, args, name",
    [
        (co.clusters_from_agreements, (np.zeros((3, 4), bool),), "agree"),
        (co.clusters_from_agreements, (np.full((3, 3), 2),), "agree"),
        (
            co.agreement_matrix,
            (np.zeros((3, 2)), np.ones((3, 2), bool), np.ones((3, 2), bool)),
            "idx",
        ),
        (
            co.agreement_matrix,
            (np.full((3, 2), 3), np.ones((3, 2), bool), np.ones((3, 2), bool)),
            "idx",
        ),
        (
            co.agreement_matrix,
            (np.zeros((3, 2), int), np.ones((3, 3), bool), np.ones((3, 2), bool)),
            "mask",
        ),
        (
            co.agreement_matrix,
            (np.zeros((3, 2), int), np.ones((3, 2), bool), np.full((3, 2), 0.5)),
            "coop",
        ),
    ],
)
def test_cluster_helpers_bad_input(fn, args, name):
    with pytest.raises(ValueError, match=name):
        fn(*args)


# ------------------------------------------------------------------ eqs. (14)-(18): cluster RZF


def test_cluster_rzf_vs_numpy(case):
    H, D, cl = case["H"], case["D"], case["cluster"]
    W = np.asarray(j_rzf(H, cl, D, ALPHA))
    want = ref.cluster_rzf(H, cl, D, ALPHA)
    np.testing.assert_allclose(W, want, rtol=0, atol=1e-10)
    # AP 5 serves nobody but transmits to its cluster's UEs {0, 1, 4}; AP 1 alone: MRT on UE 3
    assert np.allclose(np.linalg.norm(W[5], axis=-1), [1, 1, 0, 0, 1])
    np.testing.assert_allclose(W[1, 3], H[1, 3] / np.linalg.norm(H[1, 3]), atol=1e-12)
    serving = np.asarray(processing.cluster_serving(cl, D))
    np.testing.assert_array_equal(np.linalg.norm(W, axis=-1) > 0.5, serving)
    # any integer labels with the same partition give the same precoders
    W2 = np.asarray(j_rzf(H, np.array([7, -3, 7, 2, 2, 7], np.int32), D, ALPHA))
    np.testing.assert_allclose(W2, W, atol=1e-12)
    # jit equals eager
    np.testing.assert_allclose(np.asarray(processing.cluster_rzf(H, cl, D, ALPHA)), W, atol=1e-12)


def test_cluster_rzf_more_users_than_antennas():
    # A cluster {0, 1} of single-antenna APs jointly serving 4 UEs (|K_C| > |C| N), a
    # cluster {2, 3}, and a small alpha: the regularisation carries the system.
    rng = np.random.default_rng(2)
    H = _channels(rng, (4, 5, 1))
    D = np.array([[1, 1, 0, 0, 0], [0, 0, 1, 1, 0], [0, 0, 0, 1, 1], [0, 0, 0, 0, 0]], bool)
    cl = np.array([0, 0, 2, 2], np.int32)
    W = np.asarray(j_rzf(H, cl, D, 1e-2))
    np.testing.assert_allclose(W, ref.cluster_rzf(H, cl, D, 1e-2), rtol=0, atol=1e-9)


def test_cluster_rzf_hand_made_zero_forcing():
    # Two single-antenna APs, AP 0 serves UE 0, AP 1 UE 1; UE 0 is seen only by AP 0
    # (h_10 = 0), UE 1 by both (h_01 = h_11 = 1). H_C = [[1, 1], [0, 1]],
    # H_C (H_C^H H_C + alpha I)^{-1} is proportional to [[1 + alpha, alpha], [-1, 1 + alpha]]:
    # AP 1 sends -1 for UE 0, cancelling AP 0's +1 at UE 1. Normalised per AP: signs.
    H = np.array([[[1.0], [1.0]], [[0.0], [1.0]]], complex)
    D = np.array([[True, False], [False, True]])
    W = np.asarray(j_rzf(H, np.array([0, 0]), D, 0.5))[..., 0]
    np.testing.assert_allclose(W, [[1, 1], [-1, 1]], atol=1e-12)
    # UE 1 gets nothing of UE 0's stream: h_01^* w_00 + h_11^* w_10 = 0.
    assert abs(H[0, 1, 0] * W[0, 0] + H[1, 1, 0] * W[1, 0]) < 1e-12
    # Alone: MRT, eq. (18): only the own UE, h / |h|; a zero channel gives w = 0.
    Wm = np.asarray(j_rzf(H, np.array([0, 1]), D, 0.5))[..., 0]
    np.testing.assert_allclose(Wm, [[1, 0], [0, 1]], atol=1e-12)


def test_all_alone_is_mrt(case):
    H, D = case["H"], case["D"]
    W = np.asarray(j_rzf(H, np.arange(M, dtype=np.int32), D, ALPHA))
    norms = np.linalg.norm(H, axis=-1, keepdims=True)
    np.testing.assert_allclose(W, np.where(D[..., None], H / norms, 0.0), atol=1e-12)
    np.testing.assert_allclose(np.asarray(processing.mrt_precoders(H, D)), W, atol=1e-12)


def test_cluster_rzf_vmap_equals_loop(case):
    rng = np.random.default_rng(9)
    B = 3
    Hs = np.stack([_channels(rng, scale=case["gain"]) for _ in range(B)])
    Ds = rng.uniform(size=(B, M, K)) < 0.3
    cls = np.array([[0, 1, 0, 3, 3, 0], [0, 0, 0, 0, 0, 0], [0, 1, 2, 3, 4, 5]], np.int32)
    batch = np.asarray(jax.vmap(j_rzf, in_axes=(0, 0, 0, None))(Hs, cls, Ds, ALPHA))
    for b in range(B):
        np.testing.assert_allclose(
            batch[b], np.asarray(j_rzf(Hs[b], cls[b], Ds[b], ALPHA)), atol=1e-12
        )
        np.testing.assert_allclose(
            batch[b], ref.cluster_rzf(Hs[b], cls[b], Ds[b], ALPHA), atol=1e-10
        )


def test_cluster_rzf_float32(case):
    H = case["H"].astype(np.complex64)
    W = j_rzf(H, case["cluster"], case["D"], np.float32(ALPHA))
    assert W.dtype == jnp.complex64
    want = ref.cluster_rzf(case["H"], case["cluster"], case["D"], ALPHA)
    np.testing.assert_allclose(np.asarray(W), want, atol=2e-5)


@pytest.mark.parametrize(
    "change, name",
    [
        (dict(alpha=0.0), "alpha"),
        (dict(alpha=-1.0), "alpha"),
        (dict(alpha=np.array([1.0, 2.0])), "alpha"),
        (dict(alpha=float("inf")), "alpha"),
        (dict(cluster=np.array([0, 1, 0, 3, 3, 0], float)), "cluster"),
        (dict(cluster=np.array([0, 1, 0, 3, 3])), "cluster"),
        (dict(D=np.ones((M, K + 1), bool)), "D"),
        (dict(D=np.full((M, K), 0.5)), "D"),
        (dict(H=np.ones((M, K))), "H"),
        (dict(H=np.full((M, K, N), np.nan)), "H"),
    ],
)
def test_cluster_rzf_bad_input(case, change, name):
    args = dict(H=case["H"], cluster=case["cluster"], D=case["D"], alpha=ALPHA) | change
    with pytest.raises(ValueError, match=name):
        processing.cluster_rzf(**args)


# ------------------------------------------------------------------ eq. (9): SINR and sum rate


def test_sinr_hand_made():
    # M = 2, K = 2, N = 1. Amplitudes a_kj = sum_m sqrt(rho_mj) conj(h_mk) w_mj:
    # a_00 = 1 + 2 * conj(1j) * 1j = 3, a_01 = 1 + conj(1j) = 1 - 1j (power 2),
    # a_11 = 0.5 + 2 = 2.5, a_10 = 0.5 + 2 * 2 * 1j (power 16.25).
    H = np.array([[[1.0], [0.5]], [[1j], [2.0]]], complex)
    W = np.array([[[1.0], [1.0]], [[1j], [1.0]]], complex)
    rho = np.array([[1.0, 1.0], [4.0, 1.0]])
    np.testing.assert_allclose(np.asarray(co.downlink_sinr(H, W, rho)), [3.0, 6.25 / 17.25])
    np.testing.assert_allclose(np.asarray(co.downlink_sinr(H, W, rho, 0.5)), [3.6, 6.25 / 16.75])
    rate = float(co.sum_rate(H, W, rho))
    np.testing.assert_allclose(rate, 2.0 + np.log2(1.0 + 6.25 / 17.25))


def test_sinr_vs_numpy_vmap_jit(case):
    rng = np.random.default_rng(4)
    B = 3
    Hest = np.stack([_channels(rng, scale=case["gain"]) for _ in range(B)])
    Htrue = Hest + 0.2 * np.stack([_channels(rng) for _ in range(B)])
    W = np.asarray(
        jax.vmap(j_rzf, in_axes=(0, None, None, None))(Hest, case["cluster"], case["D"], ALPHA)
    )
    rho = case["rho"] * np.asarray(processing.cluster_serving(case["cluster"], case["D"]))
    batch = np.asarray(jax.vmap(j_sinr, in_axes=(0, 0, None, None))(Htrue, W, rho, 2.0))
    for b in range(B):
        want = ref.downlink_sinr(Htrue[b], W[b], rho, 2.0)
        np.testing.assert_allclose(batch[b], want, rtol=1e-12)
        np.testing.assert_allclose(np.asarray(j_sinr(Htrue[b], W[b], rho, 2.0)), want, rtol=1e-12)
    np.testing.assert_allclose(
        np.asarray(co.downlink_sinr(Htrue[0], W[0], rho, 2.0)), batch[0], rtol=1e-12
    )


def test_sum_rate_gradient_wrt_powers(case):
    rng = np.random.default_rng(6)
    H = _channels(rng, scale=case["gain"])
    W = np.asarray(j_rzf(case["H"], case["cluster"], case["D"], ALPHA))
    served = np.asarray(processing.cluster_serving(case["cluster"], case["D"]))
    x0 = case["rho"][served]

    def f(x):
        rho = jnp.zeros((M, K), x.dtype).at[served].set(x)
        return co.sum_rate(H, W, rho)

    g = np.asarray(jax.jit(jax.grad(f))(x0))
    fj, eps = jax.jit(f), 1e-4
    fd = np.array(
        [(float(fj(x0 + eps * e)) - float(fj(x0 - eps * e))) / (2 * eps) for e in np.eye(len(x0))]
    )
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize(
    "change, name",
    [
        (dict(H=np.ones((M, K))), "H"),
        (dict(W=np.ones((M, K, N + 1))), "W"),
        (dict(rho=np.ones((M, K + 1))), "rho"),
        (dict(rho=-np.ones((M, K))), "rho"),
        (dict(noise=0.0), "noise"),
        (dict(noise=np.ones(3)), "noise"),
    ],
)
def test_sinr_bad_input(case, change, name):
    args = dict(H=case["H"], W=case["H"], rho=case["rho"], noise=1.0) | change
    with pytest.raises(ValueError, match=name):
        co.downlink_sinr(**args)
    if name != "noise":
        with pytest.raises(ValueError, match=name):
            co.interference_metric(args["H"], args["W"], args["rho"], case["D"])


def test_interference_metric_bad_mask(case):
    with pytest.raises(ValueError, match="D"):
        co.interference_metric(case["H"], case["H"], case["rho"], case["D"][:, :3])

"""Physics of the UAV mobile-AP downlink ([MOBILE-AP]): COST 231 Walfisch-Ikegami path loss,
the air-to-ground LoS probability, UAV geometry (wrap-around, bounded moves, the projection
onto constraints (22b)-(22c)) and the distributed-MR closed form with per-antenna power
weights (Theorem 1 generalised).

References are written here in NumPy from the published equations ([COST-231] chapter 4, the
SCM's simplified forms of [3GPP-25.996], [A2G-LOS]) and from the derivation in the docstring
of ``cfmimo_jax.se.downlink_se_mr_closed_form``; the Monte-Carlo check draws channels and
estimates with ``cfmimo_jax.estimation`` and forms the precoders explicitly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref

from cfmimo_jax import estimation, geometry, pathloss, power, se

# ---- COST 231 Walfisch-Ikegami: NumPy reference from the report's equations ------------------


def np_cost231_los(d_m, f_ghz):
    """``42.6 + 26 log10(d / km) + 20 log10(f / MHz)``, ``d >= 20 m``."""
    return 42.6 + 26.0 * np.log10(max(d_m, 20.0) / 1000.0) + 20.0 * np.log10(1000.0 * f_ghz)


def np_cost231_nlos(d_m, f_ghz, hb, hm, hr, w, b, phi, metropolitan):
    """COST 231 Walfisch-Ikegami NLoS, one link, the report's case analysis in plain Python."""
    d = max(d_m, 20.0) / 1000.0  # km
    f = 1000.0 * f_ghz  # MHz
    l0 = 32.4 + 20.0 * np.log10(d) + 20.0 * np.log10(f)
    if phi < 35.0:
        l_ori = -10.0 + 0.354 * phi
    elif phi < 55.0:
        l_ori = 2.5 + 0.075 * (phi - 35.0)
    else:
        l_ori = 4.0 - 0.114 * (phi - 55.0)
    l_rts = -16.9 - 10.0 * np.log10(w) + 10.0 * np.log10(f) + 20.0 * np.log10(hr - hm) + l_ori
    dhb = hb - hr
    if hb > hr:
        l_bsh, k_a, k_d = -18.0 * np.log10(1.0 + dhb), 54.0, 18.0
    else:
        l_bsh = 0.0
        k_a = 54.0 - 0.8 * dhb if d >= 0.5 else 54.0 - 0.8 * dhb * d / 0.5
        k_d = 18.0 - 15.0 * dhb / hr
    k_f = -4.0 + (1.5 if metropolitan else 0.7) * (f / 925.0 - 1.0)
    l_msd = l_bsh + k_a + k_d * np.log10(d) + k_f * np.log10(f) - 9.0 * np.log10(b)
    return l0 + l_rts + l_msd if l_rts + l_msd > 0 else l0


# (carrier GHz, h_AP, h_UE, h_roof, w, b, phi, metropolitan): above / below the roofs, every
# L_ori range, both k_f forms
COST_CASES = [
    (1.9, 30.0, 1.5, 12.0, 25.0, 50.0, 30.0, True),  # the defaults
    (0.9, 8.0, 2.0, 15.0, 20.0, 40.0, 45.0, False),  # AP below the roofs, 35-55 deg
    (2.0, 12.0, 1.0, 12.0, 10.0, 30.0, 90.0, True),  # AP at roof level (dh = 0), 55-90 deg
    (1.4, 45.0, 3.0, 20.0, 15.0, 35.0, 0.0, False),
]
DISTANCES = [5.0, 20.0, 75.0, 320.0, 499.0, 501.0, 900.0, 3000.0]


@pytest.mark.parametrize("case", COST_CASES)
def test_cost231_nlos_matches_numpy(case):
    f, hb, hm, hr, w, b, phi, metro = case
    d = np.array(DISTANCES)
    got = np.asarray(
        pathloss.cost231_wi_nlos_db(
            jnp.asarray(d),
            carrier_ghz=f,
            ap_height_m=hb,
            ue_height_m=hm,
            roof_height_m=hr,
            street_width_m=w,
            building_separation_m=b,
            street_orientation_deg=phi,
            metropolitan=metro,
        )
    )
    want = np.array([np_cost231_nlos(x, f, hb, hm, hr, w, b, phi, metro) for x in d])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)
    los = np.asarray(pathloss.cost231_wi_los_db(jnp.asarray(d), f))
    np.testing.assert_allclose(los, [np_cost231_los(x, f) for x in d], rtol=0, atol=1e-10)


def test_cost231_against_published_scm_forms():
    # 3GPP SCM urban micro-cell: COST 231 WI with h_BS 12.5 m, roofs 12 m, b 50 m, w 25 m,
    # h_MS 1.5 m, phi 30 deg, metropolitan: NLoS -55.9 + 38 log10(d) + (24.5 + 1.5 f/925) log10 f
    # and LoS -35.4 + 26 log10(d) + 20 log10(f), d in m, f in MHz. The published constant -55.9
    # is rounded (the report's terms give -55.896).
    d = np.array([20.0, 50.0, 150.0, 700.0, 4000.0])
    for f_ghz in (0.9, 1.9):
        f = 1000.0 * f_ghz
        nlos = pathloss.cost231_wi_nlos_db(jnp.asarray(d), f_ghz, ap_height_m=12.5)
        scm = -55.9 + 38.0 * np.log10(d) + (24.5 + 1.5 * f / 925.0) * np.log10(f)
        np.testing.assert_allclose(np.asarray(nlos), scm, atol=0.006)
        los = pathloss.cost231_wi_los_db(jnp.asarray(d), f_ghz)
        np.testing.assert_allclose(
            np.asarray(los), -35.4 + 26.0 * np.log10(d) + 20.0 * np.log10(f), atol=1e-10
        )
    # one hand-computed point: d = 100 m, 1.9 GHz, the defaults (AP 30 m above 12 m roofs):
    # L0 = 32.4 - 20 + 65.575 = 77.975; L_rts = -16.9 - 13.979 + 32.788 + 20.424 + 0.62
    # = 22.953; k_f = -4 + 1.5 (1900/925 - 1) = -2.419; L_msd = -23.018 + 54 - 18
    # - 2.419 * 3.279 - 15.291 = -10.240; total 90.688
    assert abs(float(pathloss.cost231_wi_nlos_db(100.0)) - 90.688) < 2e-3
    l0 = 32.4 + 20 * np.log10(0.1) + 20 * np.log10(1900.0)
    l_rts = -16.9 - 10 * np.log10(25.0) + 10 * np.log10(1900.0) + 20 * np.log10(10.5) + 0.62
    k_f = -4 + 1.5 * (1900 / 925 - 1)
    l_msd = -18 * np.log10(19.0) + 54 + 18 * np.log10(0.1) + k_f * np.log10(1900) - 9 * np.log10(50)
    assert abs(float(pathloss.cost231_wi_nlos_db(100.0)) - (l0 + l_rts + l_msd)) < 1e-10


def test_cost231_free_space_floor_and_clamp():
    # L_rts + L_msd <= 0 (high AP, low roofs, wide streets, short link): free space L0
    kw = dict(
        ap_height_m=50.0,
        ue_height_m=3.0,
        roof_height_m=5.0,
        street_width_m=100.0,
        building_separation_m=100.0,
        street_orientation_deg=0.0,
        metropolitan=False,
    )
    got = float(pathloss.cost231_wi_nlos_db(20.0, 0.8, **kw))
    free = 32.4 + 20 * np.log10(0.02) + 20 * np.log10(800.0)
    assert abs(got - free) < 1e-10
    # below 20 m the loss is held at its 20 m value
    assert float(pathloss.cost231_wi_nlos_db(3.0)) == float(pathloss.cost231_wi_nlos_db(20.0))
    assert float(pathloss.cost231_wi_los_db(7.0)) == float(pathloss.cost231_wi_los_db(20.0))


def test_cost231_los_below_nlos_and_mixture():
    d = jnp.linspace(20.0, 1500.0, 60)
    los = pathloss.cost231_wi_los_db(d)
    nlos = pathloss.cost231_wi_nlos_db(d)
    assert np.all(np.asarray(los) < np.asarray(nlos))
    assert np.all(np.diff(np.asarray(los)) > 0) and np.all(np.diff(np.asarray(nlos)) > 0)
    sel = jnp.arange(60) % 3 == 0
    mixed = pathloss.cost231_wi_pathloss_db(d, sel)
    np.testing.assert_allclose(mixed, np.where(sel, los, nlos), atol=1e-12)
    p = jnp.linspace(0.0, 1.0, 60)
    mixed = pathloss.cost231_wi_pathloss_db(d, p)
    np.testing.assert_allclose(mixed, p * los + (1 - p) * nlos, atol=1e-12)
    # jit and gradient in the distance (the NLoS slope is 20 + k_d = 38 dB/decade here)
    g = jax.grad(lambda x: pathloss.cost231_wi_nlos_db(x))(200.0)
    assert abs(float(g) - 38.0 / (200.0 * np.log(10.0))) < 1e-9
    jitted = jax.jit(lambda x, h: pathloss.cost231_wi_nlos_db(x, ap_height_m=h))
    np.testing.assert_allclose(jitted(d, 30.0), nlos, atol=1e-12)


def test_air_to_ground_los_probability():
    a, b = 9.61, 0.16  # urban
    theta = np.array([0.0, 5.0, a, 30.0, 60.0, 90.0])
    got = np.asarray(pathloss.los_probability_air_to_ground(jnp.radians(theta)))
    np.testing.assert_allclose(got, 1.0 / (1.0 + a * np.exp(-b * (theta - a))), rtol=1e-12)
    assert abs(got[2] - 1.0 / (1.0 + a)) < 1e-12  # theta = a
    assert np.all(np.diff(got) > 0) and got[-1] > 0.999
    for env, (aa, bb) in pathloss.A2G_LOS_PARAMETERS.items():
        p = pathloss.los_probability_air_to_ground(jnp.radians(20.0), aa, bb)
        assert 0 < float(p) < 1, env


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(distance_m=0.0), "distance_m"),
        (dict(distance_m=-5.0), "distance_m"),
        (dict(distance_m=100.0, carrier_ghz=2.4), "carrier_ghz"),
        (dict(distance_m=100.0, carrier_ghz=0.5), "carrier_ghz"),
        (dict(distance_m=100.0, ap_height_m=0.0), "ap_height_m"),
        (dict(distance_m=100.0, ue_height_m=-1.0), "ue_height_m"),
        (dict(distance_m=100.0, ue_height_m=13.0), "ue_height_m"),
        (dict(distance_m=100.0, street_width_m=0.0), "street_width_m"),
        (dict(distance_m=100.0, building_separation_m=-3.0), "building_separation_m"),
        (dict(distance_m=100.0, street_orientation_deg=100.0), "street_orientation_deg"),
        (dict(distance_m=np.nan), "distance_m"),
    ],
)
def test_cost231_bad_input(kwargs, name):
    with pytest.raises(ValueError, match=name):
        pathloss.cost231_wi_nlos_db(**kwargs)


def test_cost231_bad_los_and_los_carrier():
    with pytest.raises(ValueError, match="carrier_ghz"):
        pathloss.cost231_wi_los_db(100.0, 3.5)
    with pytest.raises(ValueError, match="los"):
        pathloss.cost231_wi_pathloss_db(100.0, 1.5)


# ---- UAV geometry ----------------------------------------------------------------------------

SIDE = 1000.0


def np_wrapped_distance(a, u, side=SIDE):
    """Brute force over the nine images: ``[L, K]``."""
    best = np.full((a.shape[0], u.shape[0]), np.inf)
    for sx in (-side, 0.0, side):
        for sy in (-side, 0.0, side):
            d = np.linalg.norm(u[None, :, :] - (a[:, None, :] + [sx, sy]), axis=-1)
            best = np.minimum(best, d)
    return best


def test_wraparound_distance_properties():
    rng = np.random.default_rng(3)
    ap = rng.uniform(0, SIDE, (7, 2))
    ue = rng.uniform(0, SIDE, (5, 2))
    d2, d3, az, el = geometry.uav_ue_geometry(jnp.asarray(ap), jnp.asarray(ue), SIDE, 30.0, 1.5)
    d2 = np.asarray(d2)
    np.testing.assert_allclose(d2, np_wrapped_distance(ap, ue), rtol=1e-12)
    assert d2.max() <= SIDE / np.sqrt(2) + 1e-9
    # symmetric and invariant under a common shift modulo the side
    back = geometry.uav_ue_geometry(jnp.asarray(ue), jnp.asarray(ap), SIDE)[0]
    np.testing.assert_allclose(np.asarray(back).T, d2, rtol=1e-12)
    shift = np.array([613.0, -271.0])
    moved = geometry.uav_ue_geometry(
        jnp.asarray((ap + shift) % SIDE), jnp.asarray((ue + shift) % SIDE), SIDE
    )[0]
    np.testing.assert_allclose(np.asarray(moved), d2, rtol=1e-9)
    # corners are neighbours across the edges
    corner = geometry.uav_ue_geometry(jnp.array([[10.0, 10.0]]), jnp.array([[990.0, 995.0]]))
    assert abs(float(corner[0][0, 0]) - np.hypot(20.0, 15.0)) < 1e-9
    # 3-D distance and elevation at the fixed altitude
    np.testing.assert_allclose(np.asarray(d3), np.sqrt(d2**2 + 28.5**2), rtol=1e-12)
    np.testing.assert_allclose(np.sin(np.asarray(el)) * np.asarray(d3), 28.5, rtol=1e-12)
    assert np.all(np.abs(np.asarray(az)) <= np.pi)


def test_uav_displacement_speed_cap():
    rng = np.random.default_rng(4)
    a = rng.uniform(-2.0, 2.0, (200, 2))
    disp = np.asarray(geometry.uav_displacement(jnp.asarray(a), 7.5))
    assert np.all(np.linalg.norm(disp, axis=-1) <= 7.5 * (1 + 1e-12))
    c = np.clip(a, -1, 1)
    inner = np.linalg.norm(c, axis=-1) <= 1
    np.testing.assert_allclose(disp[inner], 7.5 * c[inner], rtol=1e-12)
    np.testing.assert_allclose(
        geometry.uav_displacement(jnp.array([[1.0, 1.0], [1.0, 0.0], [0.0, 0.0]]), 10.0),
        [[10 / np.sqrt(2), 10 / np.sqrt(2)], [10.0, 0.0], [0.0, 0.0]],
        atol=1e-12,
    )
    g = jax.grad(lambda x: geometry.uav_displacement(x, 3.0).sum())(jnp.zeros(2))
    np.testing.assert_allclose(g, [3.0, 3.0])


def _brute_force_nearest(x, ue, d_min, lo, hi, radius, spacing):
    """Distance from ``x`` to the nearest feasible point of a grid over the window
    ``x +- radius`` (inf if none)."""
    gx = np.arange(max(lo, x[0] - radius), min(hi, x[0] + radius) + 1e-9, spacing)
    gy = np.arange(max(lo, x[1] - radius), min(hi, x[1] + radius) + 1e-9, spacing)
    P = np.stack(np.meshgrid(gx, gy, indexing="ij"), -1).reshape(-1, 2)
    P = np.concatenate([P, np.clip(x, lo, hi)[None]])
    ok = np.all(np_wrapped_distance(P, ue) >= d_min, axis=1)
    return np.min(np.linalg.norm(P[ok] - x, axis=-1), initial=np.inf)


def test_projection_feasible_nearest_and_unchanged():
    rng = np.random.default_rng(5)
    d_min = 60.0
    # clustered UEs (overlapping discs), UEs next to an edge and a corner (wrap-around)
    ue = np.array(
        [
            [500.0, 500.0],
            [560.0, 520.0],
            [530.0, 580.0],
            [995.0, 300.0],
            [20.0, 985.0],
            [250.0, 40.0],
        ]
    )
    ap = np.concatenate(
        [
            rng.uniform(-80, SIDE + 80, (10, 2)),  # some outside the area
            ue + rng.normal(0, 25.0, ue.shape),  # inside the discs
            [[530.0, 535.0], [1000.0, 300.0], [0.0, 1000.0], [250.0, 0.0]],
        ]
    )
    res = geometry.project_uav_positions(jnp.asarray(ap), jnp.asarray(ue), d_min, SIDE)
    out = np.asarray(res.pos)
    assert np.all(out >= 0) and np.all(out <= SIDE)
    assert np.all(np_wrapped_distance(out, ue) >= d_min)
    np.testing.assert_array_equal(np.asarray(res.residual), 0.0)
    # nearest feasible point: no grid point of the feasible set is closer (up to the grid)
    for j in range(ap.shape[0]):
        moved = np.linalg.norm(out[j] - ap[j])
        best = _brute_force_nearest(ap[j], ue, d_min, 0.0, SIDE, moved + 2.0, 0.5)
        assert moved <= best + 1e-9, j
    # violations of the proposals
    clip = np.clip(ap, 0, SIDE)
    np.testing.assert_allclose(res.area_violation, np.linalg.norm(ap - clip, axis=-1), atol=1e-9)
    short = np.maximum(d_min - np_wrapped_distance(clip, ue), 0).sum(axis=1)
    np.testing.assert_allclose(res.distance_violation, short, atol=1e-9)
    assert np.all(np.asarray(res.distance_violation)[10:16] > 0)
    # float32 (the environments' dtype): still feasible, the margin absorbs the rounding
    r32 = geometry.project_uav_positions(
        jnp.asarray(ap, jnp.float32), jnp.asarray(ue, jnp.float32), d_min, SIDE
    )
    assert r32.pos.dtype == jnp.float32
    o32 = np.asarray(r32.pos, np.float64)
    assert np.all(o32 >= 0) and np.all(o32 <= SIDE)
    assert np.all(np_wrapped_distance(o32, ue) >= d_min)
    # the same distance moved (rows 17 and 19 have two nearest points, mirror images)
    np.testing.assert_allclose(
        np.linalg.norm(o32 - ap, axis=-1), np.linalg.norm(out - ap, axis=-1), atol=0.05
    )
    # feasible positions are returned unchanged, and projecting twice changes nothing
    again = geometry.project_uav_positions(res.pos, jnp.asarray(ue), d_min, SIDE)
    np.testing.assert_array_equal(np.asarray(again.pos), out)
    np.testing.assert_array_equal(np.asarray(again.area_violation), 0.0)
    np.testing.assert_array_equal(np.asarray(again.distance_violation), 0.0)


def test_uav_step_jit_and_bounds():
    rng = np.random.default_rng(6)
    ue = jnp.asarray(rng.uniform(0, SIDE, (4, 2)))
    ap = jnp.asarray(rng.uniform(0, SIDE, (5, 2)))
    act = jnp.asarray(rng.uniform(-3, 3, (5, 2)))
    step = jax.jit(geometry.uav_step, static_argnames=("side",))
    res = step(ap, act, ue, 15.0, 25.0, side=SIDE)
    want = geometry.project_uav_positions(ap + geometry.uav_displacement(act, 15.0), ue, 25.0, SIDE)
    np.testing.assert_allclose(res.pos, want.pos, atol=1e-12)
    # custom bounds (22c): a_min = 100, a_max = 900
    res = geometry.uav_step(jnp.array([[95.0, 905.0]]), jnp.array([[-1.0, 1.0]]), ue, 20.0,
                            25.0, SIDE, 100.0, 900.0)  # fmt: skip
    p = np.asarray(res.pos)
    assert np.all(p >= 100.0) and np.all(p <= 900.0)
    assert float(res.area_violation[0]) > 0


def test_projection_bad_input():
    ue = jnp.zeros((3, 2))
    with pytest.raises(ValueError, match="pos"):
        geometry.project_uav_positions(jnp.zeros((3,)), ue, 10.0)
    with pytest.raises(ValueError, match="ue_pos"):
        geometry.project_uav_positions(jnp.zeros((2, 2)), jnp.zeros((3, 3)), 10.0)
    with pytest.raises(ValueError, match="d_min"):
        geometry.project_uav_positions(jnp.zeros((2, 2)), ue, -1.0)
    with pytest.raises(ValueError, match="lower"):
        geometry.project_uav_positions(jnp.zeros((2, 2)), ue, 1.0, 1000.0, 600.0, 400.0)


# ---- antenna-weighted distributed MR closed form --------------------------------------------

L, K, N, TAU_P, TAU_C = 3, 4, 4, 2, 200
PILOT = np.array([0, 1, 0, 1], np.int32)  # pilot reuse: contamination terms
P_UL = np.array([100.0, 60.0, 150.0, 80.0])


def _setup(seed=0):
    """Local-scattering ``R`` with gains over noise of 0-25 dB; all APs serve all UEs."""
    rng = np.random.default_rng(seed)
    deg = np.pi / 180.0
    gain = 10.0 ** rng.uniform(-1.0, 1.5, (L, K))  # so that p * gain spans 10-45 dB
    R = np.zeros((L, K, N, N), np.complex128)
    for l in range(L):
        for k in range(K):
            az, el = rng.uniform(-np.pi, np.pi), rng.uniform(0.05, 0.6)
            R[l, k] = gain[l, k] * ref.local_scattering(N, az, el, 15 * deg, 10 * deg)
    B, C = ref.estimation_statistics(R, PILOT, P_UL, TAU_P)
    rho = rng.uniform(20.0, 300.0, (L, K))
    q = rng.uniform(0.05, 2.0, (L, N))
    return R, B, C, rho, q


def np_weighted_mr(R, B, D, rho, q, p=None):
    """The derived closed form, link by link: returns ``(se[K], signal[K], total[K])`` with
    ``signal_k = E[h_k^H w_k]`` and ``total_k = sum_i E|h_k^H w_i|^2``.

    ``w_li = sqrt(rho_li) Q^(1/2) hhat_li / sqrt(tr(Q B_li))``;
    ``E[h_lk^H Q^(1/2) hhat_li] = sqrt(p_i p_k) tau_p tr(Q^(1/2) R_li Psi^{-1} R_lk)`` (same
    pilot, else 0; without ``p``: ``tr(Q^(1/2) B_li R_li^{-1} R_lk)``),
    ``Var = tr(Q^(1/2) B_li Q^(1/2) R_lk)``."""
    if p is not None:
        Psi = ref.psi_matrices(R, PILOT, p, TAU_P)
    Qh = [np.diag(np.sqrt(q[l])) for l in range(L)]
    bq = np.array([[np.trace(np.diag(q[l]) @ B[l, i]).real for i in range(K)] for l in range(L)])

    def cross(l, i, k):
        if PILOT[i] != PILOT[k]:
            return 0.0
        if p is None:
            X = B[l, i] @ np.linalg.inv(R[l, i])
            return np.trace(Qh[l] @ X @ R[l, k])
        A = R[l, i] @ np.linalg.solve(Psi[l, PILOT[i]], R[l, k])
        return np.sqrt(p[i] * p[k]) * TAU_P * np.trace(Qh[l] @ A)

    signal = np.zeros(K)
    total = np.zeros(K)
    for k in range(K):
        signal[k] = sum(
            np.sqrt(rho[l, k] / bq[l, k]) * np.trace(Qh[l] @ B[l, k]).real
            for l in range(L)
            if D[l, k]
        )
        for i in range(K):
            mean = sum(np.sqrt(rho[l, i] / bq[l, i]) * cross(l, i, k) for l in range(L) if D[l, i])
            var = sum(
                rho[l, i] / bq[l, i] * np.trace(Qh[l] @ B[l, i] @ Qh[l] @ R[l, k]).real
                for l in range(L)
                if D[l, i]
            )
            total[k] += abs(mean) ** 2 + var
            if i == k and p is not None:
                assert abs(mean - signal[k]) < 1e-9 * signal[k]  # cont_kk = signal_k
    sinr = signal**2 / (total - signal**2 + 1.0)
    return (1 - TAU_P / TAU_C) * np.log2(1 + sinr), signal, total


def _cf(R, B, D, rho, q=None, p=P_UL):
    return se.downlink_se_mr_closed_form(
        jnp.asarray(R),
        jnp.asarray(B),
        jnp.asarray(PILOT),
        jnp.asarray(D),
        jnp.asarray(rho),
        TAU_P,
        TAU_C,
        p=None if p is None else jnp.asarray(p),
        antenna_weights=None if q is None else jnp.asarray(q),
    )


def test_weighted_equals_book_for_uniform_weights():
    R, B, _, rho, _ = _setup()
    rng = np.random.default_rng(1)
    D = rng.uniform(size=(L, K)) < 0.6
    D[0] = True
    for p in (P_UL, None):
        book = np.asarray(_cf(R, B, D, rho, None, p))
        ones = np.asarray(_cf(R, B, D, rho, np.ones((L, N)), p))
        np.testing.assert_allclose(ones, book, rtol=1e-12)
        scaled = np.asarray(_cf(R, B, D, rho, 3.7 * np.ones((L, N)), p))  # q scale-invariant
        np.testing.assert_allclose(scaled, book, rtol=1e-12)
    # and the book's closed form of the NumPy reference (independent code)
    want = ref.downlink_se_mr_closed_form(
        R, B, PILOT, D, rho, TAU_P, TAU_C, p=P_UL, exact_powers=True
    )
    np.testing.assert_allclose(_cf(R, B, D, rho, np.ones((L, N))), want, rtol=1e-10)


def test_weighted_matches_numpy_reference():
    R, B, _, rho, q = _setup()
    rng = np.random.default_rng(2)
    D = rng.uniform(size=(L, K)) < 0.6
    D[:, 0] = True
    q2 = q.copy()
    q2[1, 2] = 0.0  # a silent antenna
    for qq in (q, q2):
        for p in (P_UL, None):
            want = np_weighted_mr(R, B, D, rho, qq, p)[0]
            np.testing.assert_allclose(_cf(R, B, D, rho, qq, p), want, rtol=1e-10)
    # the weights matter: not the unweighted result
    assert np.max(np.abs(np.asarray(_cf(R, B, D, rho, q)) - np.asarray(_cf(R, B, D, rho)))) > 1e-3


def test_weighted_matches_monte_carlo():
    R, B, _, rho, q = _setup()
    D = np.ones((L, K), bool)
    n = 20000
    kh, kn = jax.random.split(jax.random.PRNGKey(7))
    H = estimation.sample_channels(kh, jnp.asarray(R), n)
    Hh = np.asarray(estimation.mmse_estimates(kn, H, jnp.asarray(R), PILOT, P_UL, TAU_P))
    H = np.asarray(H)
    bq = np.einsum("ln,lknn->lk", q, B).real
    W = np.sqrt(rho / bq)[None, :, :, None] * np.sqrt(q)[None, :, None, :] * Hh  # [n, L, K, N]
    g = np.einsum("jlkn,jlin->jki", np.conj(H), W)  # g[j, k, i] = sum_l h_lk^H w_li
    sig_s = np.real(np.einsum("jkk->jk", g))
    tot_s = np.sum(np.abs(g) ** 2, axis=2)
    sig_mc, tot_mc = sig_s.mean(0), tot_s.mean(0)
    se_sig, se_tot = sig_s.std(0) / np.sqrt(n), tot_s.std(0) / np.sqrt(n)
    want, sig_cf, tot_cf = np_weighted_mr(R, B, D, rho, q, P_UL)
    # each is a sample mean of i.i.d. terms: within 5 standard errors (CLT)
    assert np.all(np.abs(sig_mc - sig_cf) < 5 * se_sig), (sig_mc, sig_cf, se_sig)
    assert np.all(np.abs(tot_mc - tot_cf) < 5 * se_tot), (tot_mc, tot_cf, se_tot)
    # the tempting sqrt(rho tr(Q B)) signal fails the same test (6-12 standard errors off)
    naive = np.sum(np.sqrt(rho * bq), axis=0)
    assert np.all(np.abs(sig_mc - naive) > 5 * se_sig)
    # SE: delta method on (signal, total) with their sample covariance
    cf = np.asarray(_cf(R, B, D, rho, q))
    np.testing.assert_allclose(cf, want, rtol=1e-10)
    for k in range(K):
        a, t = sig_mc[k], tot_mc[k]
        den = t - a**2 + 1.0
        sinr = a**2 / den
        grad = np.array([2 * a * (t + 1.0) / den**2, -(a**2) / den**2])
        cov = np.cov(np.stack([sig_s[:, k], tot_s[:, k]])) / n
        sd_se = (1 - TAU_P / TAU_C) * np.sqrt(grad @ cov @ grad) / ((1 + sinr) * np.log(2))
        se_mc = (1 - TAU_P / TAU_C) * np.log2(1 + sinr)
        assert abs(se_mc - cf[k]) < 5 * sd_se, (k, se_mc, cf[k], sd_se)
    # per-antenna powers of the explicit precoders (constraint (22e) in expectation)
    pw_mc = np.mean(np.sum(np.abs(W) ** 2, axis=2), axis=0)  # [L, N]
    pw = np.asarray(power.antenna_powers(jnp.asarray(B), jnp.asarray(rho), jnp.asarray(q)))
    np.testing.assert_allclose(pw, pw_mc, rtol=0.05)
    np.testing.assert_allclose(pw.sum(1), rho.sum(1), rtol=1e-12)


def test_weighted_gradients_match_finite_differences():
    R, B, _, rho, q = _setup()
    D = np.ones((L, K), bool)
    Rj, Bj, Dj, pj = jnp.asarray(R), jnp.asarray(B), jnp.asarray(D), jnp.asarray(P_UL)

    def f(rho_, q_):
        out = se.downlink_se_mr_closed_form(
            Rj, Bj, jnp.asarray(PILOT), Dj, rho_, TAU_P, TAU_C, p=pj, antenna_weights=q_
        )
        return jnp.sum(out * jnp.arange(1.0, K + 1.0))  # weighted, so each SE_k matters

    g_rho, g_q = jax.jit(jax.grad(f, argnums=(0, 1)))(jnp.asarray(rho), jnp.asarray(q))
    h = 1e-6
    for idx in [(0, 0), (1, 2), (2, 3)]:
        e = np.zeros_like(rho)
        e[idx] = h * rho[idx]
        fd = (f(rho + e, q) - f(rho - e, q)) / (2 * e[idx])
        assert abs(float(g_rho[idx]) - float(fd)) < 1e-6 * max(1.0, abs(float(fd))), idx
        e = np.zeros_like(q)
        e[idx] = h * q[idx]
        fd = (f(rho, q + e) - f(rho, q - e)) / (2 * e[idx])
        assert abs(float(g_q[idx]) - float(fd)) < 1e-6 * max(1.0, abs(float(fd))), idx


def test_gradient_in_uav_positions():
    """sum SE through COST 231 (mean over the LoS state), the MMSE statistics and the weighted
    closed form, against finite differences of the AP coordinates."""
    rng = np.random.default_rng(8)
    ue = jnp.asarray(rng.uniform(0, SIDE, (K, 2)))
    ap0 = jnp.asarray(rng.uniform(0, SIDE, (L, 2)))
    _, _, _, rho, q = _setup()
    shape = np.stack(
        [
            [ref.local_scattering(N, rng.uniform(-np.pi, np.pi), 0.2, 0.26, 0.17) for _ in range(K)]
            for _ in range(L)
        ]
    )  # fixed correlation shapes, tr = N
    noise_dbm = -94.0

    def sum_se(ap):
        d2, _, _, el = geometry.uav_ue_geometry(ap, ue, SIDE)
        pl = pathloss.cost231_wi_pathloss_db(d2, pathloss.los_probability_air_to_ground(el))
        gain = 10.0 ** ((-pl - noise_dbm) / 10.0)
        R = gain[..., None, None] * jnp.asarray(shape)
        B, _ = estimation.estimation_statistics(R, PILOT, P_UL, TAU_P)
        out = se.downlink_se_mr_closed_form(
            R, B, PILOT, jnp.ones((L, K), bool), jnp.asarray(rho), TAU_P, TAU_C, p=P_UL,
            antenna_weights=jnp.asarray(q),
        )  # fmt: skip
        return jnp.sum(out)

    g = np.asarray(jax.jit(jax.grad(sum_se))(ap0))
    sum_se = jax.jit(sum_se)
    assert np.all(np.isfinite(g)) and np.max(np.abs(g)) > 0
    h = 1e-3
    for idx in [(0, 0), (1, 1), (2, 0)]:
        e = np.zeros((L, 2))
        e[idx] = h
        fd = (float(sum_se(ap0 + e)) - float(sum_se(ap0 - e))) / (2 * h)
        assert abs(g[idx] - fd) < 1e-5 * max(1e-3, abs(fd)) + 1e-9, (idx, g[idx], fd)


def test_weighted_bad_input():
    R, B, _, rho, q = _setup()
    D = np.ones((L, K), bool)
    bad = q.copy()
    bad[0, 0] = -0.1
    with pytest.raises(ValueError, match="antenna_weights"):
        _cf(R, B, D, rho, bad)
    with pytest.raises(ValueError, match="antenna_weights"):
        _cf(R, B, D, rho, q[:, :2])
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="antenna_weights"):
        _cf(R, B, D, rho, bad)
    with pytest.raises(ValueError, match="antenna_weights"):
        power.antenna_powers(jnp.asarray(B), jnp.asarray(rho), jnp.asarray(-q))

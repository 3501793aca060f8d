"""The NumPy single-environment AP-selection reference (``tests/numpy_ap_selection.py``, also
the benchmarks' baseline) against the JAX environment.

Deterministic where the two can be given the same inputs (one slot from the same positions and
shadowing field; a whole window of UE motion when no UE reaches its waypoint), statistical
otherwise (random streams differ): k-strongest episode metrics and random-waypoint motion agree
within Monte-Carlo error.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpy_ap_selection as npe
import pytest

from cfmimo_jax.envs import ap_selection as aps
from cfmimo_jax.geometry import Waypoints
from cfmimo_jax.pathloss import shadowing_field

L, K = 20, 6


def _common_inputs(seed, L=L, K=K, S=64, radius=500.0):
    rng = np.random.default_rng(seed)
    r = radius * np.sqrt(rng.uniform(size=L + K))
    a = 2 * np.pi * rng.uniform(size=L + K)
    pts = np.stack([r * np.cos(a), r * np.sin(a)], -1)
    ap, ue = pts[:L], pts[L:]
    ue[0] = ap[3] + [2.0, -1.0]  # a UE closer than the 10 m clamp of the path loss
    field = tuple(np.asarray(x) for x in shadowing_field(jax.random.PRNGKey(seed), L, S, 37.0))
    return ap, ue, field


def _selections(rng, L=L, K=K):
    A_rand = rng.uniform(size=(L, K)) < 0.3
    A_rand[:, 1] = False  # a UE served by nobody
    A_rand[2, :] = True  # an AP serving everybody
    return [A_rand, np.ones((L, K), bool), np.zeros((L, K), bool), np.eye(L, K, dtype=bool)]


@pytest.mark.parametrize("mobility", ["pedestrian", "vehicular"])
def test_one_slot_channels_and_se_agree(mobility):
    """Same positions and shadowing field: channels, observations and per-UE SE to 1e-9."""
    env, params = aps.make({"n_aps": L, "n_ues": K, "mobility": mobility})
    ref = npe.APSelectionNumPy(L, K, mobility=mobility, seed=0)
    assert jnp.result_type(float) == jnp.float64
    for seed in range(3):
        ap, ue, field = _common_inputs(seed)
        ref.reset(ap_pos=ap, ue_pos=ue, field=field, warmup=False)
        h_np = ref.channels()
        h_jx = np.asarray(aps.channels(params, jnp.asarray(ap), jnp.asarray(ue), field))
        assert h_jx.dtype == np.complex128
        np.testing.assert_allclose(h_np, h_jx, rtol=1e-9, atol=0)
        np.testing.assert_allclose(
            np.asarray(
                (aps.channel_polar(params, jnp.asarray(ap), jnp.asarray(ue), field)[0] - 20.0)
                / 20.0
            ),
            (20 * np.log10(np.abs(h_np)) - 20.0) / 20.0,
            rtol=0,
            atol=1e-12,
        )
        for A in _selections(np.random.default_rng(seed)):
            se_np = npe.mrt_se(h_np, A)
            se_jx = np.asarray(aps.mrt_se(jnp.asarray(h_jx), jnp.asarray(A), 1.0)[0])
            np.testing.assert_allclose(se_np, se_jx, rtol=1e-9, atol=1e-12)
            if not A.any():
                assert se_np.max() == 0.0


def test_one_slot_float32_tracks_float64():
    """The default float32 environment (vectorised sine/cosine and dB-to-amplitude of
    cfmimo_jax.fastmath) against the NumPy float64 reference from the same inputs: amplitudes
    and shadowing to float32 accuracy; phases to the float32 resolution of ``d3D / lambda``
    (a few thousand wavelengths: ulp ~5e-4 of a cycle); per-UE SE to 3e-3 relative (the
    phases' float32 error moves the interference); and the same channels through ``jnp``'s
    power, cosine and sine to 1e-6."""
    env, params = aps.make({"n_aps": L, "n_ues": K})
    ref = npe.APSelectionNumPy(L, K, seed=0)
    for seed in range(3):
        ap, ue, field = _common_inputs(seed)
        ref.reset(ap_pos=ap, ue_pos=ue, field=field, warmup=False)
        h_np = ref.channels()
        with jax.enable_x64(False):
            f32 = tuple(jnp.asarray(x, jnp.float32) for x in field)
            args = (jnp.asarray(ap, jnp.float32), jnp.asarray(ue, jnp.float32), f32)
            h32 = aps.channels(params, *args)
            snr_db, phase = aps.channel_polar(params, *args)
            assert h32.dtype == jnp.complex64
            h32 = np.asarray(h32).astype(np.complex128)
            # the same float32 polar form through jnp's power, cosine and sine
            amp = 10.0 ** (snr_db / 20.0)
            h_jnp = np.asarray(jax.lax.complex(amp * jnp.cos(phase), amp * jnp.sin(phase)))
            se32 = [
                np.asarray(aps.mrt_se(jnp.asarray(h32, jnp.complex64), jnp.asarray(A), 1.0)[0])
                for A in _selections(np.random.default_rng(seed))
            ]
        np.testing.assert_allclose(np.abs(h32), np.abs(h_np), rtol=1e-5, atol=0)
        np.testing.assert_allclose(
            np.asarray(snr_db, np.float64), 20 * np.log10(np.abs(h_np)), rtol=0, atol=1e-4
        )
        np.testing.assert_allclose(h32, h_jnp, rtol=1e-6, atol=0)
        phase_err = np.abs(np.angle(h32 * np.conj(h_np)))
        assert phase_err.max() < 5e-3, phase_err.max()
        for A, se in zip(_selections(np.random.default_rng(seed)), se32, strict=True):
            np.testing.assert_allclose(se, npe.mrt_se(h_np, A), rtol=3e-3, atol=1e-5)


def test_k_strongest_agrees():
    rng = np.random.default_rng(5)
    obs = rng.normal(size=(L * K, 10, 1))
    obs[3 * K + 2, -1, 0] = obs[7 * K + 2, -1, 0] = 9.0  # a tie for UE 2, broken by AP index
    for k in (1, 2, 5, L):
        want = np.asarray(aps.k_strongest(jnp.asarray(obs), L, K, k))
        np.testing.assert_array_equal(npe.k_strongest(obs, L, K, k), want)
        assert (want.reshape(L, K).sum(0) == k).all()


@pytest.mark.parametrize("mobility", ["pedestrian", "vehicular"])
def test_one_window_agrees(mobility):
    """A whole window (T slots of motion, SE, history, reward, cost, metrics) from the same
    state, deterministic because no UE reaches its waypoint (a paused UE resumes mid-window)."""
    env, params = aps.make({"n_aps": L, "n_ues": K, "mobility": mobility, "n_windows": 3})
    ref = npe.APSelectionNumPy(L, K, mobility=mobility, n_windows=3, seed=1)
    ap, ue, field = _common_inputs(7)
    rng = np.random.default_rng(7)
    dest = -ue + rng.normal(size=ue.shape)  # hundreds of metres away for most UEs
    dest[0] = ue[0] + [400.0, 0.0]
    speed = np.linspace(params.speed_min_kmh, params.speed_max_kmh, K) / 3.6
    pause = np.zeros(K)
    pause[1] = 0.17  # paused for the first 4 slots
    pause[2] = 5.0  # paused all window
    assert (np.linalg.norm(dest - ue, axis=1) > 2 * env.T * params.slot_s * speed).all()
    ref.reset(ap_pos=ap, ue_pos=ue, field=field, warmup=False)
    ref.ue_dest, ref.ue_speed, ref.ue_pause = dest.copy(), speed.copy(), pause.copy()
    state = aps.APSelectionState(
        jnp.asarray(ap),
        Waypoints(*(jnp.asarray(x) for x in (ue, dest, speed, pause))),
        tuple(jnp.asarray(x) for x in field),
        jnp.zeros((L, K, env.history)),
        jnp.int32(0),
    )
    for A in _selections(np.random.default_rng(3))[:2]:
        acts = A.reshape(-1).astype(np.int32)
        obs_j, state, rew_j, _, trunc_j, info_j = env.step_env(
            jax.random.PRNGKey(0), state, jnp.asarray(acts), params
        )
        obs_n, rew_n, done_n, info_n = ref.step(acts)
        np.testing.assert_allclose(ref.ue_pos, np.asarray(state.ue.pos), rtol=0, atol=1e-9)
        np.testing.assert_allclose(ref.ue_pause, np.asarray(state.ue.pause), rtol=0, atol=1e-12)
        np.testing.assert_allclose(obs_n, np.asarray(obs_j), rtol=0, atol=1e-9)
        np.testing.assert_array_equal(rew_n, np.asarray(rew_j))
        assert not bool(trunc_j) and not done_n
        for name in ("cost", "mean_se", "frac_target", "active_aps", "power_w", "se"):
            np.testing.assert_allclose(
                info_n[name], np.asarray(info_j[name]), rtol=1e-9, atol=1e-12
            )
    # UE 2 never moved, UE 1 was paused for the first 4 of the 20 slots
    assert np.array_equal(ref.ue_pos[2], ue[2])
    np.testing.assert_allclose(np.linalg.norm(ref.ue_pos[1] - ue[1]), 16 * 0.05 * speed[1])
    # third window ends the episode: auto-reset in both
    _, _, done, info = ref.step(acts)
    assert done and info["truncated"] and ref.window == 0
    np.testing.assert_array_equal(info["final_obs"].shape, (L * K, 10, 1))


# ---- statistics over many episodes ------------------------------------------------------


def _jax_metrics(config, k, n_envs, seed=0):
    """Per-episode means of the window metrics, and the mean UE displacement per window."""
    env, params = aps.make(config)

    @jax.jit
    def run(key):
        k0, k1 = jax.random.split(key)
        obs, st = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(k0, n_envs), params)

        def body(carry, key):
            obs, st = carry
            pos0 = st.ue.pos
            act = aps.k_strongest(obs, env.L, env.K, k)
            keys = jax.random.split(key, n_envs)
            obs, st2, _, _, _, info = jax.vmap(env.step_env, in_axes=(0, 0, 0, None))(
                keys, st, act, params
            )
            move = jnp.mean(jnp.linalg.norm(st2.ue.pos - pos0, axis=-1), axis=-1)
            out = [info[m] for m in ("mean_se", "active_aps", "frac_target")] + [move]
            return (obs, st2), jnp.stack(out, -1)

        _, out = jax.lax.scan(body, (obs, st), jax.random.split(k1, env.n_windows))
        return out.mean(0)  # [n_envs, 4]

    return np.asarray(run(jax.random.PRNGKey(seed)))


def _numpy_metrics(config, k, n_episodes, seed=0):
    config = dict(config)
    n_windows = config.pop("n_windows")
    L_, K_, mobility = config.pop("n_aps"), config.pop("n_ues"), config.pop("mobility")
    # one window more than played, so that the episode's last window does not auto-reset
    env = npe.APSelectionNumPy(
        L_, K_, mobility=mobility, n_windows=n_windows + 1, seed=seed, **config
    )
    out = np.zeros((n_episodes, n_windows, 4))
    for e in range(n_episodes):
        obs = env.reset()
        for t in range(n_windows):
            pos0 = env.ue_pos.copy()
            obs, _, done, info = env.step(npe.k_strongest(obs, L_, K_, k))
            assert not done
            move = np.mean(np.linalg.norm(env.ue_pos - pos0, axis=-1))
            out[e, t] = [info["mean_se"], info["active_aps"], info["frac_target"], move]
    return out.mean(1)


STAT_CONFIGS = {
    # the medium configuration of the paper, pedestrian
    "medium_pedestrian": dict(n_aps=L, n_ues=K, mobility="pedestrian", n_windows=3),
    # small disc and fast UEs: waypoint arrivals and pauses happen within an episode
    "small_disc_vehicular": dict(
        n_aps=8, n_ues=4, mobility="vehicular", radius_m=40.0, pause_mean_s=0.5, n_windows=3
    ),
}


@pytest.mark.parametrize("name", list(STAT_CONFIGS))
def test_k_strongest_statistics_agree(name):
    """k-strongest (k = 2): mean SE, active APs, fraction meeting the target and UE motion per
    window agree within Monte-Carlo error (independent episodes, 4.5 standard errors)."""
    config = STAT_CONFIGS[name]
    j = _jax_metrics(config, 2, 500)
    n = _numpy_metrics(config, 2, 250)
    for i, metric in enumerate(("mean_se", "active_aps", "frac_target", "move_m")):
        se = np.hypot(j[:, i].std() / np.sqrt(len(j)), n[:, i].std() / np.sqrt(len(n)))
        z = (j[:, i].mean() - n[:, i].mean()) / max(se, 1e-12)
        assert abs(z) < 4.5, (name, metric, j[:, i].mean(), n[:, i].mean(), se)
    if name == "medium_pedestrian":
        # k = 2 per UE over 6 UEs: between 2 and 12 active APs, and the target is reachable
        assert 2 <= n[:, 1].mean() <= 12 and n[:, 2].mean() > 0.3

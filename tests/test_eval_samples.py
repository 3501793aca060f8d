"""Unaveraged evaluation samples (``env.sample_metrics`` -> ``eval_samples.npz``) and the
first-chunk / steady split of the training time.

A tiny MADDPG run of the XL-MIMO uplink scenario (per-drop sum SE, one value per drop and step)
and an evaluation of the AP-cooperation scenario (per-UE SINRs ``[K]``) check the file's layout
and length against the evaluation's size, and its values against the summary's means computed
independently with NumPy (the mean of the samples; for the SINRs, the sum rate
``sum_k log2(1 + SINR_k)`` of [AP-COOP] eq. (8) rebuilt from the dB values).
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algorithms.evaluation import evaluate_policies, evaluate_policy
from cfmimo_cli import train as train_mod
from cfmimo_cli.config import load_config
from cfmimo_jax import envs

XL_ENV = ["env.n_bs=2", "env.bs_array=[2, 2]", "env.n_ues=2", "env.ue_array=[1, 1]"]
XL_ENV += ["env.n_realizations=2", "env.opt_steps=2"]
TINY_TRAINER = [
    "trainer.n_envs=2",
    "trainer.n_steps=2",
    "trainer.n_updates=2",
    "trainer.updates_per_chunk=1",
    "trainer.buffer_size=64",
    "trainer.batch_size=4",
    "trainer.learning_starts=4",
    "trainer.random_steps=1",
    "trainer.hidden=[8]",
]
N_ENVS, N_STEPS = 3, 2


@pytest.fixture(scope="module")
def xl_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("xl_run")
    over = ["scenario=xl_uplink", "algorithm=maddpg", *XL_ENV, *TINY_TRAINER]
    over += [f"eval.n_envs={N_ENVS}", f"eval.n_steps={N_STEPS}", "checkpoint_every=1"]
    over += ["eval.heuristics=[max_power]"]  # the optimiser's compilation is not needed here
    cfg = load_config(None, over, command="train")
    train_mod.train(cfg, out, progress=False, stream=False)
    return out, json.loads((out / "summary.json").read_text())


def test_npz_holds_one_array_per_policy_and_metric(xl_run):
    out, summary = xl_run
    ev = summary["evaluation"]
    assert set(ev) == {"max_power", "learned (greedy)", "learned (sampled)"}
    rec = summary["eval_samples"]
    assert rec["file"] == "eval_samples.npz" and "eval_samples.npz" in summary["outputs"]
    with np.load(out / "eval_samples.npz") as f:
        arrays = {k: f[k] for k in f.files}
    assert set(arrays) == {f"{p}/sum_se" for p in ev}
    for pol, e in ev.items():
        x = arrays[f"{pol}/sum_se"]
        assert x.dtype == np.float32 and x.shape == (N_ENVS * N_STEPS,)
        assert rec["shapes"][f"{pol}/sum_se"] == [N_ENVS, N_STEPS]
        # the summary's mean (mean over steps of the mean over drops) = the samples' mean
        assert float(np.mean(x.astype(np.float64))) == pytest.approx(e["sum_se"], rel=1e-5)
        assert np.all(np.isfinite(x)) and np.all(x > 0)
    # one-step episodes: every sample is its own drop, so the values differ
    assert np.unique(arrays["max_power/sum_se"]).size == N_ENVS * N_STEPS
    assert train_mod.read_eval_samples(out).keys() == arrays.keys()


def test_steady_timing_fields(xl_run):
    _, s = xl_run
    per_chunk = 1 * 2 * 2  # updates_per_chunk x n_envs x n_steps
    assert s["train_first_chunk_env_steps"] == per_chunk
    assert s["train_steady_env_steps"] == per_chunk  # 2 chunks: the first and 1 more
    assert s["train_first_chunk_env_steps"] + s["train_steady_env_steps"] == s["env_steps"]
    assert s["train_first_chunk_s"] > 0 and s["train_steady_s"] >= 0
    assert s["train_first_chunk_s"] + s["train_steady_s"] <= s["train_wall_s"] + 1e-9


def test_evaluate_run_folder_writes_its_own_samples(xl_run):
    """``cfmimo evaluate --run``: the same checkpoint and evaluation key give the training's
    samples, in ``evaluation_samples.npz`` (the training's file is left alone)."""
    out, _ = xl_run
    before = (out / "eval_samples.npz").read_bytes()
    res = train_mod.evaluate_checkpoint(out, stream=False)
    assert res["eval_samples"]["file"] == "evaluation_samples.npz"
    assert (out / "eval_samples.npz").read_bytes() == before
    again = train_mod.read_eval_samples(out, "evaluation_samples.npz")
    first = train_mod.read_eval_samples(out)
    assert again.keys() == first.keys()
    for k in first:
        np.testing.assert_allclose(again[k], first[k], rtol=1e-6)


def test_per_ue_sinr_samples_match_the_sum_rate():
    """``ap_cooperation`` keeps ``sinr_db[K]`` per drop and step; the sum rate rebuilt from them
    with NumPy, ``mean over drops and steps of sum_k log2(1 + 10^(SINR_k/10))``, equals the
    evaluation's ``sum_rate``, and their mean the mean SINR."""
    over = ["scenario=ap_cooperation", "algorithm=ddqn", "env.n_aps=6", "env.n_ues=4"]
    over += ["env.tau_p=2", "env.metric_samples=2", "env.episode_steps=2", "trainer.hidden=[8]"]
    over += [f"eval.n_envs={N_ENVS}", f"eval.n_steps={N_STEPS}", "eval.heuristics=[none]"]
    cfg = load_config(None, over, command="train")
    env, env_params, trainer = train_mod.build(cfg)
    assert env.sample_metrics == ("sinr_db",)
    # zero parameters (a fixed greedy policy): the shapes without compiling the trainer's init
    shapes = jax.eval_shape(trainer.init, jax.random.PRNGKey(0)).params
    params = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), shapes)
    res, kept = train_mod.evaluate_run(cfg, params, env, env_params, trainer, keep_samples=True)
    K = 4
    assert set(kept) == set(res)
    for pol, per in kept.items():
        x = np.asarray(per["sinr_db"], np.float64)
        assert x.shape == (N_ENVS, N_STEPS, K)
        assert x.mean() == pytest.approx(res[pol]["mean_sinr_db"], rel=1e-4, abs=1e-4)
        rate = np.log2(1.0 + 10.0 ** (x / 10.0)).sum(axis=-1)
        assert rate.mean() == pytest.approx(res[pol]["sum_rate"], rel=1e-4)


def test_write_and_read_layout(tmp_path):
    """Flattened in C order over (drop, step, UE); ``reshape(shape)`` restores the array."""
    a = np.arange(2 * 3 * 4, dtype=np.float64).reshape(2, 3, 4) / 7.0
    b = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    rec = train_mod.write_eval_samples(tmp_path / "s.npz", {"p q": {"sinr_db": a, "s": b}})
    assert rec["file"] == "s.npz"
    assert rec["shapes"] == {"p q/sinr_db": [2, 3, 4], "p q/s": [2, 3]}
    got = train_mod.read_eval_samples(tmp_path, "s.npz")
    assert got["p q/sinr_db"].dtype == np.float32 and got["p q/sinr_db"].ndim == 1
    np.testing.assert_allclose(got["p q/sinr_db"].reshape(2, 3, 4), a, rtol=1e-6)
    assert got["p q/s"][3] == 4.0  # drop 1, step 0
    # nothing declared: no file, no record
    assert train_mod.write_eval_samples(tmp_path / "none.npz", {"p": {}}) is None
    assert not (tmp_path / "none.npz").exists()
    assert train_mod.read_eval_samples(tmp_path / "missing") is None
    st = train_mod.sample_stats([3.0, 1.0, 2.0, 4.0])
    assert st["n"] == 4 and st["median"] == 2.5 and st["mean"] == 2.5
    assert np.isnan(train_mod.sample_stats([])["median"])


def test_unknown_sample_key_is_refused():
    env, params = envs.make(
        "xl_uplink",
        {"n_bs": 2, "bs_array": [2, 2], "n_ues": 2, "ue_array": [1, 1], "n_realizations": 2},
    )
    pol = lambda o, k, s: env.heuristics()["max_power"](o, s)  # noqa: E731
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="samples.*nope"):
        evaluate_policy(env, params, pol, key, 2, 1, samples=("nope",))
    with pytest.raises(ValueError, match="samples.*final_obs"):
        evaluate_policies(env, params, [pol], key, 2, 1, samples=("final_obs",))
    out = evaluate_policy(env, params, pol, key, 2, 1)  # no samples: the means alone
    assert isinstance(out, dict) and out["sum_se"].shape == (1,)


def test_state_policy_batches_equal_vmap():
    """``state_policy(per_env, batch_size)`` (``lax.map`` in chunks, a remainder included)
    gives the vectorised result over any batch shape; a bad ``batch_size`` raises."""
    from cfmimo_jax.envs.base import state_policy

    def per_env(state):
        return jnp.tanh(state["x"] @ state["w"]) * 2.0

    rng = np.random.default_rng(0)
    state = {
        "x": jnp.asarray(rng.normal(size=(2, 5, 3, 4))),
        "w": jnp.asarray(rng.normal(size=(2, 5, 4))),
    }
    obs = jnp.zeros((2, 5, 3, 1))
    want = np.asarray(state_policy(per_env)(obs, state))
    loop = np.stack(
        [[per_env({k: v[i, j] for k, v in state.items()}) for j in range(5)] for i in range(2)]
    )
    np.testing.assert_allclose(want, loop, rtol=1e-6)
    for b in (1, 3, 10, 64):
        np.testing.assert_allclose(
            np.asarray(state_policy(per_env, b)(obs, state)), want, rtol=1e-6
        )
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="batch_size"):
            state_policy(per_env, bad)

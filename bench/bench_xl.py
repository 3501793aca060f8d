#!/usr/bin/env python
"""Benchmark: one drop of the cell-free XL-MIMO uplink of [XL-FUZZY], JAX vs NumPy, and the
training time per 2000 episodes next to the paper's Table I.

Usage (from the repository root)::

    python bench/bench_xl.py [--quick] [--out bench/RESULTS_xl.md]

The paper's network ([XL-FUZZY] section V, ``cfmimo reproduce xl-uplink``'s canonical
configuration): ``M = 9`` BSs of ``9 x 9`` patches, ``K = 6`` UEs of ``3 x 3``, spacing
``lambda / 3``, the scenario's 8 channel realizations per step.

(a) Channel generation per drop: the large-scale fading of a new drop
    (``cfmimo_jax.nearfield.drop_large_scale``: positions, wrap-around distances, path loss,
    correlated shadowing) and 8 realizations ``G[8, M, K, N_r, N_s]`` of the Fourier plane-wave
    series (``nearfield.sample_channels``, [XL-FUZZY] eqs. (1)-(4)).
(b) SE evaluation per drop: ``cfmimo_jax.se.uplink_se_log_det`` ([XL-FUZZY] eq. (8)) with MR and
    L-MMSE combining on those realizations.

    JAX: ``jax.jit(jax.vmap(f))`` over a batch of ``B`` drops (1 and 64), float32 / complex64
    (the precision the trainers run in), ahead-of-time compiled (compile time reported apart),
    per drop = call time / ``B``; ``B = 1`` is timed as ``n_drops`` calls in a row. NumPy:
    ``bench/numpy_xl.py`` (vectorised over realizations, BSs and UEs), one drop after another
    in a Python loop, complex128 (the reference: the faster of OpenBLAS at 1 thread and at all
    cores, since on a loaded 2-core machine the threaded one can be 10-100x slower) and
    complex64. Each repeat times every JAX batch size, then the NumPy loop, then the dominant
    operations alone, back to back (a *pair*: the same load from other jobs); per-drop times
    are medians over repeats and ratios the median of the paired ratios.
(c) Training time per 2000 episodes of ``fl_ctce``, ``fl_ctde`` and ``maddpg`` with L-MMSE and
    MR combining, with the canonical budget's hyper-parameters (16 environments, 5 vectorised
    steps per update, one gradient step of batch 128 per vectorised step, one-step episodes),
    in the steady state: ``jax.jit(trainer.update).lower(state).compile()`` timed apart, one
    warm-up call, then timed calls of one update (80 episodes) each, ``block_until_ready``;
    per 2000 episodes = median call time x 2000 / 80; next to it, in the same phase, the
    environment alone (``env.step_batch`` of the 16 environments for 5 vectorised steps in one
    compiled ``lax.scan``, random actions). Two settings differ from the canonical run,
    neither changing the per-episode work: one update per call (the canonical chunk is 25
    updates = 2000 episodes), and ``learning_starts = 80`` (the first call's transitions), so
    every timed step learns after one warm-up call. Next to the paper's Table I (1.124 / 1.056
    / 1.182 s with L-MMSE, 0.382 / 0.347 / 0.411 s with MR for FL-CTCE / FL-CTDE / MADDPG):
    theirs is PyTorch on a GTX 3060 GPU, ours JAX on this CPU; no PyTorch reference is run.

Checked in the same run: the JAX SE (float32) equals the NumPy SE (complex128) on the same
channel realizations (asserted ``|diff| <= 0.02 + 2e-3 SE`` bit/s/Hz); both channel generators'
spatial correlation equals the closed form ``nearfield.correlation_matrices`` within Monte-Carlo
error, and their large-scale fading has the same mean and spread. Where the time goes: the
dominant operations of each implementation timed alone (the normal draw, the steering-vector
sums, the L-MMSE solve), so a missed target names its bound.

NumPy's OpenBLAS: the script re-executes itself once without ``OPENBLAS_CORETYPE`` /
``OPENBLAS_L2_SIZE`` (which pin an older kernel set), as ``bench/bench_kernels.py`` does;
``--keep-blas-env`` keeps them.
"""

from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench._common import (  # noqa: E402
    aot,
    blas_env_removed,
    bullets,
    compile_update,
    describe_machine,
    ms,
    openblas_functions,
    openblas_info,
    peak_rss_gib,
    reexec_without_blas_overrides,
    time_calls,
    timed_update,
    versions_line,
    write_json,
    write_markdown,
)

if __name__ == "__main__":
    reexec_without_blas_overrides(__file__)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(os.cpu_count() or 1))

import argparse  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from bench import numpy_xl as nx  # noqa: E402

COMBINERS = ("l_mmse", "mr")
METHODS = ("fl_ctce", "fl_ctde", "maddpg")
LABEL = {"l_mmse": "L-MMSE", "mr": "MR"}
EPISODES_PER_TABLE = 2000
TARGET = 10.0
DIRECT_SE = "SE L-MMSE, solve='direct' (whole SE)"
# SE parity tolerance (bit/s/Hz): JAX float32 vs NumPy complex128 on the same realizations
SE_ATOL, SE_RTOL = 0.02, 2e-3
CODE_FILES = (
    "cfmimo_jax/nearfield.py",
    "cfmimo_jax/se.py",
    "cfmimo_jax/linalg.py",
    "cfmimo_jax/envs/xl_uplink.py",
    "algorithms",
    "bench/numpy_xl.py",
    "bench/bench_xl.py",
)


# ---- set-up ---------------------------------------------------------------------------------


def canonical():
    """``cfmimo reproduce xl-uplink``'s embedded configuration (env overrides, budgets) and the
    paper's Table I (``cfmimo_cli.reproduce_xl.PAPER_TIME_S``)."""
    from cfmimo_cli.config import load_default
    from cfmimo_cli.reproduce_xl import PAPER_TIME_S

    cfg = load_default("reproduce_xl_uplink")
    return cfg["env"], cfg["budget"], PAPER_TIME_S


def make_env(env_cfg, combiner):
    from cfmimo_jax import envs

    return envs.make("xl_uplink", {**env_cfg, "combiner": combiner})


def machine_info():
    """:func:`bench._common.describe_machine` of ``CODE_FILES``, with NumPy's BLAS and the OpenBLAS
    overrides the script removed."""
    return describe_machine(
        CODE_FILES, after_devices={"blas": openblas_info(), "blas_env_removed": blas_env_removed()}
    )


def _uptime():
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


_BLAS = None


def blas_threads(n=None):
    """Set NumPy's OpenBLAS thread count to ``n`` (if given and settable); return the count
    in use (``None`` when it cannot be read)."""
    global _BLAS
    if _BLAS is None:
        _BLAS = openblas_functions("set_num_threads", "get_num_threads") or False
    if not _BLAS:
        return None
    if n is not None:
        _BLAS[0](int(n))
    return int(_BLAS[1]())


# ---- JAX functions --------------------------------------------------------------------------


def jax_drop_channels(env, n_real):
    """``key -> G[n_real, M, K, N_r, N_s]``: a new drop's large-scale fading and its
    realizations (``env.drop`` + ``nearfield.sample_channels``), complex64."""
    import jax

    from cfmimo_jax.nearfield import sample_channels

    def fn(key):
        k_drop, k_ch = jax.random.split(key)
        return sample_channels(k_ch, env.model, env.drop(k_drop).beta, n_real)

    return fn


def jax_se(combiner, solve="auto"):
    """``(G, p) -> SE[K]`` (``se.uplink_se_log_det``, the scenario's estimator)."""
    from cfmimo_jax.se import uplink_se_log_det

    return lambda G, p: uplink_se_log_det(G, p, combiner, solve=solve)


# ---- NumPy loops ----------------------------------------------------------------------------


def numpy_drop(rng, env):
    """``(beta, beta_db)`` of one drop of the scenario in NumPy (``numpy_xl.drop_large_scale``
    with the environment's layout, area, height and shadowing)."""
    return nx.drop_large_scale(
        rng,
        env.M,
        env.K,
        bs_layout=env.bs_layout,
        side=env.side_m,
        height=env.height_m,
        shadow_std_db=env.shadow_std_db,
        decorrelation_m=env.shadow_decorrelation_m,
    )


def numpy_drop_channels(rng, bases, env, n_real, dtype):
    """One drop in NumPy: ``drop_large_scale`` + ``sample_channels``."""
    beta, _ = numpy_drop(rng, env)
    return nx.sample_channels(rng, *bases[np.dtype(dtype).name], beta, n_real)


def numpy_bases(env, env_cfg):
    """``{"complex128": (B_r, B_s), "complex64": ...}`` of ``numpy_xl.plane_wave_bases`` for the
    scenario's arrays; checked against the JAX model's ``a diag(sqrt(var))`` (same lattice)."""
    m = env.model
    b128 = nx.plane_wave_bases(
        m.bs_array,
        m.ue_array,
        m.spacing_r,
        m.spacing_s,
        lattice=m.lattice,
        prune_tol=env_cfg.get("prune_tol", 1e-6),
    )
    for b, a, var in ((b128[0], m.a_r, m.var_r), (b128[1], m.a_s, m.var_s)):
        want = np.asarray(a, np.complex128) * np.sqrt(np.asarray(var, np.float64))[None, :]
        if b.shape != want.shape or not np.allclose(b, want, atol=1e-6):
            raise AssertionError("NumPy plane-wave bases differ from the JAX model's")
    return {"complex128": b128, "complex64": tuple(b.astype(np.complex64) for b in b128)}


def random_powers(rng, env, n):
    """``[n, K]`` per-antenna powers uniform in dB over the action range (mW)."""
    lo = -(env.db_range or 30.0)
    return env.p_ant_max * 10.0 ** (rng.uniform(lo, 0.0, (n, env.K)) / 10.0)


# ---- (a), (b): paired timing ----------------------------------------------------------------


def time_drop_ops(env_cfg, batches, n_drops, repeats, heavy=True, seed=0):
    """Per-drop seconds of the channel generation and the SE (MR, L-MMSE), JAX at each batch
    size and NumPy (complex128, complex64), in paired repeats (module docstring); in each
    repeat, right after them, the dominant operations alone (:func:`build_parts`), so the
    shares and bounds compare times taken under the same load. Returns ``(ops, parts)``."""
    import jax
    import jax.numpy as jnp

    env, _ = make_env(env_cfg, "mr")
    n_real = env.n_realizations
    bases = numpy_bases(env, env_cfg)
    rng = np.random.default_rng(seed)
    ops = ("channels", "se_mr", "se_l_mmse")
    compiled, compile_s, args = {}, {}, {}
    chan = jax_drop_channels(env, n_real)
    for B in batches:
        keys = jax.random.split(jax.random.PRNGKey(seed + B), B)
        c, t = aot(jax.vmap(chan), keys)
        compiled[("channels", B)], compile_s[("channels", B)] = c, t
        args[("channels", B)] = (keys,)
        G = jax.block_until_ready(c(keys))
        p = jnp.asarray(random_powers(rng, env, B), jnp.float32)
        for comb in ("mr", "l_mmse"):
            c, t = aot(jax.vmap(jax_se(comb)), G, p)
            compiled[(f"se_{comb}", B)], compile_s[(f"se_{comb}", B)] = c, t
            args[(f"se_{comb}", B)] = (G, p)
        print(
            f"compiled B={B}: " + ", ".join(f"{op} {compile_s[(op, B)]:.1f} s" for op in ops),
            flush=True,
        )
    jparts, nparts, sizes = build_parts(env, env_cfg, heavy)
    print("compiled the parts", flush=True)
    # NumPy inputs of the SE loop: n_drops drops drawn by the NumPy generator
    np_G = {
        dt: [numpy_drop_channels(rng, bases, env, n_real, dt) for _ in range(n_drops)]
        for dt in ("complex128", "complex64")
    }
    np_p = random_powers(rng, env, n_drops)
    cores = os.cpu_count() or 1
    n_multi = min(2, n_drops)  # drops of the all-cores NumPy probe

    def numpy_loop(op, dt_name, count):
        t0 = time.perf_counter()
        if op == "channels":
            for _ in range(count):
                numpy_drop_channels(rng, bases, env, n_real, dt_name)
        else:
            for G, p in zip(np_G[dt_name][:count], np_p[:count], strict=True):
                nx.uplink_se_log_det(G, p, op[3:])
        return (time.perf_counter() - t0) / count

    for comb in ("mr", "l_mmse"):  # warm-up (first-call costs)
        nx.uplink_se_log_det(np_G["complex128"][0], np_p[0], comb)
    settings = ("complex128, 1 thread", "complex64, 1 thread", f"complex128, {cores} threads")
    runs = {
        op: {"jax": {B: [] for B in batches}, "numpy": {k: [] for k in settings}, "load1": []}
        for op in ops
    }
    part_runs = {"jax": {k: [] for k in jparts}, "numpy": {k: [] for k in nparts}}

    def loop(fn, count):
        t0 = time.perf_counter()
        for _ in range(count):
            fn()
        return (time.perf_counter() - t0) / count

    for r in range(repeats):
        for op in ops:
            for B in batches:
                calls = n_drops if B == 1 else 1
                dt = time_calls(compiled[(op, B)], args[(op, B)], calls)
                runs[op]["jax"][B].append(dt / (calls * B))
            blas_threads(1)
            runs[op]["numpy"][settings[0]].append(numpy_loop(op, "complex128", n_drops))
            runs[op]["numpy"][settings[1]].append(numpy_loop(op, "complex64", n_drops))
            if cores > 1 and blas_threads(cores) == cores:
                runs[op]["numpy"][settings[2]].append(numpy_loop(op, "complex128", n_multi))
            blas_threads(1)
            runs[op]["load1"].append(os.getloadavg()[0])
        for name, (c, a) in jparts.items():
            part_runs["jax"][name].append(time_calls(c, a, n_drops) / n_drops)
        for name, fn in nparts.items():
            blas_threads(1)
            t = loop(fn, n_drops)
            if cores > 1 and blas_threads(cores) == cores:
                t = min(t, loop(fn, n_multi))
            blas_threads(1)
            part_runs["numpy"][name].append(t)
        print(
            f"repeat {r}: "
            + "; ".join(
                f"{op} JAX "
                + "/".join(f"{1e3 * runs[op]['jax'][B][-1]:.2f}" for B in batches)
                + " ms, NumPy "
                + "/".join(f"{1e3 * v[-1]:.2f}" for v in runs[op]["numpy"].values() if v)
                + " ms"
                for op in ops
            )
            + "; parts JAX "
            + ", ".join(f"{k} {1e3 * v[-1]:.2f}" for k, v in part_runs["jax"].items())
            + " ms, NumPy "
            + ", ".join(f"{k} {1e3 * v[-1]:.2f}" for k, v in part_runs["numpy"].items())
            + " ms",
            flush=True,
        )
    blas_threads(cores)
    out = {}
    for op in ops:
        R = runs[op]
        num = {k: v for k, v in R["numpy"].items() if v}
        multi = num.get(settings[2])
        # the reference of each repeat: NumPy complex128 at its faster thread setting
        ref = (
            [min(a, b) for a, b in zip(num[settings[0]], multi, strict=True)]
            if multi
            else (num[settings[0]])
        )
        c64 = num[settings[1]]
        o = {
            "jax_per_drop_s": {str(B): statistics.median(R["jax"][B]) for B in batches},
            "jax_runs_s": {str(B): R["jax"][B] for B in batches},
            "jax_compile_s": {str(B): compile_s[(op, B)] for B in batches},
            "numpy_per_drop_s": {k: statistics.median(v) for k, v in num.items()},
            "numpy_runs_s": num,
            "numpy_ref_runs_s": ref,
            "numpy_ref_per_drop_s": statistics.median(ref),
            "numpy_c64_per_drop_s": statistics.median(c64),
            "ratio_ref": {
                str(B): statistics.median(n / j for n, j in zip(ref, R["jax"][B], strict=True))
                for B in batches
            },
            "ratio_c64": {
                str(B): statistics.median(n / j for n, j in zip(c64, R["jax"][B], strict=True))
                for B in batches
            },
            "load1": R["load1"],
        }
        best = max(batches, key=lambda B: o["ratio_ref"][str(B)])
        o["best_batch"], o["best_ratio"] = best, o["ratio_ref"][str(best)]
        out[op] = o
    parts = {
        "jax": {k: statistics.median(v) for k, v in part_runs["jax"].items()},
        "numpy": {k: statistics.median(v) for k, v in part_runs["numpy"].items()},
        "runs": part_runs,
        "sizes": sizes,
    }

    def paired(num, den):  # median over repeats of num[r] / den[r]
        return statistics.median(a / b for a, b in zip(num, den, strict=True))

    jr, nr = part_runs["jax"], part_runs["numpy"]
    ref = {op: out[op]["numpy_ref_runs_s"] for op in ops}
    j1 = {op: runs[op]["jax"][batches[0]] for op in ops}
    parts["paired"] = {
        # share of the JAX op (batch 1) its dominant operation takes
        "jax_share_normal": paired(jr["normal"], j1["channels"]),
        "jax_share_mr_gram": paired(jr["mr_gram"], j1["se_mr"]),
        "jax_share_gram_solve": paired(jr["gram_solve"], j1["se_l_mmse"]),
        # JAX operation / the NumPy operation doing the same job
        "normal_jax_over_numpy": paired(jr["normal"], nr["normal"]),
        "mr_gram_jax_over_numpy": paired(jr["mr_gram"], nr["mr_gram"]),
        "solve_jax_over_numpy": paired(jr["gram_solve"], nr["lmmse_solve"]),
        "gram_solve_jax_over_numpy_chol": paired(jr["gram_solve"], nr["gram_chol"]),
        # the most the ratio could be with everything but the dominant JAX operation free
        "bound_channels": paired(ref["channels"], jr["normal"]),
        "bound_se_mr": paired(ref["se_mr"], jr["mr_gram"]),
        "bound_se_l_mmse": paired(ref["se_l_mmse"], jr["gram_solve"]),
    }
    if "unsafe_rbg" in jr:
        parts["paired"]["unsafe_rbg_over_threefry"] = paired(jr["unsafe_rbg"], j1["channels"])
    if "direct_se" in jr:
        parts["paired"]["direct_over_gram_se"] = paired(jr["direct_se"], j1["se_l_mmse"])
    return out, parts


# ---- correctness in the same run ------------------------------------------------------------


def se_parity(env_cfg, n_check=3, seed=5):
    """JAX float32 SE vs NumPy complex128 SE on the same NumPy-drawn realizations (and NumPy
    complex64 vs complex128), both combiners; asserted within ``SE_ATOL + SE_RTOL SE``."""
    import jax
    import jax.numpy as jnp

    env, _ = make_env(env_cfg, "mr")
    bases = numpy_bases(env, env_cfg)
    rng = np.random.default_rng(seed)
    out = {}
    for comb in ("mr", "l_mmse"):
        f = jax.jit(jax_se(comb))
        ref, got, c64 = [], [], []
        for _ in range(n_check):
            G = numpy_drop_channels(rng, bases, env, env.n_realizations, "complex128")
            p = random_powers(rng, env, 1)[0]
            ref.append(nx.uplink_se_log_det(G, p, comb))
            got.append(
                np.asarray(
                    f(jnp.asarray(G.astype(np.complex64)), jnp.asarray(p, jnp.float32)), np.float64
                )
            )
            c64.append(nx.uplink_se_log_det(G.astype(np.complex64), p, comb))
        ref, got, c64 = np.stack(ref), np.stack(got), np.stack(c64)
        err = np.abs(got - ref)
        if np.any(err > SE_ATOL + SE_RTOL * np.abs(ref)):
            raise AssertionError(f"{comb}: JAX vs NumPy SE differ by up to {err.max():.3g}")
        out[comb] = {
            "n_drops": n_check,
            "max_abs": float(err.max()),
            "max_rel": float(np.max(err / np.abs(ref))),
            "c64_vs_c128_max_abs": float(np.max(np.abs(c64 - ref))),
            "se_range": [float(ref.min()), float(ref.max())],
            "sum_se_mean": float(ref.sum(axis=1).mean()),
        }
    return out


def channel_parity(env_cfg, n=1024, n_drops=256, seed=7):
    """Both generators against the closed form: ``E[H H^H] / N_s = R_r`` and
    ``E[H^T conj(H)] / N_r = R_s`` (``nearfield.correlation_matrices``) over ``n`` realizations of
    one pair (``beta = 1``); mean and standard deviation of ``beta_db`` over ``n_drops`` drops of
    each. Asserted: correlation error below 0.15, mean ``beta_db`` within 1 dB."""
    import jax
    import jax.numpy as jnp

    from cfmimo_jax.nearfield import correlation_matrices, sample_channels

    env, _ = make_env(env_cfg, "mr")
    Rr, Rs = (np.asarray(x, np.complex128) for x in correlation_matrices(env.model))
    Nr, Ns = env.N_r, env.N_s
    rng = np.random.default_rng(seed)
    Br, Bs = numpy_bases(env, env_cfg)["complex128"]
    H = {
        "numpy": nx.sample_channels(rng, Br, Bs, np.ones((1, 1)), n)[:, 0, 0],
        "jax": np.asarray(
            sample_channels(jax.random.PRNGKey(seed), env.model, jnp.ones((1, 1), jnp.float32), n),
            np.complex128,
        )[:, 0, 0],
    }
    out = {"n_realizations": n, "n_drops": n_drops}
    for name, h in H.items():
        er = np.max(np.abs(np.einsum("nra,nsa->rs", h, h.conj()) / (n * Ns) - Rr))
        es = np.max(np.abs(np.einsum("nra,nrb->ab", h, h.conj()) / (n * Nr) - Rs))
        out[f"{name}_Rr_max_abs"], out[f"{name}_Rs_max_abs"] = float(er), float(es)
        if max(er, es) > 0.15:
            raise AssertionError(f"{name} channel correlation off by {max(er, es):.3g}")
    d = jax.jit(jax.vmap(env.drop))(jax.random.split(jax.random.PRNGKey(seed), n_drops))
    bj = np.asarray(d.beta_db, np.float64)
    bn = np.stack([numpy_drop(rng, env)[1] for _ in range(n_drops)])
    out.update(
        beta_db_mean_jax=float(bj.mean()),
        beta_db_mean_numpy=float(bn.mean()),
        beta_db_std_jax=float(bj.std()),
        beta_db_std_numpy=float(bn.std()),
    )
    if abs(bj.mean() - bn.mean()) > 1.0:
        raise AssertionError("mean beta_db of the two drop generators differ by > 1 dB")
    return out


# ---- the dominant operations alone ----------------------------------------------------------

#: JAX parts (timed at batch 1): key -> label; ``HEAVY_PARTS`` are left out of ``--quick``
JAX_PARTS = {
    "normal": "normal draw W (threefry, complex64)",
    "sums": "steering-vector sums B_r W B_s^T",
    "mr_gram": "MR Gram products G_m^H G_m",
    "gram_solve": "L-MMSE Gram path: Cholesky of W_m + Cholesky solve of I + F P F^H",
    "direct_se": "whole L-MMSE SE with solve='direct' (N_r x N_r Cholesky solve)",
    "unsafe_rbg": "whole channel generation with unsafe_rbg keys",
}
HEAVY_PARTS = ("direct_se", "unsafe_rbg")
NUMPY_PARTS = {
    "normal": "normal draw W (PCG64, float64 pairs)",
    "sums": "steering-vector sums B_r W B_s^T",
    "mr_gram": "MR Gram products G_m^H G_m",
    "lmmse_solve": "L-MMSE: np.linalg.solve(Phi_m, G_m) (N_r x N_r, K N_s right-hand sides)",
    "gram_chol": "np.linalg.cholesky of the K N_s x K N_s Gram matrices",
    "drop": "large-scale fading (drop_large_scale)",
}


def build_parts(env, env_cfg, heavy=True, seed=3):
    """Each implementation's dominant operations alone, at the paper's size and batch 1
    (``JAX_PARTS``, ``NUMPY_PARTS``): the normal draw ``W[n, M, K, n_r, n_s]``, the
    steering-vector sums, the MR Gram products, the L-MMSE solves (JAX: the Gram path of
    ``se._log_det_blocks`` with ``cfmimo_jax.linalg``'s ``cholesky`` / ``chol_solve``, and the
    whole SE on the direct path; NumPy: ``np.linalg.solve`` of the ``N_r x N_r`` system, and a
    LAPACK Cholesky of the Gram matrices for comparison), the whole JAX channel generation from
    ``unsafe_rbg`` keys. Returns ``(jax_parts {key: (compiled, args)}, numpy_parts {key: fn},
    sizes)``."""
    import jax
    import jax.numpy as jnp

    from cfmimo_jax.linalg import chol_solve, cholesky

    n, M, K, Nr, Ns = env.n_realizations, env.M, env.K, env.N_r, env.N_s
    m = env.model
    nr, ns = m.a_r.shape[1], m.a_s.shape[1]
    d = K * Ns
    br = m.a_r * jnp.sqrt(m.var_r).astype(m.a_r.dtype)[None, :]
    bs = m.a_s * jnp.sqrt(m.var_s).astype(m.a_s.dtype)[None, :]
    shape = (n, M, K, nr, ns)
    pr = np.repeat(env.p_ant_max * np.ones(K), Ns)
    prj = jnp.asarray(pr, jnp.float32).astype(jnp.complex64)

    def normal(key):
        return jax.random.normal(key, shape, jnp.complex64)

    def gram_solve(Gf):  # the L-MMSE Gram path of se._log_det_blocks
        W = jnp.einsum("...rx,...ry->...xy", jnp.conj(Gf), Gf)
        eye = jnp.eye(d, dtype=W.dtype)
        F = jnp.conj(jnp.swapaxes(cholesky(W + 1e-3 * eye), -1, -2))
        S = (F * prj) @ jnp.conj(jnp.swapaxes(F, -1, -2))
        return chol_solve(S + eye, F)

    key = jax.random.PRNGKey(seed)
    W = normal(key)
    Gf = jnp.swapaxes(br @ (W @ bs.T), -3, -2).reshape(n, M, Nr, d)
    G = jnp.swapaxes(Gf.reshape(n, M, Nr, K, Ns), -3, -2)
    todo = {
        "normal": (normal, (key,)),
        "sums": (lambda W: br @ (W @ bs.T), (W,)),
        "mr_gram": (lambda Gf: jnp.einsum("...rx,...ry->...xy", jnp.conj(Gf), Gf), (Gf,)),
        "gram_solve": (gram_solve, (Gf,)),
    }
    if heavy:
        pp = jnp.full((K,), env.p_ant_max, jnp.float32)
        todo["direct_se"] = (jax_se("l_mmse", "direct"), (G, pp))
        todo["unsafe_rbg"] = (
            jax_drop_channels(env, n),
            (jax.random.key(seed, impl="unsafe_rbg"),),
        )
    jax_parts = {}
    for name, (fn, a) in todo.items():
        c, _ = aot(fn, *a)
        time_calls(c, a, 1)
        jax_parts[name] = (c, a)
    rng = np.random.default_rng(seed)
    Br, Bs = numpy_bases(env, env_cfg)["complex128"]
    Gn = nx.sample_channels(rng, Br, Bs, np.full((M, K), 1e3), n)
    Gfn = np.swapaxes(Gn, 2, 3).reshape(n, M, Nr, d)
    Phi = (Gfn * pr) @ np.conj(np.swapaxes(Gfn, -1, -2)) + np.eye(Nr)
    Wg = np.conj(np.swapaxes(Gfn, -1, -2)) @ Gfn + 1e-3 * np.eye(d)
    Wn = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    numpy_parts = {
        "normal": lambda: rng.standard_normal(shape) + 1j * rng.standard_normal(shape),
        "sums": lambda: Br @ (Wn @ Bs.T),
        "mr_gram": lambda: np.conj(np.swapaxes(Gfn, -1, -2)) @ Gfn,
        "lmmse_solve": lambda: np.linalg.solve(Phi, Gfn),
        "gram_chol": lambda: np.linalg.cholesky(Wg),
        "drop": lambda: nx.drop_large_scale(rng, M, K),
    }
    for fn in numpy_parts.values():
        fn()
    sizes = dict(n=n, M=M, K=K, N_r=Nr, N_s=Ns, n_r=nr, n_s=ns)
    return jax_parts, numpy_parts, sizes


# ---- (c) training ---------------------------------------------------------------------------


def time_env_alone(env_cfg, combiner, n_envs, n_steps, repeats, seed=0):
    """Seconds per 2000 episodes of the environment alone, as the trainers step it:
    ``n_steps`` vectorised ``env.step_batch`` calls of ``n_envs`` environments (random actions
    in the action box; with one-step episodes every step auto-resets: a new drop, its channel
    realizations and the SE of eq. (8)) in one compiled ``lax.scan``, no acting network, buffer
    or gradient steps; one warm-up call, then ``repeats`` timed calls (median)."""
    import jax
    import jax.numpy as jnp

    env, ep = make_env(env_cfg, combiner)
    lo = float(np.min(env.action_space.low))
    hi = float(np.max(env.action_space.high))
    _, st = jax.jit(jax.vmap(env.reset, (0, None)))(
        jax.random.split(jax.random.PRNGKey(seed), n_envs), ep
    )

    def loop(st, key):
        def body(st, k):
            k_a, k_e = jax.random.split(k)
            a = jax.random.uniform(k_a, (n_envs, env.n_agents, 1), minval=lo, maxval=hi)
            _, st, r, _, _ = env.step_batch(jax.random.split(k_e, n_envs), st, a, ep)
            return st, jnp.mean(r)

        return jax.lax.scan(body, st, jax.random.split(key, n_steps))

    key = jax.random.PRNGKey(seed + 1)
    compiled, compile_s = aot(loop, st, key)
    time_calls(compiled, (st, key), 1)
    runs = [time_calls(compiled, (st, key), 1) for _ in range(repeats)]
    episodes = n_envs * n_steps / env.episode_steps
    return {
        "combiner": combiner,
        "n_envs": n_envs,
        "n_steps": n_steps,
        "compile_s": compile_s,
        "runs_s": runs,
        "s_per_2000_episodes": statistics.median(runs) * EPISODES_PER_TABLE / episodes,
        "load1": os.getloadavg()[0],
    }


def time_training(env_cfg, budget, combiner, method, repeats, n_envs=None, seed=0):
    """Steady-state seconds per 2000 episodes of one trainer (module docstring, (c))."""
    import algorithms

    env, ep = make_env(env_cfg, combiner)
    tc = dict(budget[method])
    if n_envs:
        tc["n_envs"] = int(n_envs)
    tc.update(updates_per_chunk=1, n_updates=1)
    tc["learning_starts"] = tc["n_envs"] * tc["n_steps"]
    trainer = algorithms.make_train(method, tc, env, ep)
    c = trainer.config
    episodes = c.n_envs * c.n_steps * c.updates_per_chunk / env.episode_steps
    rs, compiled, compile_s = compile_update(trainer, seed)
    metrics = []

    def call(rs):
        rs, dt, m = timed_update(compiled, rs, metrics)
        return rs, dt, float(np.min(m["learning"]))

    rs, warm_s, _ = call(rs)
    runs, learning = [], []
    for _ in range(repeats):
        rs, dt, lr = call(rs)
        runs.append(dt)
        learning.append(lr)
    t = statistics.median(runs)
    return {
        "combiner": combiner,
        "method": method,
        "n_envs": c.n_envs,
        "n_steps": c.n_steps,
        "gradient_steps": c.gradient_steps,
        "batch_size": c.batch_size,
        "episodes_per_call": episodes,
        "compile_s": compile_s,
        "warm_s": warm_s,
        "runs_s": runs,
        "s_per_2000_episodes": t * EPISODES_PER_TABLE / episodes,
        "learning_in_timed_calls": min(learning),
        "finite": bool(all(np.isfinite(v) for mm in metrics for v in mm.values())),
        "sum_se_last": metrics[-1].get("sum_se"),
        "load1": os.getloadavg()[0],
    }


# ---- report ---------------------------------------------------------------------------------

OP_LABEL = {
    "channels": "(a) channel generation",
    "se_mr": "(b) SE, MR",
    "se_l_mmse": "(b) SE, L-MMSE",
}


def _x(x):
    return "-" if x is None else f"{x:.2g}x"


def analyse(res, setup):
    """Headline and reading lines of (a), (b); whether the target is met."""
    ops, parts = res["ops"], res["parts"]
    jp, npp, pr, s = parts["jax"], parts["numpy"], parts["paired"], parts["sizes"]
    head, reading, met = [], [], []
    for op, o in ops.items():
        B = str(o["best_batch"])
        r = o["best_ratio"]
        met.append(r >= TARGET)
        head.append(
            f"{OP_LABEL[op]}: JAX {ms(o['jax_per_drop_s'][B])} ms per drop (batch {B}) vs "
            f"NumPy complex128 {ms(o['numpy_ref_per_drop_s'])} ms: **{r:.2g}x** (NumPy "
            f"complex64: {_x(o['ratio_c64'][B])}; target >= {TARGET:.0f}x: "
            f"{'met' if r >= TARGET else 'not met'})"
        )
    ch, mr, lm = ops["channels"], ops["se_mr"], ops["se_l_mmse"]
    batches = setup["batches"]
    Bmax = str(max(batches))
    slower = [op for op, o in ops.items() if o["jax_per_drop_s"][Bmax] > o["jax_per_drop_s"]["1"]]
    if slower:
        reading.append(
            f"Batching does not help JAX here: per drop, batch {Bmax} is slower than batch 1 "
            f"for {', '.join(OP_LABEL[op] for op in slower)} ("
            + "; ".join(
                f"{ms(ops[op]['jax_per_drop_s']['1'])} -> {ms(ops[op]['jax_per_drop_s'][Bmax])} ms"
                for op in slower
            )
            + "). One drop is already a batch of per-BS problems (realizations x BSs) for "
            "XLA; a larger vmapped batch presumably adds memory traffic more than parallelism "
            "on 2 cores (not measured apart here). The ratios use each operation's best batch."
        )
    line = (
        f"Channel generation: the JAX drop takes {ms(ch['jax_per_drop_s']['1'])} ms at batch "
        f"1; alone, its normal draw of W[{s['n']}, {s['M']}, {s['K']}, {s['n_r']}, {s['n_s']}] "
        f"takes {ms(jp['normal'])} ms ({100 * pr['jax_share_normal']:.0f}% of the drop, paired) "
        f"and the steering-vector sums {ms(jp['sums'])} ms. NumPy's drop takes "
        f"{ms(ch['numpy_ref_per_drop_s'])} ms: its normal draw {ms(npp['normal'])} ms, the "
        f"sums {ms(npp['sums'])} ms, the large-scale fading {ms(npp['drop'])} ms. JAX's draw "
        f"(threefry bits and the inverse-erf transform) costs {pr['normal_jax_over_numpy']:.2g}x "
        f"NumPy's (PCG64 and the ziggurat, float64) for the same number of complex normals, so "
        f"even with free sums and large-scale fading the ratio NumPy / JAX could reach at most "
        f"{pr['bound_channels']:.2g}x: the normal draw bounds it."
    )
    if "unsafe_rbg_over_threefry" in pr:
        line += (
            f" With unsafe_rbg keys (the caller's choice, no code change) the whole JAX "
            f"generation takes {ms(jp['unsafe_rbg'])} ms ({pr['unsafe_rbg_over_threefry']:.2g}x"
            " the threefry time, paired)."
        )
    reading.append(line)
    reading.append(
        f"SE with MR: JAX {ms(mr['jax_per_drop_s']['1'])} ms at batch 1, NumPy "
        f"{ms(mr['numpy_ref_per_drop_s'])} ms (complex128), "
        f"{ms(mr['numpy_c64_per_drop_s'])} ms (complex64). The work is the Gram products "
        f"G_m^H G_m ({s['n'] * s['M']} products of {s['N_r']} x {s['K'] * s['N_s']} per drop) and "
        f"the moment sums of eq. (8); the products alone take {ms(jp['mr_gram'])} ms in JAX "
        f"(complex64, {100 * pr['jax_share_mr_gram']:.0f}% of its SE) and {ms(npp['mr_gram'])} ms "
        f"in NumPy (complex128 BLAS): JAX / NumPy {pr['mr_gram_jax_over_numpy']:.2g}x for the "
        f"same products, so even with free moment sums the ratio NumPy / JAX could reach at "
        f"most {pr['bound_se_mr']:.2g}x"
        + (
            ": the matrix products bound the ratio."
            if pr["jax_share_mr_gram"] >= 0.5
            else "; the rest of the JAX SE (the per-BS second moments A A^H and the other "
            f"terms of eq. (8), {100 * (1 - pr['jax_share_mr_gram']):.0f}%) takes most of its "
            "time."
        )
    )
    line = (
        f"SE with L-MMSE: JAX takes {ms(lm['jax_per_drop_s']['1'])} ms at batch 1; its "
        f"Gram-path Cholesky factor and Cholesky solve ({s['n'] * s['M']} systems of "
        f"{s['K'] * s['N_s']} x {s['K'] * s['N_s']} per drop, `cfmimo_jax.linalg`) alone take "
        f"{ms(jp['gram_solve'])} ms ({100 * pr['jax_share_gram_solve']:.0f}% of the SE, paired). "
        f"NumPy's LAPACK solve of the larger {s['N_r']} x {s['N_r']} system takes "
        f"{ms(npp['lmmse_solve'])} ms of its {ms(lm['numpy_ref_per_drop_s'])} ms, and a LAPACK "
        f"Cholesky of the same {s['K'] * s['N_s']} x {s['K'] * s['N_s']} Gram matrices "
        f"{ms(npp['gram_chol'])} ms. `cfmimo_jax.linalg` writes the factorisation and the "
        "triangular solves as `lax.fori_loop`s over columns, vectorised over the batch "
        "(jaxlib's CPU LAPACK kernels can deadlock on a 2-core machine): they take "
        f"{pr['solve_jax_over_numpy']:.2g}x the time of NumPy's whole LAPACK solve "
        f"({pr['gram_solve_jax_over_numpy_chol']:.2g}x its Cholesky of the same matrices), so "
        f"even with everything else free the ratio NumPy / JAX could reach at most "
        f"{pr['bound_se_l_mmse']:.2g}x: the factorisations bound it."
    )
    if "direct_over_gram_se" in pr:
        line += (
            f" The direct path (solve='direct', the {s['N_r']} x {s['N_r']} Cholesky solve) is "
            f"slower still: {ms(jp['direct_se'])} ms per drop "
            f"({pr['direct_over_gram_se']:.2g}x the Gram path, paired)."
        )
    reading.append(line)
    return head, reading, all(met)


def training_reading(res, setup):
    """Reading lines of (c)."""
    lines = []
    for comb in COMBINERS:
        rows = [r for r in res["training"] if r["combiner"] == comb]
        if not rows:
            continue
        ours = ", ".join(f"{r['method']} {r['s_per_2000_episodes']:.3g} s" for r in rows)
        paper = " / ".join(f"{r['paper_s']}" for r in rows if r.get("paper_s") is not None)
        line = f"Training with {LABEL[comb]}, per 2000 episodes on this CPU: {ours}"
        if paper:
            line += f" (Table I, PyTorch on a GTX 3060: {paper} s)"
        x = [r["s_per_2000_episodes"] / r["paper_s"] for r in rows if r.get("paper_s")]
        e = res.get("env_alone", {}).get(comb)
        if e:
            med = statistics.median(r["s_per_2000_episodes"] for r in rows)
            line += (
                f". The environment alone (2000 drops: channel generation and the SE, stepped "
                f"as the trainers step it, {setup['train_n_envs']} at a time) takes "
                f"{e['s_per_2000_episodes']:.3g} s, {100 * e['s_per_2000_episodes'] / med:.0f}% of "
                "the median trainer"
            )
        lines.append(
            line + f". The networks are small (64-64 MLPs, batch 128, one gradient step per "
            f"{setup['train_n_envs']} drops): most of the time is the environment's, which this "
            "CPU computes on 2 shared cores and the paper's GPU in parallel."
            + (
                f" Table I's times are {min(x):.0f}-{max(x):.0f}x smaller (no GPU run here)."
                if x
                else ""
            )
        )
    return lines


def write_report(path, info, setup, res, wall):
    L = []
    add = L.append
    ops, parts, train = res["ops"], res["parts"], res["training"]
    batches = setup["batches"]
    s = parts["sizes"]
    name = os.path.splitext(os.path.basename(path))[0]
    add("# XL-MIMO benchmark: one drop of [XL-FUZZY], JAX vs NumPy; training time vs Table I")
    add("")
    add(
        f"Generated by `python bench/bench_xl.py{' --quick' if setup['quick'] else ''}` (total "
        f"wall time {wall:.0f} s). Raw numbers: `{name}.json`."
    )
    add("")
    add("## What is measured")
    add("")
    add(
        f"The paper's network ([XL-FUZZY] section V): M = {s['M']} BSs of "
        f"{setup['bs_array'][0]} x {setup['bs_array'][1]} patches (N_r = {s['N_r']}), K = "
        f"{s['K']} UEs of {setup['ue_array'][0]} x {setup['ue_array'][1]} (N_s = {s['N_s']}), "
        f"spacing lambda / 3; the 'cover' wavenumber lattice, n_r = {s['n_r']} and n_s = "
        f"{s['n_s']} points; {s['n']} channel realizations per drop (the scenario's step)."
    )
    add("")
    add(
        "- **(a) Channel generation per drop**: a new drop's large-scale fading (uniform BSs "
        "and UEs, wrap-around 3-D distance, path loss -30.5 - 36.7 log10(d), shadowing "
        "N(0, 4^2) correlated over UEs, over the noise) and its realizations "
        "G[n, M, K, N_r, N_s] = sqrt(beta) B_r W B_s^T of [XL-FUZZY] eqs. (1)-(4). JAX: "
        "`env.drop` + `nearfield.sample_channels`; NumPy: `bench/numpy_xl.py` "
        "`drop_large_scale` + `sample_channels` (the lattice and its variances, geometry only, "
        "from `nearfield.wavenumber_lattice`; the draw, the sums and the large-scale fading in "
        "NumPy)."
    )
    add(
        "- **(b) SE evaluation per drop**: [XL-FUZZY] eq. (8) with MR and L-MMSE combining on "
        "those realizations (estimator 'independent', the scenario's). JAX: "
        f"`se.uplink_se_log_det` (L-MMSE through its Gram path, K N_s = {s['K'] * s['N_s']} < "
        f"N_r = {s['N_r']}); NumPy: `numpy_xl.uplink_se_log_det` (the N_r x N_r L-MMSE system "
        "by `np.linalg.solve`, eq. (8) term by term, `slogdet`)."
    )
    add(
        "- JAX: `jax.jit(jax.vmap(f))` over a batch of B drops (B = "
        f"{', '.join(map(str, batches))}), float32 / complex64 (as the trainers run), compiled "
        "ahead of time (compile time in the table, not in the timings); per drop = call time / "
        f"B, B = 1 timed as {setup['n_drops']} calls in a row. NumPy: {setup['n_drops']} drops "
        "one after another in a Python loop, complex128 (the reference) with OpenBLAS at 1 "
        f"thread and ({min(2, setup['n_drops'])} drops) at all cores, the faster of the two "
        "per repeat; complex64 at 1 thread. Each of the "
        f"{setup['repeats']} repeats times every JAX batch size and then NumPy back to back; "
        "times are medians over repeats, ratios the median of the per-repeat (paired) ratios "
        "NumPy / JAX."
    )
    add(
        "- **(c) Training time per 2000 episodes** (Table I): `fl_ctce`, `fl_ctde`, `maddpg` "
        "with the budget of `cfmimo reproduce xl-uplink` "
        f"({setup['train_n_envs']} environments, 5 vectorised steps per update, one gradient "
        "step of batch 128 per vectorised step, one-step episodes, 8 realizations per step), in "
        "the steady state: the AOT compile timed apart, one warm-up call, then "
        f"{setup['train_repeats']} timed calls of one update ({setup['train_n_envs'] * 5} "
        "episodes) each; per 2000 episodes = median x 2000 / episodes per call. Two settings "
        "differ from the canonical run, neither changing the work per episode: one update per "
        "call (canonical: 25, i.e. 2000 episodes) and `learning_starts` = the first call's "
        "transitions (canonical 500), so every timed step learns. Table I's times are PyTorch "
        "on a GTX 3060 GPU; ours are JAX on this 2-core CPU; no PyTorch reference is run."
    )
    add("")
    add("## Machine")
    add("")
    add(f"- CPU: {info['cpu']}, {info['cores']} cores, shared with other jobs ({info['platform']})")
    add(versions_line(info))
    blas = f"- NumPy BLAS: {info['blas']}"
    if info["blas_env_removed"]:
        blas += f" (removed from the environment: {info['blas_env_removed']})"
    add(blas)
    dirty = info["dirty"].replace("\n", "; ")
    add(
        f"- Code: git commit {info['commit']}"
        + (f" (uncommitted: {dirty})" if dirty else " (benchmarked files clean)")
    )
    add(f"- `uptime` at start: `{info['uptime_start']}`")
    add(f"- `uptime` at end: `{info['uptime_end']}`")
    add(
        "- A load average above 2 means other jobs held the 2 cores part of the time: every "
        "time here is inflated by them, JAX and NumPy alike (hence the paired ratios). "
        f"1-minute load during the repeats: {min(min(o['load1']) for o in ops.values()):.1f}-"
        f"{max(max(o['load1']) for o in ops.values()):.1f}."
    )
    add(f"- Peak resident memory of the benchmark process: {info['max_rss_gib']:.1f} GiB")
    add("")
    add("## Correctness checks (same run)")
    add("")
    sp = res["se_parity"]
    for comb in ("mr", "l_mmse"):
        x = sp[comb]
        add(
            f"- SE, {LABEL[comb]}: JAX float32 vs NumPy complex128 on the same realizations of "
            f"{x['n_drops']} drops (random powers): max |diff| {x['max_abs']:.2g} bit/s/Hz, max "
            f"relative {x['max_rel']:.2g} (asserted <= {SE_ATOL} + {SE_RTOL} SE; per-UE SE "
            f"{x['se_range'][0]:.3g} to {x['se_range'][1]:.3g}, mean sum SE "
            f"{x['sum_se_mean']:.3g}); NumPy complex64 vs complex128: "
            f"{x['c64_vs_c128_max_abs']:.2g}."
        )
    cp = res["channel_parity"]
    add(
        f"- Channels, {cp['n_realizations']} realizations of one pair against the closed form "
        f"(`nearfield.correlation_matrices`): max |E[H H^H] / N_s - R_r| JAX "
        f"{cp['jax_Rr_max_abs']:.3g}, NumPy {cp['numpy_Rr_max_abs']:.3g}; max "
        f"|E[H^T H*] / N_r - R_s| JAX {cp['jax_Rs_max_abs']:.3g}, NumPy "
        f"{cp['numpy_Rs_max_abs']:.3g} (Monte-Carlo error; asserted < 0.15)."
    )
    add(
        f"- Large-scale fading, {cp['n_drops']} drops each: beta_db mean JAX "
        f"{cp['beta_db_mean_jax']:.2f} dB vs NumPy {cp['beta_db_mean_numpy']:.2f} dB, standard "
        f"deviation {cp['beta_db_std_jax']:.2f} vs {cp['beta_db_std_numpy']:.2f} dB (asserted: "
        "means within 1 dB)."
    )
    add("")
    L += bullets("## Results: per drop (ms)", res["headline"])
    th = [k for k in next(iter(ops.values()))["numpy_per_drop_s"]]
    add(
        "| operation | "
        + " | ".join(f"JAX B={B}" for B in batches)
        + " | NumPy c128 (reference) | "
        + " | ".join(f"NumPy {k}" for k in th)
        + " | "
        + " | ".join(f"reference / JAX B={B}" for B in batches)
        + " | JAX compile (s), by B |"
    )
    add("|" + "---|" * (2 * len(batches) + len(th) + 3))
    for op, o in ops.items():
        jt = o["jax_per_drop_s"]
        add(
            f"| {OP_LABEL[op]} | "
            + " | ".join(ms(jt[str(B)]) for B in batches)
            + f" | {ms(o['numpy_ref_per_drop_s'])} | "
            + " | ".join(ms(o["numpy_per_drop_s"][k]) for k in th)
            + " | "
            + " | ".join(f"**{_x(o['ratio_ref'][str(B)])}**" for B in batches)
            + " | "
            + ", ".join(f"{o['jax_compile_s'][str(B)]:.1f}" for B in batches)
            + " |"
        )
    add("")
    add(
        "Per-repeat runs (ms per drop): "
        + "; ".join(
            f"{OP_LABEL[op]}: "
            + ", ".join(
                f"JAX B={B} " + "/".join(ms(x) for x in o["jax_runs_s"][str(B)]) for B in batches
            )
            + ", NumPy c128 reference "
            + "/".join(ms(x) for x in o["numpy_ref_runs_s"])
            for op, o in ops.items()
        )
        + "."
    )
    add("")
    env_step = {
        str(B): ops["channels"]["jax_per_drop_s"][str(B)]
        + ops["se_l_mmse"]["jax_per_drop_s"][str(B)]
        for B in batches
    }
    add(
        "A whole environment step per drop (channel generation + L-MMSE SE): JAX "
        + ", ".join(f"{ms(env_step[str(B)])} ms at B={B}" for B in batches)
        + "; NumPy "
        + ms(ops["channels"]["numpy_ref_per_drop_s"] + ops["se_l_mmse"]["numpy_ref_per_drop_s"])
        + " ms."
    )
    add("")
    add("### The dominant operations alone (per drop, ms)")
    add("")
    add("| JAX operation (complex64, batch 1) | per drop |")
    add("|---|---|")
    for key, label in JAX_PARTS.items():
        if key in parts["jax"]:
            add(f"| {label} | {ms(parts['jax'][key])} |")
    add("")
    add("| NumPy operation (complex128; faster of 1 thread / all cores) | per drop |")
    add("|---|---|")
    for key, label in NUMPY_PARTS.items():
        add(f"| {label} | {ms(parts['numpy'][key])} |")
    add("")
    add(
        "Inputs: W[n, M, K, n_r, n_s] for the draw and the sums; the n M per-BS matrices "
        "G_m[N_r, K N_s] of one drop at full power for the products and solves (JAX Gram path as "
        "`se._log_det_blocks` runs it: W_m = G_m^H G_m, its Cholesky factor F, the Cholesky "
        "solve of I + F P F^H with K N_s right-hand sides; direct: the Cholesky solve of "
        "Phi_m = I + G_m P G_m^H). unsafe_rbg: the whole channel generation (drop + "
        "realizations) from keys of that PRNG implementation instead of the default threefry. "
        "Timed in every repeat right after the whole operations (medians over the repeats; "
        "shares and bounds in the reading are medians of per-repeat ratios)."
    )
    add("")
    add("## Training time per 2000 episodes (Table I)")
    add("")
    add(
        "| combiner | method | JAX on this CPU: s / 2000 episodes (steady) | timed calls (s) | "
        "compile (s) | environment alone (s / 2000) | Table I: PyTorch, GTX 3060 (s) | "
        "ours / paper | every timed step learns, metrics finite | load |"
    )
    add("|---|---|---|---|---|---|---|---|---|---|")
    for r in train:
        p = r.get("paper_s")
        env = r.get("env_alone_s")
        add(
            f"| {LABEL[r['combiner']]} | {r['method']} | **{r['s_per_2000_episodes']:.3g}** | "
            + ", ".join(f"{x:.2f}" for x in r["runs_s"])
            + f" | {r['compile_s']:.1f} | {'-' if env is None else f'{env:.3g}'} | "
            + f"{'-' if p is None else p} | "
            + ("-" if not p else f"{r['s_per_2000_episodes'] / p:.0f}x")
            + f" | {r['learning_in_timed_calls'] == 1.0 and r['finite']} | {r['load1']:.1f} |"
        )
    add("")
    add(
        "Environment alone: the trainers' environment steps by themselves (`env.step_batch` of "
        f"{setup['train_n_envs']} environments, 5 vectorised steps in one compiled `lax.scan`, "
        "random actions; every step a new drop, its 8 realizations and the SE), timed in the "
        "same phase just before the trainers of that combiner; compile "
        + ", ".join(
            f"{LABEL[c]} {e['compile_s']:.1f} s" for c, e in res.get("env_alone", {}).items()
        )
        + ". Table I's ordering (FL-CTDE the fastest, L-MMSE about 3x MR) is the paper's "
        "implementation's; here the three trainers share the environment, which takes most of "
        "their time."
    )
    add("")
    L += bullets("## Reading", res["reading"])  # its closing blank line: a final newline
    write_markdown(path, L)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run (small batches, one trainer)")
    ap.add_argument("--out", default=None, help="markdown report (default bench/RESULTS_xl.md)")
    ap.add_argument("--keep-blas-env", action="store_true", help="keep the OPENBLAS_* overrides")
    ap.add_argument("--repeats", type=int, default=4, help="paired repeats of (a), (b)")
    ap.add_argument("--train-repeats", type=int, default=2, help="timed calls per trainer")
    ap.add_argument("--methods", default=None, help="comma list (default: all three)")
    ap.add_argument("--combiners", default=None, help="comma list (default: l_mmse,mr)")
    args = ap.parse_args(argv)

    t_start = time.perf_counter()
    info = machine_info()
    info["uptime_start"] = _uptime()
    print(info["uptime_start"], flush=True)
    env_cfg, budget, paper = canonical()
    if args.quick:
        batches, n_drops, repeats, train_repeats = [1, 4], 2, 2, 1
        methods, combiners, train_n_envs, heavy = ["fl_ctce"], ["mr"], 2, False
    else:
        batches, n_drops, repeats = [1, 64], 8, args.repeats
        train_repeats, heavy = args.train_repeats, True
        methods, combiners, train_n_envs = list(METHODS), list(COMBINERS), None
    if args.methods:
        methods = args.methods.split(",")
    if args.combiners:
        combiners = args.combiners.split(",")
    setup = dict(
        quick=args.quick,
        batches=batches,
        n_drops=n_drops,
        repeats=repeats,
        train_repeats=train_repeats,
        train_n_envs=train_n_envs or budget[METHODS[0]]["n_envs"],
        methods=methods,
        combiners=combiners,
        env=env_cfg,
        bs_array=list(env_cfg["bs_array"]),
        ue_array=list(env_cfg["ue_array"]),
        n_real=env_cfg["n_realizations"],
        se_tolerance=[SE_ATOL, SE_RTOL],
    )
    res = {}
    res["se_parity"] = se_parity(env_cfg)
    print(f"SE parity: {res['se_parity']}", flush=True)
    res["channel_parity"] = channel_parity(
        env_cfg, n=256 if args.quick else 1024, n_drops=32 if args.quick else 256
    )
    print(f"channel parity: {res['channel_parity']}", flush=True)
    res["ops"], res["parts"] = time_drop_ops(env_cfg, batches, n_drops, repeats, heavy)
    res["training"], res["env_alone"] = [], {}
    for comb in combiners:
        e = time_env_alone(
            env_cfg, comb, setup["train_n_envs"], budget[METHODS[0]]["n_steps"], train_repeats
        )
        res["env_alone"][comb] = e
        print(
            f"env alone {comb}: {e['s_per_2000_episodes']:.2f} s / 2000 episodes (runs "
            f"{', '.join(f'{x:.2f}' for x in e['runs_s'])} s, compile {e['compile_s']:.1f} s)",
            flush=True,
        )
        for meth in methods:
            r = time_training(env_cfg, budget, comb, meth, train_repeats, n_envs=train_n_envs)
            r["paper_s"] = paper.get(comb, {}).get(meth)
            r["env_alone_s"] = e["s_per_2000_episodes"]
            res["training"].append(r)
            print(
                f"train {comb} {meth}: {r['s_per_2000_episodes']:.2f} s / 2000 episodes (runs "
                f"{', '.join(f'{x:.2f}' for x in r['runs_s'])} s, compile {r['compile_s']:.1f} "
                f"s, load {r['load1']:.1f})",
                flush=True,
            )
    head, reading, met = analyse(res, setup)
    res["headline"], res["target_met"] = head, met
    res["reading"] = reading + training_reading(res, setup)
    for line in head:
        print(line)
    info["uptime_end"] = _uptime()
    print(info["uptime_end"], flush=True)
    info["max_rss_gib"] = peak_rss_gib()
    if args.quick:
        default = os.path.join(tempfile.gettempdir(), "RESULTS_xl_quick.md")
    else:
        default = os.path.join(ROOT, "bench", "RESULTS_xl.md")
    out = args.out or default
    wall = time.perf_counter() - t_start
    write_report(out, info, setup, res, wall)
    js = write_json(out, dict(machine=info, setup=setup, results=res, wall_s=wall))
    print(f"wrote {out} and {js} ({wall:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Benchmark: all uplink and downlink SEs of one setup, JAX vs a vectorised NumPy reference.

Usage (from the repository root)::

    python bench/bench_kernels.py [--quick] [--out bench/RESULTS.md]

What is timed: ``cfmimo_jax.se.all_se`` (jitted, float32 by default) against
``bench.numpy_ref.all_se`` (complex128 and complex64) for one setup of the book's canonical
scenario (L=100 APs, N=4, K=40 UEs, tau_p=10, tau_c=200, ASD 15 deg, p=100 mW, fractional
downlink power with 200 mW per AP), 1000 Monte-Carlo realizations, on the same setup and in the
same process; then the scaling in L, K and N with 200 realizations.

Cores: NumPy (OpenBLAS) and XLA use all cores of the machine. XLA's CPU backend runs one
program on one device with a partly parallel thread pool (about 1.7 of 2 cores busy here), so
the script exposes one host device per core
(``XLA_FLAGS=--xla_force_host_platform_device_count=<cores>``, set before jax is imported) and
times ``all_se(..., devices=<cores>)``, which splits the Monte-Carlo chunks over the devices
(``jax.shard_map``; same realizations, same numbers). The one-device time is reported next to it;
``--devices 1`` makes one device the main measurement.

BLAS environment: some machines export ``OPENBLAS_CORETYPE`` / ``OPENBLAS_L2_SIZE`` (pinning
OpenBLAS to an older kernel set). For a fair reference the script re-executes itself once with
those two variables removed (equivalent to
``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/bench_kernels.py``); pass
``--keep-blas-env`` to keep them. NumPy (OpenBLAS) and XLA use all cores of the machine.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._common import (  # noqa: E402
    BLAS_OVERRIDES,
    blas_env_removed,
    cpu_line,
    openblas_info,
    reexec_without_blas_overrides,
    write_markdown,
)

if __name__ == "__main__":
    reexec_without_blas_overrides(__file__)
    # every core for NumPy's OpenBLAS (its default too; made explicit). OMP_NUM_THREADS and
    # XLA's own thread pool are left at their defaults.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(os.cpu_count() or 1))
    # one XLA host device per core (see the module docstring); a user's own count is kept
    from cfmimo_jax.host_devices import expose_host_devices

    expose_host_devices(os.cpu_count() or 1)

import argparse  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from bench import numpy_ref  # noqa: E402
from cfmimo_jax.se import DOWNLINK_SCHEMES, UPLINK_SCHEMES  # noqa: E402

ASD = 15 * np.pi / 180
P_UL = 100.0
RHO_MAX = 200.0
UL_KEYS = UPLINK_SCHEMES  # the scheme keys compared (no "mr" aliases)
DL_KEYS = DOWNLINK_SCHEMES
STATIC_CANDIDATES = (
    "tau_p",
    "tau_c",
    "n_realizations",
    "n",
    "genie",
    "chunk",
    "chunk_size",
    "max_serving",
    "devices",
)
DEVICES = None  # devices= of all_se for every JAX timing (main() sets it)


# --------------------------------------------------------------------------------------------
# machine description


def _cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load():
    try:
        return "/".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def _code_version():
    """Git commit of the checkout and whether cfmimo_jax/ differs from it."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "cfmimo_jax"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "unknown"
    if not head:
        return "unknown (not a git checkout)"
    return f"{head}" + (" (cfmimo_jax/ modified)" if dirty else " (cfmimo_jax/ clean)")


def machine_info():
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
        "jax": jax.__version__,
        "jax_devices": ", ".join(str(d) for d in jax.devices()),
        "blas": openblas_info(),
        "load_start": _load(),
        "code": _code_version(),
        "blas_env_removed": blas_env_removed(),
        "kept_blas_env": ", ".join(
            f"{v}={os.environ[v]}" for v in BLAS_OVERRIDES if v in os.environ
        ),
    }


# --------------------------------------------------------------------------------------------
# setup and calls


def make_setup(seed, L, K, N, tau_p):
    """Canonical setup from ``cfmimo_jax.setup.generate_setup`` plus fractional downlink powers."""
    from cfmimo_jax.power import fractional_downlink
    from cfmimo_jax.setup import generate_setup

    s = generate_setup(jax.random.PRNGKey(seed), L, K, N, tau_p, ASD, ASD)
    gain = 10.0 ** (s.gain_db / 10.0)
    rho = fractional_downlink(gain, s.D, RHO_MAX)
    return {
        "R": s.R,
        "pilot": s.pilot,
        "D": s.D,
        "rho": rho,
        "p": jnp.full((K,), P_UL, dtype=s.gain_db.dtype),
        "tau_p": tau_p,
    }


def to_numpy(setup):
    return {k: (np.asarray(v) if hasattr(v, "shape") else v) for k, v in setup.items()}


def jax_all_se():
    from cfmimo_jax import se

    return se.all_se


def _bind(fn, values):
    """Split the arguments of ``fn`` into positional dynamic ones and static keyword ones."""
    dyn, static = [], {}
    for name, par in inspect.signature(fn).parameters.items():
        if name in values:
            if name in STATIC_CANDIDATES:
                static[name] = values[name]
            else:
                dyn.append(values[name])
        elif par.default is inspect.Parameter.empty:
            raise TypeError(f"cfmimo_jax.se.all_se: unknown required parameter {name!r}")
        elif name in STATIC_CANDIDATES:
            static[name] = par.default
    return dyn, static


def _values(key, setup, n, tau_c, devices):
    return {
        "key": key,
        "R": setup["R"],
        "pilot": setup["pilot"],
        "D": setup["D"],
        "p": setup["p"],
        "rho": setup["rho"],
        "tau_p": setup["tau_p"],
        "tau_c": tau_c,
        "n_realizations": n,
        "n": n,
        "genie": False,
        # static caps on |M_k| from the concrete setup (all_se computes the same ones itself when
        # called un-jitted; under jax.jit D is traced, so they are passed like tau_p)
        "max_serving": _max_serving(setup["D"]),
        "devices": devices,
    }


def _max_serving(D):
    from cfmimo_jax import processing

    caps = getattr(processing, "serving_caps", None) or getattr(processing, "serving_cap", None)
    return caps(D) if caps is not None else None


def _split_out(out):
    if "uplink" in out:
        return out["uplink"], out["downlink"]
    up = {k[3:]: v for k, v in out.items() if k.startswith("ul_")}
    dl = {k[3:]: v for k, v in out.items() if k.startswith("dl_")}
    return up, dl


def time_jax(setup, n, tau_c, repeats, devices, seed=0):
    """AOT compile time and steady-state times of the jitted ``all_se`` with ``devices=``."""
    fn = jax_all_se()
    key = jax.random.PRNGKey(seed)
    dyn, static = _bind(fn, _values(key, setup, n, tau_c, devices))
    jitted = jax.jit(fn, static_argnames=tuple(static))
    t0 = time.perf_counter()
    compiled = jitted.lower(*dyn, **static).compile()
    t_compile = time.perf_counter() - t0
    jax.block_until_ready(compiled(*dyn))  # first execution (not counted)

    def rerun(reps, offset):
        """``(median, times)`` of ``reps`` timed calls with keys ``fold_in(key, offset + r)``;
        also returns the last call's output."""
        ts, res = [], None
        for r in range(reps):
            dyn[0] = jax.random.fold_in(key, offset + r)
            t0 = time.perf_counter()
            res = jax.block_until_ready(compiled(*dyn))
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts), ts, res

    _, times, out = rerun(repeats, 1)
    up, dl = _split_out(out)

    return {
        "compile_s": t_compile,
        "times": times,
        "median_s": statistics.median(times),
        "rerun": rerun,
        "uplink": {k: np.asarray(v, dtype=np.float64) for k, v in up.items()},
        "downlink": {k: np.asarray(v, dtype=np.float64) for k, v in dl.items()},
    }


def _numpy_call(setup, n, tau_c, dtype, seed):
    s = setup
    return numpy_ref.all_se(
        np.random.default_rng(seed),
        s["R"],
        s["pilot"],
        s["D"],
        s["p"],
        s["rho"],
        s["tau_p"],
        tau_c,
        n,
        dtype=dtype,
    )


def time_numpy(setup, n, tau_c, dtype, max_repeats=3, fast_s=20.0, seed=0):
    """One run; if it is fast (< ``fast_s``), ``max_repeats`` runs and the median."""
    times = []
    out = None
    for r in range(max_repeats):
        t0 = time.perf_counter()
        res = _numpy_call(setup, n, tau_c, dtype, seed + r)
        times.append(time.perf_counter() - t0)
        out = out or res
        if times[0] > fast_s:
            break
    return {"times": times, "median_s": statistics.median(times), **out}


def estimate_numpy(setup, n, tau_c, dtype, n_probe):
    """Time ``n_probe`` realizations and extrapolate linearly to ``n``."""
    t0 = time.perf_counter()
    _numpy_call(setup, n_probe, tau_c, dtype, 0)
    return (time.perf_counter() - t0) * n / n_probe


# --------------------------------------------------------------------------------------------
# identical-realization check in float64 (runs in a subprocess: it needs jax_enable_x64)


def x64_check_worker(configs, n):
    jax.config.update("jax_enable_x64", True)
    from cfmimo_jax import estimation

    results = []
    for L, K, N, tau_p in configs:
        setup = make_setup(7, L, K, N, tau_p)
        s = to_numpy(setup)
        tau_c = 200
        key = jax.random.PRNGKey(11)
        k_h, k_n = jax.random.split(key)
        H = estimation.sample_channels(k_h, setup["R"], n)
        Hhat = estimation.mmse_estimates(k_n, H, setup["R"], setup["pilot"], setup["p"], tau_p)
        Bj, Cj = estimation.estimation_statistics(setup["R"], setup["pilot"], setup["p"], tau_p)
        fn = jax_all_se()
        dyn, static = _bind(fn, _values(key, setup, n, tau_c, DEVICES))
        up_j, dl_j = _split_out(jax.jit(fn, static_argnames=tuple(static))(*dyn, **static))
        B, C = numpy_ref.estimation_statistics(s["R"], s["pilot"], s["p"], tau_p)
        ref = numpy_ref.all_se_from_realizations(
            np.asarray(H),
            np.asarray(Hhat),
            C,
            s["D"],
            s["p"],
            s["rho"],
            tau_p,
            tau_c,
        )
        rel = {}
        for d, dj in (("uplink", up_j), ("downlink", dl_j)):
            for k in ref[d]:
                a = np.asarray(dj[k], dtype=np.float64)
                b = ref[d][k]
                rel[f"{d}/{k}"] = float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12)))
        scale = np.max(np.abs(B))
        rel["B"] = float(np.max(np.abs(np.asarray(Bj) - B)) / scale)
        rel["C"] = float(np.max(np.abs(np.asarray(Cj) - C)) / np.max(np.abs(C)))
        results.append({"L": L, "K": K, "N": N, "tau_p": tau_p, "n": n, "max_rel_diff": rel})
    print("X64RESULT " + json.dumps(results))


def run_x64_check(configs, n):
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--x64-check-worker",
        json.dumps({"configs": configs, "n": n, "devices": DEVICES}),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("X64RESULT "):
            return json.loads(line[len("X64RESULT ") :])
    raise RuntimeError(f"x64 check failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


# --------------------------------------------------------------------------------------------
# report


def _fmt(x, digits=3):
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    return f"{x:.{digits}g}" if abs(x) < 1000 else f"{x:.0f}"


def write_report(path, info, cfg, canon, agree, scaling, x64, wall):
    lines = []
    w = lines.append
    w("# Kernel benchmark: all SEs of one setup, JAX vs vectorised NumPy")
    w("")
    w(f"Generated by `python bench/bench_kernels.py{' --quick' if cfg['quick'] else ''}` ")
    w(f"(total wall time {wall:.0f} s).")
    w("")
    w(
        "The other benchmarks: [RESULTS_envs.md](RESULTS_envs.md) (AP-selection environment "
        "steps against a NumPy loop, with the ceiling of this CPU), "
        "[RESULTS_training.md](RESULTS_training.md) (MAPPO-Lagrangian training against "
        "PyTorch), [RESULTS_latency.md](RESULTS_latency.md) (per-decision policy latency), "
        "[RESULTS_offpolicy.md](RESULTS_offpolicy.md) (MADDPG training on power_control "
        "against PyTorch)."
    )
    w("")
    w(
        "XL-MIMO ([XL-FUZZY]): [RESULTS_xl.md](RESULTS_xl.md) (channel generation and the "
        "log-det SE per drop, MR and L-MMSE, against vectorised NumPy, with the bound of each; "
        "training time per 2000 episodes next to the paper's Table I)."
    )
    w("")
    w(
        "Mobile APs ([MOBILE-AP]): [RESULTS_mobile_ap.md](RESULTS_mobile_ap.md) (UAV-AP "
        "environment steps against vectorised NumPy; MADDPG, SF-MADDPG and PE-MADDPG training "
        "against PyTorch MADDPG)."
    )
    w("")
    w(
        "AP cooperation ([AP-COOP]): [RESULTS_ap_cooperation.md](RESULTS_ap_cooperation.md) "
        "(environment steps against vectorised NumPy; independent double DQN training against "
        "PyTorch)."
    )
    w("")
    w("## What is measured")
    w("")
    w(
        f"One call computes **all uplink and downlink SEs of one setup with {cfg['n']} "
        "Monte-Carlo realizations**: channel sampling, MMSE estimation, the centralized "
        "combiners MMSE / P-MMSE / P-RZF / MR, the distributed L-MMSE / LP-MMSE / MR with "
        "a = 1 and optimal LSFD, and the downlink hardening bound for the six precoders "
        "(definitions: `docs/kernels.md`)."
    )
    w("")
    w(
        f"- Setting: L={cfg['L']}, N={cfg['N']}, K={cfg['K']}, tau_p={cfg['tau_p']}, "
        "tau_c=200, ASD 15 deg (azimuth and elevation), p=100 mW, fractional downlink power "
        "(`cfmimo_jax.power.fractional_downlink`, 200 mW per AP); setup from "
        "`cfmimo_jax.setup.generate_setup` (seed 0), converted to NumPy for the reference."
    )
    w(
        "- JAX: `jax.jit(cfmimo_jax.se.all_se)` in float32/complex64 (the default), with the "
        "static `max_serving` caps (`cfmimo_jax.processing.serving_caps`: the UEs sorted by "
        "|M_k| in four groups, each group's largest |M_k| rounded up to a multiple of 4) taken "
        "from the setup's `D` as `all_se` does itself when called un-jitted; compile "
        "time is the ahead-of-time `lower().compile()`; steady state is the median of "
        f"{cfg['jax_repeats']} calls with fresh keys after one warm-up call, with "
        "`block_until_ready`. "
        + (
            f"Main measurement with `devices={cfg['devices']}` (one XLA host device per core, "
            "`XLA_FLAGS=--xla_force_host_platform_device_count`), one device next to it."
            if cfg["devices"]
            else "One device."
        )
    )
    w(
        "- NumPy reference: `bench/numpy_ref.py` `all_se` (vectorised over realizations with "
        "batched `matmul` / `np.linalg.solve`; a Python loop over UEs for the centralized "
        "combiners, each UE's system built directly over its |M_k| N serving antennas as in "
        "the book's code; batched per-AP N x N solves for the distributed ones), in "
        "complex128 and complex64, median of up to 3 runs (1 run when a run takes > 20 s)."
    )
    w(
        "- The NumPy time includes channel sampling and estimation, as the JAX time does; "
        "both run in the same process on the same setup."
    )
    w("")
    w("## Machine")
    w("")
    w(cpu_line(info))
    w(f"- Python {info['python']}, NumPy {info['numpy']}, JAX {info['jax']}")
    w(f"- Code: git commit {info['code']}")
    w(f"- JAX devices: {info['jax_devices']}")
    w(f"- NumPy BLAS: {info['blas']}")
    w(
        f"- Load average (1, 5, 15 min) at start {info['load_start']}, at end {_load()}; "
        "other jobs on a shared machine inflate every time here (both implementations alike)."
    )
    if info["blas_env_removed"]:
        w(
            f"- This machine exports `{info['blas_env_removed']}`; the benchmark re-executed "
            "itself without `OPENBLAS_CORETYPE` and `OPENBLAS_L2_SIZE` (equivalent to "
            "`env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/bench_kernels.py`), "
            "so OpenBLAS picks the kernels for the actual CPU."
        )
    elif info["kept_blas_env"]:
        w(f"- OpenBLAS overrides kept (`--keep-blas-env`): `{info['kept_blas_env']}`.")
    w("")
    w(f"## Result ({cfg['n']} realizations)")
    w("")
    w("| implementation | precision | time (s) | NumPy c128 / this | runs (s) |")
    w("|---|---|---|---|---|")
    jt = canon["jax"]["median_s"]
    n128 = canon["np128"]["median_s"]
    dev = f"`devices={cfg['devices']}`" if cfg["devices"] else "one device"
    rows = [(f"JAX `all_se` (jit), {dev}", "float32", canon["jax"])]
    if canon["jax1"] is not None:
        rows.append(("JAX `all_se` (jit), one device", "float32", canon["jax1"]))
    rows += [
        ("NumPy reference", "complex128", canon["np128"]),
        ("NumPy reference", "complex64", canon["np64"]),
    ]
    for label, prec, r in rows:
        ratio = _fmt(n128 / r["median_s"])
        w(
            f"| {label} | {prec} | {_fmt(r['median_s'])} | "
            f"{'**' + ratio + '**' if r is canon['jax'] else ratio} | "
            f"{', '.join(_fmt(t) for t in r['times'])} |"
        )
    w("")
    w(
        f"NumPy complex64 / JAX ({dev}): {_fmt(canon['np64']['median_s'] / jt)}. JAX devices "
        f"here are XLA host devices, one per core; {dev} splits the {cfg['n']} "
        "realizations' chunks over them (`jax.shard_map`, Monte-Carlo sums added with "
        "`psum`; the same realizations as one device). OpenBLAS threads NumPy over the same "
        "cores."
    )
    w("")
    pr = canon["pair_ratio"]
    w(
        f"**Paired repeats** (JAX float32 vs NumPy complex128, timed back to back so both see "
        f"the same load from other jobs; pair 0 is the table above, each later pair the median "
        f"of {cfg['pair_jax_reps']} JAX calls with fresh keys followed by one NumPy run with a "
        f"fresh seed): median ratio **{_fmt(pr)}** (target >= 10x: "
        f"{'met' if pr >= 10 else 'NOT met'})."
    )
    w("")
    w("| pair | JAX (s) | NumPy complex128 (s) | NumPy / JAX | load avg after |")
    w("|---|---|---|---|---|")
    for i, (a, b, ld) in enumerate(canon["pairs"]):
        w(f"| {i} | {_fmt(a)} | {_fmt(b)} | {_fmt(b / a)} | {ld} |")
    w("")
    w(f"JAX compile time (AOT lower + compile): {_fmt(canon['jax']['compile_s'])} s.")
    w(
        f"Mean number of serving APs per UE |M_k| = {canon['mean_Mk']:.1f} "
        f"(centralized system dimension {canon['mean_Mk'] * cfg['N']:.0f} vs L N = "
        f"{cfg['L'] * cfg['N']})."
    )
    w("")
    w("### Agreement (different random numbers, so within Monte-Carlo error)")
    w("")
    w(
        "Median over UEs of the per-UE SE (bit/s/Hz), JAX float32 vs NumPy complex128, "
        f"each with its own {cfg['n']} realizations; flagged when the relative difference "
        "exceeds 3 %."
    )
    w("")
    w("| link | scheme | JAX | NumPy | rel. diff |")
    w("|---|---|---|---|---|")
    for row in agree:
        flag = " (!)" if abs(row["rel"]) > 0.03 else ""
        w(
            f"| {row['link']} | {row['scheme']} | {row['jax']:.4f} | {row['numpy']:.4f} | "
            f"{100 * row['rel']:+.2f} %{flag} |"
        )
    w("")
    if x64:
        w("### Identical realizations, float64")
        w("")
        w(
            "`cfmimo_jax.se.all_se` with `jax_enable_x64` vs `numpy_ref.all_se_from_realizations` "
            "fed the same `H`, `Hhat` (`cfmimo_jax.estimation.sample_channels` / "
            "`mmse_estimates` with `k_h, k_n = jax.random.split(key)`): largest relative "
            "difference per key over the UEs (B, C: relative to their largest entry)."
        )
        w("")
        keys = list(x64[0]["max_rel_diff"])
        heads = [f"L={c['L']} K={c['K']} N={c['N']} n={c['n']}" for c in x64]
        w("| quantity | " + " | ".join(heads) + " |")
        w("|---|" + "---|" * len(x64))
        for k in keys:
            w(f"| {k} | " + " | ".join(f"{c['max_rel_diff'][k]:.1e}" for c in x64) + " |")
        w("")
    w(f"## Scaling ({cfg['n_scaling']} realizations)")
    w("")
    w(
        f"JAX: float32, `devices={cfg['devices']}`, compile and steady-state median of "
        f"{min(3, cfg['jax_repeats'])} calls. NumPy: complex128, one run when the "
        f"extrapolation from {cfg['n_probe']} realizations predicts <= "
        f"{cfg['np_limit']:.0f} s, otherwise that extrapolation (marked *est.*)."
    )
    w("")
    w(
        "| L | K | N | tau_p | mean \\|M_k\\| | JAX compile (s) | JAX (s) | NumPy c128 (s) "
        "| NumPy / JAX | load avg |"
    )
    w("|---|---|---|---|---|---|---|---|---|---|")
    for r in scaling:
        npt = r["np_s"]
        nps = _fmt(npt) + (" *est.*" if r["np_est"] else "")
        w(
            f"| {r['L']} | {r['K']} | {r['N']} | {r['tau_p']} | {r['mean_Mk']:.1f} | "
            f"{_fmt(r['compile_s'])} | {_fmt(r['jax_s'])} | {nps} | {_fmt(npt / r['jax_s'])} | "
            f"{r['load']} |"
        )
    w("")
    write_markdown(path, lines)


# --------------------------------------------------------------------------------------------


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke test, < 1 min)")
    ap.add_argument("--out", default=None, help="markdown report (default: bench/RESULTS.md)")
    ap.add_argument("--keep-blas-env", action="store_true", help="keep OPENBLAS_CORETYPE etc.")
    ap.add_argument("--no-scaling", action="store_true")
    ap.add_argument("--no-x64-check", action="store_true")
    ap.add_argument(
        "--devices",
        type=int,
        default=None,
        help="devices= of all_se for the JAX timings (default: every JAX device, one per core)",
    )
    ap.add_argument("--x64-check-worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    global DEVICES
    n_dev = len(jax.devices()) if args.devices is None else args.devices
    DEVICES = n_dev if n_dev > 1 else None

    if args.x64_check_worker is not None:
        spec = json.loads(args.x64_check_worker)
        DEVICES = spec["devices"]
        x64_check_worker([tuple(c) for c in spec["configs"]], spec["n"])
        return

    if args.quick:
        cfg = dict(L=16, K=8, N=2, tau_p=4, n=100, n_scaling=50, jax_repeats=3, n_probe=10)
        cfg.update(pairs=2, pair_jax_reps=2)
        grid = [(8, 8, 2, 4), (16, 8, 2, 4), (16, 4, 2, 4), (16, 8, 1, 4)]
        x64_cfgs, x64_n = [(12, 6, 2, 3)], 50
        out = args.out or os.path.join(tempfile.gettempdir(), "cfmimo_bench_quick.md")
    else:
        cfg = dict(L=100, K=40, N=4, tau_p=10, n=1000, n_scaling=200, jax_repeats=5, n_probe=20)
        cfg.update(pairs=3, pair_jax_reps=3)
        grid = []
        for L in (25, 50, 100, 200):
            grid.append((L, 40, 4, 10))
        for K in (10, 20, 40, 80):
            grid.append((100, K, 4, min(10, K)))
        for N in (1, 2, 4, 8):
            grid.append((100, 40, N, 10))
        x64_cfgs, x64_n = [(24, 8, 2, 4), (100, 40, 4, 10)], 100
        out = args.out or os.path.join(os.path.dirname(__file__), "RESULTS.md")
    cfg["quick"] = args.quick
    cfg["devices"] = DEVICES
    cfg["np_limit"] = 60.0
    tau_c = 200
    t_start = time.perf_counter()

    info = machine_info()
    print(json.dumps(info, indent=1), flush=True)

    # ---- canonical setting ----
    setup = make_setup(0, cfg["L"], cfg["K"], cfg["N"], cfg["tau_p"])
    s_np = to_numpy(setup)
    canon = {"mean_Mk": float(s_np["D"].sum(axis=0).mean())}
    print(f"setup: L={cfg['L']} K={cfg['K']} N={cfg['N']} mean|M_k|={canon['mean_Mk']:.1f}")
    canon["jax"] = time_jax(setup, cfg["n"], tau_c, cfg["jax_repeats"], DEVICES)
    print(
        f"JAX: compile {canon['jax']['compile_s']:.2f} s, steady {canon['jax']['median_s']:.3f} s "
        f"{[round(t, 3) for t in canon['jax']['times']]}",
        flush=True,
    )
    canon["jax1"] = None
    if DEVICES:
        canon["jax1"] = time_jax(setup, cfg["n"], tau_c, cfg["jax_repeats"], None)
        print(
            f"JAX one device: steady {canon['jax1']['median_s']:.3f} s "
            f"{[round(t, 3) for t in canon['jax1']['times']]}",
            flush=True,
        )
    for name, dt in (("np128", np.complex128), ("np64", np.complex64)):
        canon[name] = time_numpy(s_np, cfg["n"], tau_c, dt)
        r = canon[name]
        print(
            f"NumPy {np.dtype(dt).name}: {r['median_s']:.2f} s {[round(t, 2) for t in r['times']]}"
            f" ratio {r['median_s'] / canon['jax']['median_s']:.1f}",
            flush=True,
        )

    # ---- paired repeats: JAX and NumPy complex128 timed back to back, alternately ----
    # On a shared machine the load from other jobs changes over minutes; pairing each NumPy run
    # with JAX calls made right before it lets both see the same load. Pair 0 is the
    # measurement above (JAX first, then the first NumPy complex128 run).
    pairs = [(canon["jax"]["median_s"], canon["np128"]["times"][0], _load())]
    for i in range(1, cfg["pairs"]):
        tj, _, _ = canon["jax"]["rerun"](cfg["pair_jax_reps"], 1000 * i)
        tn = time_numpy(s_np, cfg["n"], tau_c, np.complex128, max_repeats=1, seed=1000 * i)
        pairs.append((tj, tn["median_s"], _load()))
        print(
            f"pair {i}: JAX {tj:.3f} s, NumPy complex128 {tn['median_s']:.2f} s, "
            f"ratio {tn['median_s'] / tj:.2f}",
            flush=True,
        )
    canon["pairs"] = pairs
    canon["pair_ratio"] = statistics.median(b / a for a, b, _ in pairs)
    print(f"median paired ratio {canon['pair_ratio']:.2f}", flush=True)

    agree = []
    for link, keys in (("uplink", UL_KEYS), ("downlink", DL_KEYS)):
        for k in keys:
            a = float(np.median(canon["jax"][link][k]))
            b = float(np.median(canon["np128"][link][k]))
            agree.append({"link": link, "scheme": k, "jax": a, "numpy": b, "rel": a / b - 1})
            flag = "  <-- > 3 %" if abs(a / b - 1) > 0.03 else ""
            rel = 100 * (a / b - 1)
            print(f"  {link:8s} {k:13s} JAX {a:.4f}  NumPy {b:.4f}  {rel:+.2f} %{flag}")

    # ---- float64, identical realizations ----
    x64 = None
    if not args.no_x64_check:
        x64 = run_x64_check(x64_cfgs, x64_n)
        for c in x64:
            worst = max(c["max_rel_diff"].items(), key=lambda kv: kv[1])
            print(f"x64 check L={c['L']} K={c['K']} N={c['N']}: worst {worst}", flush=True)
            print("  ", {k: f"{v:.1e}" for k, v in c["max_rel_diff"].items()})

    # ---- scaling ----
    scaling = []
    cache = {}
    if not args.no_scaling:
        for L, K, N, tau_p in grid:
            if (L, K, N, tau_p) in cache:
                scaling.append(cache[(L, K, N, tau_p)])
                continue
            st = make_setup(0, L, K, N, tau_p)
            snp = to_numpy(st)
            tj = time_jax(st, cfg["n_scaling"], tau_c, min(3, cfg["jax_repeats"]), DEVICES)
            est = estimate_numpy(snp, cfg["n_scaling"], tau_c, np.complex128, cfg["n_probe"])
            if est <= cfg["np_limit"]:
                tn = time_numpy(snp, cfg["n_scaling"], tau_c, np.complex128, max_repeats=1)
                np_s, np_est = tn["median_s"], False
            else:
                np_s, np_est = est, True
            row = {
                "L": L,
                "K": K,
                "N": N,
                "tau_p": tau_p,
                "mean_Mk": float(snp["D"].sum(axis=0).mean()),
                "compile_s": tj["compile_s"],
                "jax_s": tj["median_s"],
                "np_s": np_s,
                "np_est": np_est,
                "load": _load(),
            }
            cache[(L, K, N, tau_p)] = row
            scaling.append(row)
            print(
                f"scaling L={L} K={K} N={N} tau_p={tau_p}: JAX compile {row['compile_s']:.1f} s, "
                f"run {row['jax_s']:.3f} s; NumPy {np_s:.2f} s{' (est.)' if np_est else ''}; "
                f"ratio {np_s / row['jax_s']:.1f}",
                flush=True,
            )

    wall = time.perf_counter() - t_start
    write_report(out, info, cfg, canon, agree, scaling, x64, wall)
    print(f"wrote {out} ({wall:.0f} s)")


if __name__ == "__main__":
    main()

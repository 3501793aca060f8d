"""``cfmimo reproduce mobile-ap``: mobile cell-free massive MIMO with UAV APs ([MOBILE-AP]).

Liu et al., "Mobile Cell-Free Massive MIMO with Multi-Agent Reinforcement Learning: A Scalable
Framework", section V (Figs. 5-14). For every architecture (``arch``: ``joint`` = the paper's
joint PI + PE architecture, moves + powers + antenna weights; ``move`` = its single PI
architecture, mobility only with fractional power: the scenario's ``env.control``), every
method and every seed the command runs one ``cfmimo train`` of the ``mobile_ap`` scenario into
``OUT/<arch>/<method>/seed<k>/`` (runs whose ``summary.json`` holds the same configuration are
reused: an interrupted sweep continues where it stopped). Each run ends with the learned
policy (greedy) and the scenario's heuristics evaluated on the same held-out drops (the
evaluation key of the seed, which no training run uses: the same drops for every method and
both architectures of a seed, so improvements are paired seed by seed).

Methods (``METHODS``: name -> (algorithm, fixed trainer settings, env overrides)):
``maddpg``; ``sf_maddpg`` (hyper permutation actor + GNN communication + directional
decoupling) and its ablations ``pe_maddpg`` (permutation only), ``co_maddpg`` (communication
only), ``airmn`` and ``liir`` (credit assignment only); ``mdgnn_1d`` / ``mdgnn_2d`` /
``mdgnn_3d`` (the centralised multidimensional GNN with static APs, ``trainer.dims``; not run
in the ``move`` architecture, which has no power action for it). Heuristics:
``static_fractional`` (the paper's "Fractional"), ``static_equal`` (joint only) and
``gradient_oracle`` (beyond the paper: greedy one-slot Adam on moves, powers and weights
through the differentiable SE). Budget per method: the embedded default
``cfmimo_cli/defaults/reproduce_mobile_ap_canonical.yaml`` (``configs/mobile_ap_maddpg.yaml``'s
trainer for every MARL method: 16 environments x 20 steps x 200 updates = 3200 episodes of 20
slots; MDGNN its module's defaults).

Outputs:

* ``comparison.csv`` / ``.json`` / ``.md``: per architecture and policy the mean over seeds and
  95 % Student-t half-width over seeds of the sum SE, minimum SE, penalty, power used (fraction
  of ``M P_ap``) and move (m per slot); each policy's sum-SE improvement in % over ``maddpg``,
  over ``static_fractional`` and over ``gradient_oracle`` (``100 (x_s / ref_s - 1)`` per seed
  ``s``, then mean and interval over seeds);
* ``claims.csv`` (and tables in ``comparison.md``): the paper's claims next to ours, same
  per-seed improvements: SF-MADDPG over MADDPG / AIRMN / Co-MADDPG / Pe-MADDPG / Fractional /
  MDGNN 1D-2D-3D under the joint architecture (+45.97 / +25.29 / +18.79 / +14.41 / +81.63 /
  +21.87 / +25.18 / +31.81 %), and the joint over the single PI architecture per method
  (SF-MADDPG +8.2 %, Pe-MADDPG +15.31 %, AIRMN +15.59 %);
* ``se_cdf.png``: the CDF of the sum SE, one panel per architecture (Figs. 6-7), one curve per
  method (greedy) and heuristic: every evaluation drop and slot (``eval.n_envs x eval.n_steps``
  per run, from each run's ``eval_samples.npz``), pooled over seeds; ``se_cdf_archs.png``: the
  learned methods of both architectures and the static heuristics in one panel (Fig. 8); the
  5th / 50th / 95th percentiles in ``comparison.json`` (``se_cdf``). Runs without the file
  (reused from before it was written) are left out with a printed note;
* ``convergence_return.png`` / ``convergence_sum_se.png`` (Figs. 13-14): the training episode
  return and sum SE per update (from each run's ``metrics.jsonl``) against episodes
  (``env_steps / env.episode_steps``), mean and interval over seeds, one panel per
  architecture; ``convergence.csv`` (and a table in ``comparison.md``): per method the number
  of updates (and episodes) to reach ``convergence.frac`` (95 %) of its rise, the final value
  and how much faster than ``maddpg`` it gets there, ``100 (1 - E_m / E_maddpg)`` with ``E``
  the mean over seeds of the episodes to 95 %, next to the paper's 43.53 % (SF-MADDPG at 1607
  episodes against MADDPG's 2846). Definition (:func:`updates_to_fraction`): the trailing mean
  ``s_u`` of the metric over the last ``convergence.window`` updates; the first update ``u``
  with ``(s_u - s_1) / (s_n - s_1) >= frac`` (``s_n``: the final trailing mean);
* ``sum_se_vs_<name>.png`` and ``grid.csv`` (with ``grid:``, Figs. 9-12): the sum SE against a
  size, one panel per architecture, one line per method and heuristic, mean and interval over
  seeds; runs in ``OUT/grid/<name>/<x>_<value>/<arch>/<method>/seed<k>/``; ``grid.csv`` also
  holds SF-MADDPG's per-seed improvement over each policy at each point (the paper's gaps:
  about 10 % over Pe-/Co-MADDPG against M, 10.01 % -> 14.69 % against K);
* ``trajectories.png`` / ``trajectories.json`` (Fig. 5): for each method of ``trajectories``
  (a learned method, or a heuristic name such as ``gradient_oracle``) and each architecture
  it ran in, the AP positions per slot of one evaluation episode (drop 0 of the first seed's
  held-out drops; the learned policy restored from the run's last checkpoint, greedy) and the
  UEs. A run without checkpoints (e.g. a stand-in) is left out with a printed note.

The grid (empty by default) is a list of figures, each with a ``name`` (for the folders and
``sum_se_vs_<name>.png``), the size ``x`` (one env key), its ``points`` (env overrides, each
setting ``x``; the other keys complete the figure's setting) and optionally ``archs``,
``methods`` and ``seeds`` (default: the sweep's) and ``budget`` (``{method: trainer
overrides}`` over the sweep's ``budget``, e.g. fewer updates for the larger networks). A
reduced grid for a CPU (in a YAML file, e.g. with ``cfmimo reproduce mobile-ap grid.yaml
"methods=[maddpg, sf_maddpg]" "seeds=[0]"``: 4 + 12 runs; or as one ``grid=[...]``
override; the grid of the CPU reproduction: ``configs/reproduce_mobile_ap_grid_cpu.yaml``)::

    grid:
      - name: M                   # Fig. 10 (Fig. 9: archs [move]); the paper's K = 8
        x: n_aps
        archs: [joint]
        methods: [maddpg, sf_maddpg]
        points: [{n_aps: 4, n_ues: 4}, {n_aps: 9, n_ues: 4}]
      - name: N                   # Fig. 11; the paper's M = 16, K = 9
        x: n_antennas
        archs: [joint]
        methods: [maddpg, sf_maddpg]
        points: [{n_antennas: 2, n_aps: 4, n_ues: 4}, {n_antennas: 8, n_aps: 4, n_ues: 4}]
      - name: K                   # Fig. 12; the paper's M = 25
        x: n_ues
        archs: [joint]
        methods: [maddpg, sf_maddpg]
        points: [{n_ues: 2, n_aps: 9}, {n_ues: 6, n_aps: 9}]

The paper fixes K = 8 against M (Figs. 9-10, N = 8), M = 16 and K = 9 against N (Fig. 11),
M = 25 and N = 8 against K (Fig. 12); the swept values are on the figures' axes only, not in
the text, so the points are the user's choice (e.g. ``{name: M, x: n_aps, archs: [move,
joint], points: [{n_aps: 4, n_ues: 8}, {n_aps: 9, n_ues: 8}, {n_aps: 16, n_ues: 8},
{n_aps: 25, n_ues: 8}]}``).
"""

from __future__ import annotations

import csv
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ._sweep import (
    check_keys,
    check_names,
    check_seeds,
    curve_over_seeds,
    eval_config,
    mean_ci,
    prepare_out,
    read_metrics,
    run_or_reuse,
    train_config,
)
from .config import ConfigError
from .train import load_sweep_samples, sample_stats

SCENARIO = "mobile_ap"
ARCHS = ("joint", "move")
ARCH_LABEL = {"joint": "joint PI + PE", "move": "single PI (mobility only)"}
# method -> (algorithm, trainer settings the method fixes, env overrides the method fixes)
METHODS: dict[str, tuple[str, dict, dict]] = {
    "maddpg": ("maddpg", {}, {}),
    "sf_maddpg": ("sf_maddpg", {}, {}),
    "pe_maddpg": ("pe_maddpg", {}, {}),
    "co_maddpg": ("co_maddpg", {}, {}),
    "airmn": ("airmn", {}, {}),
    "liir": ("liir", {}, {}),
    "mdgnn_1d": ("mdgnn", {"dims": 1}, {}),
    "mdgnn_2d": ("mdgnn", {"dims": 2}, {}),
    "mdgnn_3d": ("mdgnn", {"dims": 3}, {}),
}
JOINT_ONLY = ("mdgnn_1d", "mdgnn_2d", "mdgnn_3d")  # power control only: no mobility action
HEURISTICS = ("static_fractional", "static_equal", "gradient_oracle")
METRICS = ("sum_se", "min_se", "penalty", "power_frac", "move_m")
REFS = {"maddpg": "vs_maddpg_pct", "static_fractional": "vs_fractional_pct"}
REFS["gradient_oracle"] = "vs_oracle_pct"
# [MOBILE-AP] section V: SF-MADDPG's sum-SE improvement (%) over each policy, joint architecture
PAPER_CLAIMS = {
    "maddpg": 45.97,
    "airmn": 25.29,
    "co_maddpg": 18.79,
    "pe_maddpg": 14.41,
    "static_fractional": 81.63,
    "mdgnn_1d": 21.87,
    "mdgnn_2d": 25.18,
    "mdgnn_3d": 31.81,
}
# the joint PI + PE architecture over the single PI one, sum SE (%)
PAPER_ARCH_GAIN = {"sf_maddpg": 8.2, "pe_maddpg": 15.31, "airmn": 15.59}
# Fig. 13: convergence points (episodes) and SF-MADDPG's 43.53 % faster convergence
PAPER_CONVERGENCE = {"sf_maddpg": 1607, "maddpg": 2846, "faster_pct": 43.53}
_NAME = re.compile(r"[A-Za-z0-9_-]+$")


def supports(method: str, arch: str) -> bool:
    """Whether ``method`` runs in architecture ``arch`` (MDGNN: joint only)."""
    return arch == "joint" or method not in JOINT_ONLY


def validate(config: dict[str, Any]) -> None:
    """Check a mobile-ap reproduce configuration before any training (``ConfigError`` names the
    key)."""
    from cfmimo_jax import envs

    known = {"seeds", "arch", "methods", "env", "budget", "eval", "convergence"}
    known |= {"trajectories", "grid"}
    for k in config:
        if k not in known:
            raise ConfigError(f"{k}: unknown key (known: {sorted(known)})")
    check_seeds(config["seeds"])
    check_names("arch", config["arch"], ARCHS)
    check_names("methods", config["methods"], METHODS)
    env_keys = envs.default_config(SCENARIO)
    _check_env("env", config["env"], env_keys)
    _check_budget("budget", config["budget"])
    check_keys("eval", config["eval"], ("n_envs", "n_steps", "heuristics"))
    conv = config["convergence"]
    check_keys("convergence", conv, ("metric", "frac", "window"))
    if not isinstance(conv.get("metric"), str) or not conv["metric"]:
        raise ConfigError(f"convergence.metric must be a metrics.jsonl key, got {conv!r}")
    f = conv.get("frac")
    if isinstance(f, bool) or not isinstance(f, int | float) or not 0 < f <= 1:
        raise ConfigError(f"convergence.frac must be a number in (0, 1], got {f!r}")
    w = conv.get("window")
    if isinstance(w, bool) or not isinstance(w, int) or w < 1:
        raise ConfigError(f"convergence.window must be a positive integer, got {w!r}")
    traj = config["trajectories"]
    if not isinstance(traj, list) or len(set(map(str, traj))) != len(traj):
        raise ConfigError(f"trajectories must be a list of distinct names, got {traj!r}")
    for t in traj:
        if t not in METHODS and t not in HEURISTICS:
            raise ConfigError(
                f"trajectories: unknown name {t!r} (methods {list(METHODS)} or heuristics "
                f"{list(HEURISTICS)})"
            )
    grid = config["grid"]
    if not isinstance(grid, list):
        raise ConfigError(f"grid must be a list of {{name, x, points, ...}}, got {grid!r}")
    for i, spec in enumerate(grid):
        known_g = ("name", "x", "points", "archs", "methods", "seeds", "budget")
        check_keys(f"grid[{i}]", spec, known_g)
        _check_grid(f"grid[{i}]", spec.get("name"), spec, env_keys)
        if "seeds" in spec:
            try:
                check_seeds(spec["seeds"])
            except ConfigError as e:
                raise ConfigError(f"grid[{i}].{e}") from None
        if "budget" in spec:
            _check_budget(f"grid[{i}].budget", spec["budget"])
    names = [spec["name"] for spec in grid]
    if len(set(names)) != len(names):
        raise ConfigError(f"grid: names repeated in {names}")


def _check_budget(key: str, budget: Any) -> None:
    """``budget``: ``{method: trainer overrides}``, each key the method's algorithm's and not
    one the method fixes."""
    import algorithms

    check_keys(key, budget, METHODS)
    for m, over in budget.items():
        check_keys(f"{key}.{m}", over, algorithms.default_config(METHODS[m][0]))
        for k in over:
            if k in METHODS[m][1]:
                raise ConfigError(f"{key}.{m}.{k}: fixed by the method ({METHODS[m][1]})")


def _check_env(key: str, over: Any, env_keys) -> None:
    check_keys(key, over, env_keys)
    if "control" in over:
        raise ConfigError(f"{key}.control: set by arch (joint | move), not here")


def _check_grid(key: str, name: Any, spec: Any, env_keys) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"{key}.name: a grid name is letters, digits, '_' or '-', got {name!r}")
    x = spec.get("x")
    if x not in env_keys or x == "control":
        raise ConfigError(f"{key}.x must be a mobile_ap env key (the size), got {x!r}")
    points = spec.get("points")
    if not isinstance(points, list) or not points:
        raise ConfigError(f"{key}.points must be a non-empty list of env overrides")
    for i, p in enumerate(points):
        _check_env(f"{key}.points[{i}]", p, env_keys)
        if x not in p:
            raise ConfigError(f"{key}.points[{i}] must set the size {x!r}")
    values = [p[x] for p in points]
    if len(set(map(str, values))) != len(values):
        raise ConfigError(f"{key}.points: the values of {x!r} repeat ({values})")
    if "archs" in spec:
        check_names(f"{key}.archs", spec["archs"], ARCHS)
    if "methods" in spec:
        check_names(f"{key}.methods", spec["methods"], METHODS)


def run_config(
    config: dict[str, Any],
    arch: str,
    method: str,
    seed: int,
    point: dict | None = None,
    heuristics: bool = True,
    budget: dict | None = None,
) -> dict[str, Any]:
    """The ``cfmimo train`` configuration of one (arch, method, seed), at a grid ``point``
    (env overrides over ``config["env"]``) when given, with a grid figure's ``budget``
    (``{method: trainer overrides}`` over ``config["budget"]``) when given;
    ``heuristics=False``: the run evaluates its learned policy only (``eval.heuristics: []``)."""
    algorithm, fixed, env_fixed = METHODS[method]
    ev = eval_config(config["eval"], heuristics)
    return train_config(
        SCENARIO,
        algorithm,
        seed,
        env=(config["env"], point or {}, env_fixed, {"control": arch}),
        trainer=(config["budget"].get(method, {}), (budget or {}).get(method, {}), fixed),
        eval=ev,
    )


def _grid_dir(g: str, x: str, value) -> str:
    return f"grid/{g}/{x}_{value}"


def sweep_runs(config: dict[str, Any]) -> list[tuple[tuple, str, dict]]:
    """Every run of the sweep: ``(key, relative folder, train config)``; keys ``(arch, method,
    seed)`` for the main comparison and ``(grid name, point index, arch, method, seed)`` for
    the grid."""
    seeds, methods = config["seeds"], config["methods"]

    def first(ms, a):  # every run of a seed evaluates on the same drops: the heuristics once
        return next((m for m in ms if supports(m, a)), None)

    runs = [
        ((a, m, s), f"{a}/{m}/seed{s}", run_config(config, a, m, s, None, m == first(methods, a)))
        for a in config["arch"]
        for m in methods
        if supports(m, a)
        for s in seeds
    ]
    for spec in config["grid"]:
        g = spec["name"]
        for i, p in enumerate(spec["points"]):
            base = _grid_dir(g, spec["x"], p[spec["x"]])
            ms = spec.get("methods", methods)
            runs += [
                (
                    (g, i, a, m, s),
                    f"{base}/{a}/{m}/seed{s}",
                    run_config(config, a, m, s, p, m == first(ms, a), spec.get("budget")),
                )
                for a in spec.get("archs", config["arch"])
                for m in ms
                if supports(m, a)
                for s in spec.get("seeds", seeds)
            ]
    return runs


def reproduce(config: dict[str, Any], out_dir: str | Path, progress: bool = True) -> dict:
    """Run (or reuse) every run of the sweep and write the comparison (module docstring)."""
    validate(config)
    out_dir = prepare_out(config, out_dir)
    runs = sweep_runs(config)
    summaries = run_or_reuse(out_dir, runs, progress)
    result = aggregate(config, summaries)
    result["curves"], result["convergence"] = convergence(config, out_dir, summaries)
    main = {key: rel for key, rel, _ in runs if len(key) == 3}
    samples = load_sweep_samples(out_dir, main)
    result["se_cdf"], pooled = se_cdf(config, summaries, samples)
    result["grid"] = grid_table(config, summaries)
    result["trajectories"] = trajectories(config, out_dir, summaries)
    result["side_m"] = float(runs[0][2]["env"]["side_m"])
    write_outputs(out_dir, result, pooled)
    return result


def _policy_evals(summaries, key_of, methods, seeds) -> dict[str, tuple[str, list[dict]]]:
    """``{policy: (kind, [evaluation of seed s, ...])}``: each method's greedy policy and each
    heuristic (from the first method's runs: every run of a seed evaluates on the same
    drops); ``key_of(method, seed)`` is the summary key."""
    first = summaries[key_of(methods[0], seeds[0])]["evaluation"]
    heuristics = [h for h in first if not h.startswith("learned")]
    out = {
        m: ("learned", [summaries[key_of(m, s)]["evaluation"]["learned (greedy)"] for s in seeds])
        for m in methods
    }
    for h in heuristics:
        out[h] = ("heuristic", [summaries[key_of(methods[0], s)]["evaluation"][h] for s in seeds])
    return out


def gain_pct(x, ref) -> tuple[float, float]:
    """Per-seed improvement ``100 (x_s / ref_s - 1)`` (%), mean and 95 % half-width over seeds."""
    x, ref = np.asarray(x, float), np.asarray(ref, float)
    return mean_ci(100.0 * (x / ref - 1.0))


def _arch_methods(config, arch):
    return [m for m in config["methods"] if supports(m, arch)]


def aggregate(config: dict[str, Any], summaries: dict[tuple, dict]) -> dict:
    """The comparison table per architecture and policy (means, intervals and improvements over
    the references, module docstring), the paper's claims next to ours and the joint over the
    single PI architecture per method."""
    seeds = config["seeds"]
    table, evals = [], {}
    for a in config["arch"]:
        methods = _arch_methods(config, a)
        if not methods:
            continue
        ev = _policy_evals(summaries, lambda m, s, a=a: (a, m, s), methods, seeds)
        evals[a] = ev
        for name, (kind, per) in ev.items():
            row = {"arch": a, "policy": name, "kind": kind, "n_seeds": len(per)}
            for k in METRICS:
                row[k], row[k + "_ci95"] = mean_ci([e[k] for e in per])
            x = [e["sum_se"] for e in per]
            for ref, col in REFS.items():
                if ref in ev:
                    row[col], row[col + "_ci95"] = gain_pct(x, [e["sum_se"] for e in ev[ref][1]])
            row["per_seed_sum_se"] = [float(v) for v in x]
            table.append(row)
    claims = []
    ev = evals.get("joint", {})
    for other, paper in PAPER_CLAIMS.items():
        row = {"claim": f"sf_maddpg over {other} (joint)", "paper_pct": paper}
        row["ours_pct"], row["ours_pct_ci95"] = (
            gain_pct(*([e["sum_se"] for e in ev[p][1]] for p in ("sf_maddpg", other)))
            if "sf_maddpg" in ev and other in ev
            else (None, None)
        )
        claims.append(row)
    arch_gain = []
    if {"joint", "move"} <= set(evals):
        both = [m for m in config["methods"] if m in evals["joint"] and m in evals["move"]]
        for name in both + [h for h in evals["move"] if h not in config["methods"]]:
            if name not in evals["joint"]:
                continue
            j, mv = ([e["sum_se"] for e in evals[a][name][1]] for a in ("joint", "move"))
            row = {"policy": name, "paper_pct": PAPER_ARCH_GAIN.get(name)}
            row["joint_over_move_pct"], row["joint_over_move_pct_ci95"] = gain_pct(j, mv)
            arch_gain.append(row)
            if name in PAPER_ARCH_GAIN:
                claims.append(
                    {
                        "claim": f"{name}: joint over single PI",
                        "paper_pct": PAPER_ARCH_GAIN[name],
                        "ours_pct": row["joint_over_move_pct"],
                        "ours_pct_ci95": row["joint_over_move_pct_ci95"],
                    }
                )
    return {"seeds": seeds, "table": table, "claims": claims, "arch_gain": arch_gain}


def updates_to_fraction(y, frac: float = 0.95, window: int = 10) -> int:
    """The first update (1-based) at which the trailing mean ``s_u = mean(y[u-w+1 .. u])``
    (``w = window``, fewer at the start) has covered ``frac`` of the change from ``s_1 = y_1``
    to the final ``s_n``: ``(s_u - s_1) / (s_n - s_1) >= frac`` (1 when ``s_n = s_1``);
    ``y[n_updates]`` one value per update."""
    y = np.asarray(y, np.float64).ravel()
    if not y.size:
        raise ValueError("y must hold at least one update")
    n = y.size
    c = np.concatenate([[0.0], np.cumsum(y)])
    hi = np.arange(1, n + 1)
    lo = np.maximum(hi - int(window), 0)
    s = (c[hi] - c[lo]) / (hi - lo)
    if s[-1] == s[0]:
        return 1
    prog = (s - s[0]) / (s[-1] - s[0])
    return int(np.argmax(prog >= frac - 1e-12)) + 1


def convergence(config: dict[str, Any], out_dir: Path, summaries) -> tuple[dict, list[dict]]:
    """Training curves and convergence speed from each run's ``metrics.jsonl``.

    Returns ``(curves, rows)``: ``curves[metric][arch][method] = {"episodes", "mean", "ci95"}``
    (``episode_return`` and ``sum_se`` against ``env_steps / env.episode_steps``, mean and
    interval over seeds); ``rows``: per arch and method the updates and episodes to
    ``convergence.frac`` of the rise (:func:`updates_to_fraction` per seed, then mean and
    interval), the final trailing mean, and ``faster_than_maddpg_pct = 100 (1 - E_m /
    E_maddpg)`` (``E``: mean episodes to the fraction)."""
    conv = config["convergence"]
    key, frac, window = conv["metric"], float(conv["frac"]), int(conv["window"])
    curves: dict[str, dict] = {}
    rows = []
    for a in config["arch"]:
        per_arch = []
        for m in _arch_methods(config, a):
            runs = [read_metrics(out_dir / a / m / f"seed{s}") for s in config["seeds"]]
            ep = float(summaries[(a, m, config["seeds"][0])]["config"]["env"]["episode_steps"])
            for k in ("episode_return", "sum_se"):
                c = curve_over_seeds(runs, k, x_scale=ep)
                if c is not None:
                    x, y, h = c
                    curves.setdefault(k, {}).setdefault(a, {})[m] = {
                        "episodes": x.tolist(),
                        "mean": y.tolist(),
                        "ci95": [None if math.isnan(v) else float(v) for v in h],
                    }
            have = [r for r in runs if r and key in r[0]]
            if not have:
                continue
            ups, eps, fin = [], [], []
            for r in have:
                y = [row[key] for row in r]
                u = updates_to_fraction(y, frac, window)
                ups.append(u)
                eps.append(r[u - 1]["env_steps"] / ep)
                fin.append(float(np.mean(y[-window:])))
            row = {"arch": a, "method": m, "metric": key, "n_seeds": len(have)}
            row["updates_to_frac"], row["updates_to_frac_ci95"] = mean_ci(ups)
            row["episodes_to_frac"], row["episodes_to_frac_ci95"] = mean_ci(eps)
            row["final"], row["final_ci95"] = mean_ci(fin)
            row["n_updates"] = min(len(r) for r in have)
            row["paper_episodes"] = PAPER_CONVERGENCE.get(m) if a == "joint" else None
            per_arch.append(row)
        ref = next((r for r in per_arch if r["method"] == "maddpg"), None)
        for row in per_arch:
            row["faster_than_maddpg_pct"] = (
                100.0 * (1.0 - row["episodes_to_frac"] / ref["episodes_to_frac"])
                if ref is not None and ref["episodes_to_frac"] > 0
                else None
            )
            row["paper_faster_pct"] = (
                PAPER_CONVERGENCE["faster_pct"] if row["method"] == "sf_maddpg" else None
            )
        rows += per_arch
    return curves, rows


def se_cdf(config: dict[str, Any], summaries, samples) -> tuple[dict, dict]:
    """The sum SE of every evaluation drop and slot per architecture and policy (each method's
    greedy policy; each heuristic from the first method with samples of the seed: the same
    drops), pooled over the seeds that have samples: ``(stats, pooled)``,
    ``pooled[arch][policy]`` the 1-D samples and ``stats`` their ``sample_stats``."""
    seeds = config["seeds"]
    pooled: dict[str, dict[str, np.ndarray]] = {}
    for a in config["arch"]:
        methods = _arch_methods(config, a)
        if not methods:
            continue
        first = summaries[(a, methods[0], seeds[0])]["evaluation"]
        heuristics = [h for h in first if not h.startswith("learned")]
        parts: dict[str, list] = {}
        for s in seeds:
            for m in methods:
                arr = samples.get((a, m, s), {}).get("learned (greedy)/sum_se")
                if arr is not None:
                    parts.setdefault(m, []).append(arr)
            for h in heuristics:  # evaluated in the first method's runs (sweep_runs)
                arr = samples.get((a, methods[0], s), {}).get(f"{h}/sum_se")
                if arr is not None:
                    parts.setdefault(h, []).append(arr)
        pooled[a] = {n: np.concatenate(parts[n]) for n in methods + heuristics if n in parts}
    stats = {a: {n: sample_stats(x) for n, x in per.items()} for a, per in pooled.items()}
    return stats, pooled


def grid_table(config: dict[str, Any], summaries) -> list[dict]:
    """Per grid, architecture, point and policy: the sum SE mean and interval over seeds and
    SF-MADDPG's per-seed improvement over the policy (%, where SF-MADDPG ran)."""
    rows = []
    for spec in config["grid"]:
        g, x, seeds = spec["name"], spec["x"], spec.get("seeds", config["seeds"])
        for a in spec.get("archs", config["arch"]):
            methods = [m for m in spec.get("methods", config["methods"]) if supports(m, a)]
            if not methods:
                continue
            for i, p in enumerate(spec["points"]):
                ev = _policy_evals(
                    summaries, lambda m, s, g=g, i=i, a=a: (g, i, a, m, s), methods, seeds
                )
                sf = [e["sum_se"] for e in ev["sf_maddpg"][1]] if "sf_maddpg" in ev else None
                for name, (kind, per) in ev.items():
                    y = [e["sum_se"] for e in per]
                    row = {"grid": g, "arch": a, "x": x, "value": p[x], "policy": name}
                    row.update(kind=kind, n_seeds=len(per))
                    row["sum_se"], row["sum_se_ci95"] = mean_ci(y)
                    row["sf_maddpg_over_pct"], row["sf_maddpg_over_pct_ci95"] = (
                        gain_pct(sf, y) if sf is not None and name != "sf_maddpg" else (None, None)
                    )
                    rows.append(row)
    return rows


# ---- trajectories (Fig. 5) -------------------------------------------------------------------


def episode_positions(env, env_params, policy, key, n_envs: int) -> dict[str, np.ndarray]:
    """One evaluation episode of ``policy(obs[1, M, F], state) -> actions`` on drop 0 of the
    held-out drops of ``key`` (the drops of ``algorithms.evaluation.evaluate_policy`` with
    ``n_envs`` environments): ``{"ap": [T + 1, M, 2], "ue": [K, 2], "sum_se": [T]}`` (AP
    positions at reset and after each of the ``T = env.episode_steps`` slots, m; the slot's
    sum SE, bit/s/Hz). Deterministic policies only (no key reaches the policy)."""
    import jax

    from algorithms.evaluation import _raw_key

    k_reset, _ = jax.random.split(_raw_key(key))
    obs, state = env.reset(jax.random.split(k_reset, n_envs)[0], env_params)

    def slot(carry, _):
        obs, state = carry
        batched = jax.tree.map(lambda v: v[None], state)
        act = jax.tree.map(lambda v: v[0], policy(obs[None], batched))
        obs, state, _, _, _, info = env.step_env(None, state, act, env_params)
        return (obs, state), (state.ap_pos, info["sum_se"])

    run = jax.jit(lambda o, s: jax.lax.scan(slot, (o, s), None, length=env.episode_steps))
    _, (ap, se) = jax.device_get(run(obs, state))
    ap = np.concatenate([np.asarray(state.ap_pos)[None], np.asarray(ap)], axis=0)
    return {"ap": ap, "ue": np.asarray(state.ue_pos), "sum_se": np.asarray(se)}


def _restore_params(cfg: dict, run_dir: Path):
    """``(env, env_params, trainer, params)`` of a run's last checkpoint, or ``None`` when the
    run has no checkpoint."""
    import jax

    from . import train as train_mod

    if not (run_dir / "checkpoints").is_dir():
        return None
    env, env_params, trainer = train_mod.build(cfg)
    manager = train_mod._manager(run_dir)
    if manager.latest_step() is None:
        return None
    state = jax.eval_shape(trainer.init, jax.random.PRNGKey(cfg["seed"]))
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)
    _, state = train_mod._restore(manager, abstract)
    return env, env_params, trainer, train_mod._reported(trainer, state)


def trajectories(config: dict[str, Any], out_dir: Path, summaries, stream=None) -> list[dict]:
    """The AP paths of one evaluation episode (drop 0, first seed) per architecture and name of
    ``config["trajectories"]`` (module docstring): ``[{"arch", "policy", "ap", "ue",
    "sum_se"}]`` with nested lists (:func:`episode_positions`); names that did not run, and
    runs without a checkpoint, are left out with a note on ``stream`` (default stderr)."""
    import jax

    from . import train as train_mod

    stream = sys.stderr if stream is None else stream
    s0, out = config["seeds"][0], []
    for a in config["arch"]:
        methods = _arch_methods(config, a)
        for name in config["trajectories"]:
            if name in METHODS:
                if name not in methods:
                    continue
                rel = f"{a}/{name}/seed{s0}"
                got = _restore_params(summaries[(a, name, s0)]["config"], out_dir / rel)
                if got is None:
                    print(f"note: {rel} has no checkpoint; no trajectory", file=stream)
                    continue
                env, env_params, trainer, params = got
                cfg = summaries[(a, name, s0)]["config"]

                def policy(obs, state, trainer=trainer, params=params):
                    return trainer.act(params, obs)
            else:
                if not methods:
                    continue
                cfg = summaries[(a, methods[0], s0)]["config"]
                env, env_params = train_mod.build(cfg)[:2]
                heur = env.heuristics()
                if name not in heur:
                    continue
                policy = heur[name]
            key = jax.random.PRNGKey(cfg["seed"] + 1_000_003)  # cfmimo train's evaluation key
            pos = episode_positions(env, env_params, policy, key, cfg["eval"]["n_envs"])
            out.append({"arch": a, "policy": name, **{k: v.tolist() for k, v in pos.items()}})
    return out


def plot_trajectories(items: list[dict], side_m: float, path: Path) -> None:
    """One panel per (arch, policy): each AP's path (start: circle, end: triangle) and the UEs
    (crosses), in the ``side_m`` square."""
    from .plots import plt

    n = max(len(items), 1)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 4.0), squeeze=False)
    for ax, it in zip(axes.ravel(), items, strict=False):
        ap, ue = np.asarray(it["ap"]), np.asarray(it["ue"])
        for m in range(ap.shape[1]):
            c = f"C{m % 10}"
            ax.plot(ap[:, m, 0], ap[:, m, 1], color=c, lw=1.2)
            ax.plot(ap[0, m, 0], ap[0, m, 1], "o", color=c, ms=4, mfc="none")
            ax.plot(ap[-1, m, 0], ap[-1, m, 1], "^", color=c, ms=5)
            ax.annotate(f"AP {m + 1}", ap[-1, m], fontsize=6)
        ax.plot(ue[:, 0], ue[:, 1], "kx", ms=6)
        for k, u in enumerate(ue):
            ax.annotate(f"UE {k + 1}", u, fontsize=6)
        ax.set_xlim(0, side_m)
        ax.set_ylim(0, side_m)
        ax.set_aspect("equal")
        ax.set_title(f"{it['policy']}, {ARCH_LABEL.get(it['arch'], it['arch'])}", fontsize=8)
        ax.set_xlabel("x (m)", fontsize=8)
        ax.set_ylabel("y (m)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---- outputs ----------------------------------------------------------------------------------


def _cell(r, k, digits=3):
    v, h = r.get(k), r.get(k + "_ci95")
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{digits}f}" + ("" if h is None or math.isnan(h) else f" ± {h:.{digits}f}")


def _csv(path: Path, rows: list[dict], fields: list[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def _ci_panel(c):
    return (c["episodes"], c["mean"], [math.nan if q is None else q for q in c["ci95"]])


def write_outputs(out_dir: Path, result: dict, pooled: dict | None = None) -> None:
    """The tables and figures of the module docstring (``pooled``: the samples of
    :func:`se_cdf` for the CDF figures, not drawn without)."""
    table, claims = result["table"], result["claims"]
    fields = ["arch", "policy", "kind", "n_seeds"]
    for k in METRICS + tuple(REFS.values()):
        fields += [k, k + "_ci95"]
    _csv(out_dir / "comparison.csv", table, fields)
    _csv(out_dir / "claims.csv", claims, ["claim", "paper_pct", "ours_pct", "ours_pct_ci95"])
    conv = result.get("convergence", [])
    cf = ["arch", "method", "metric", "n_seeds", "n_updates"]
    for k in ("updates_to_frac", "episodes_to_frac", "final"):
        cf += [k, k + "_ci95"]
    cf += ["faster_than_maddpg_pct", "paper_episodes", "paper_faster_pct"]
    _csv(out_dir / "convergence.csv", conv, cf)
    grid = result.get("grid", [])
    if grid:
        gf = ["grid", "arch", "x", "value", "policy", "kind", "n_seeds", "sum_se", "sum_se_ci95"]
        _csv(out_dir / "grid.csv", grid, gf + ["sf_maddpg_over_pct", "sf_maddpg_over_pct_ci95"])
    traj = result.get("trajectories", [])
    (out_dir / "comparison.json").write_text(
        json.dumps({k: v for k, v in result.items() if k != "trajectories"}, indent=2) + "\n",
        "utf-8",
    )
    lines = [
        f"# Mobile cell-free massive MIMO with UAV APs ([MOBILE-AP]), seeds {result['seeds']}",
        "",
        "Mean over seeds ± 95 % Student-t half-width over seeds, on the same held-out drops for",
        "every policy and architecture of a seed. Power used: sum rho / (M P_ap); move: mean",
        "metres per AP and slot. Improvements: 100 (x_s / ref_s - 1) per seed s, then mean ±",
        "half-width over seeds.",
        "",
        "| arch | policy | sum SE (bit/s/Hz) | min SE | penalty | power used | move (m) "
        "| vs MADDPG (%) | vs Fractional (%) | vs oracle (%) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table:
        cells = [_cell(r, k) for k in METRICS[:4]] + [_cell(r, "move_m", 2)]
        cells += [_cell(r, c, 1) for c in REFS.values()]
        lines.append(f"| {r['arch']} | {r['policy']} | " + " | ".join(cells) + " |")
    lines += ["", "The paper's claims (sum SE improvement, %):", ""]
    lines += ["| claim | paper | ours |", "|---|---|---|"]
    for c in claims:
        ours = "not run" if c["ours_pct"] is None else _cell(c, "ours_pct", 1)
        lines.append(f"| {c['claim']} | {c['paper_pct']:+.2f} | {ours} |")
    if result.get("arch_gain"):
        lines += ["", "Joint PI + PE over the single PI architecture, per policy (%):", ""]
        lines += ["| policy | ours | paper |", "|---|---|---|"]
        for r in result["arch_gain"]:
            p = r["paper_pct"]
            lines.append(
                f"| {r['policy']} | {_cell(r, 'joint_over_move_pct', 1)} "
                f"| {'-' if p is None else f'{p:+.2f}'} |"
            )
    if conv:
        frac = conv[0]["metric"]
        lines += [
            "",
            f"Convergence on {frac} (updates / episodes to the fraction of the rise of the",
            "trailing mean, module docstring); faster than MADDPG: 100 (1 - E_m / E_maddpg) with",
            "E the mean episodes; the paper's (Fig. 13): SF-MADDPG 1607, MADDPG 2846 episodes,",
            "43.53 % faster.",
            "",
            "| arch | method | updates | episodes | final | faster than MADDPG (%) | paper |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in conv:
            f = r["faster_than_maddpg_pct"]
            p = [f"{r['paper_episodes']} episodes" if r["paper_episodes"] else ""]
            if r["paper_faster_pct"] is not None:
                p.append(f"{r['paper_faster_pct']:.2f} % faster")
            lines.append(
                f"| {r['arch']} | {r['method']} | {_cell(r, 'updates_to_frac', 1)} "
                f"| {_cell(r, 'episodes_to_frac', 0)} | {_cell(r, 'final', 3)} "
                f"| {'-' if f is None else f'{f:.1f}'} | {', '.join(x for x in p if x) or '-'} |"
            )
    if grid:
        lines += ["", "Sum SE against the size (grid; SF-MADDPG over the policy, %):", ""]
        lines += ["| grid | arch | size | policy | sum SE | SF-MADDPG over (%) |"]
        lines += ["|---|---|---|---|---|---|"]
        for r in grid:
            lines.append(
                f"| {r['grid']} | {r['arch']} | {r['x']} = {r['value']} | {r['policy']} "
                f"| {_cell(r, 'sum_se')} | {_cell(r, 'sf_maddpg_over_pct', 1)} |"
            )
    (out_dir / "comparison.md").write_text("\n".join(lines) + "\n", "utf-8")

    from .plots import plot_bars, plot_cdfs, plot_curves

    groups: dict[str, list] = {}
    for r in table:
        groups.setdefault(ARCH_LABEL.get(r["arch"], r["arch"]), []).append(
            (r["policy"], r["sum_se"], r["sum_se_ci95"])
        )
    plot_bars(groups, "sum SE (bit/s/Hz)", out_dir / "sum_se.png")
    if pooled:
        plot_cdfs(
            {ARCH_LABEL.get(a, a): per for a, per in pooled.items()},
            "sum SE (bit/s/Hz)",
            out_dir / "se_cdf.png",
        )
        both = {}
        for a, per in pooled.items():
            kinds = {r["policy"]: r["kind"] for r in table if r["arch"] == a}
            for name, x in per.items():
                if kinds.get(name) == "learned" or (a == "joint" and name.startswith("static")):
                    both[f"{name} [{a}]"] = x
        plot_cdfs({"both architectures": both}, "sum SE (bit/s/Hz)", out_dir / "se_cdf_archs.png")
    cur = result.get("curves", {})
    for key, ylabel, name in (
        ("episode_return", "episode return", "convergence_return.png"),
        ("sum_se", "sum SE during training (bit/s/Hz)", "convergence_sum_se.png"),
    ):
        if cur.get(key):
            panels = {
                ARCH_LABEL.get(a, a): {m: _ci_panel(c) for m, c in per.items()}
                for a, per in cur[key].items()
            }
            plot_curves(panels, ylabel, out_dir / name, xlabel="episodes")
    by_grid: dict[str, dict] = {}
    for r in grid:
        line = by_grid.setdefault(r["grid"], {}).setdefault(r["arch"], {})
        xs, ys, hs = line.setdefault(r["policy"], ([], [], []))
        xs.append(float(r["value"]))
        ys.append(r["sum_se"])
        hs.append(r["sum_se_ci95"])
    for g, per in by_grid.items():
        x = next(r["x"] for r in grid if r["grid"] == g)
        panels = {ARCH_LABEL.get(a, a): lines_ for a, lines_ in per.items()}
        plot_curves(panels, "sum SE (bit/s/Hz)", out_dir / f"sum_se_vs_{g}.png", xlabel=x)
    if traj:
        (out_dir / "trajectories.json").write_text(json.dumps(traj) + "\n", "utf-8")
        side = result.get("side_m", 1000.0)
        plot_trajectories(traj, side, out_dir / "trajectories.png")


__all__ = [
    "ARCHS",
    "METHODS",
    "PAPER_ARCH_GAIN",
    "PAPER_CLAIMS",
    "PAPER_CONVERGENCE",
    "aggregate",
    "convergence",
    "episode_positions",
    "gain_pct",
    "grid_table",
    "reproduce",
    "run_config",
    "se_cdf",
    "sweep_runs",
    "trajectories",
    "updates_to_fraction",
    "validate",
]

"""``cfmimo evaluate``: uplink and downlink SE of every combining/precoding scheme.

For each of ``n_setups`` independent network setups (the book's generator), computes the
per-UE spectral efficiency of every uplink combiner (book Thms 5.1 and 5.4) and every downlink
precoder (Thm 6.1, fractional downlink power, book eq. (7.47)) with one jitted Monte-Carlo
pass (:func:`cfmimo_jax.se.all_se`), compiled once and called once per setup.

Writes ``per_ue_se.csv``, ``summary.json`` and ``se_cdf.png`` to the output folder. Schemes are
named by the keys of :data:`cfmimo_jax.se.UPLINK_SCHEMES` / :data:`cfmimo_jax.se.DOWNLINK_SCHEMES`
(``mr_central``: centralized MR, ``mr_dist``: distributed MR, in both directions); the
backward-compatible alias ``"mr"`` of ``all_se`` is not written twice.
"""

from __future__ import annotations

import csv
import json
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from cfmimo_jax.host_devices import expose_host_devices

from .config import validate_evaluate

__all__ = ["evaluate", "format_table", "summarize"]

DIRECTIONS = ("uplink", "downlink")


def _kernels():
    """The physics kernels used by :func:`evaluate` (imported lazily; tests may stand in)."""
    from cfmimo_jax import power, se, setup

    return setup.generate_setup, power.fractional_downlink, se.all_se


def _build_step(config: dict[str, Any]):
    """One jitted function ``key -> (gain_db, D, {"uplink": {...}, "downlink": {...}})``.

    All sizes and scalars of the configuration are closed over as Python constants, so the
    function is traced and compiled once and reused for every setup.
    """
    import jax
    import jax.numpy as jnp

    generate_setup, fractional_downlink, all_se = _kernels()

    net, power = config["network"], config["power"]
    L, K, N = net["L"], net["K"], net["N"]
    tau_p, tau_c = net["tau_p"], net["tau_c"]
    asd_az = net["asd_azimuth_deg"]
    asd_el = net["asd_elevation_deg"]
    asd_az = None if asd_az is None else math.radians(asd_az)
    asd_el = None if asd_el is None else math.radians(asd_el)
    p_mw, rho_max = float(power["p_mw"]), float(power["rho_max_mw"])
    exponent = float(power["downlink_exponent"])
    n_realizations, genie = config["n_realizations"], config["genie"]
    devices = None if config["devices"] == 1 else config["devices"]

    @jax.jit
    def make_setup(key):
        setup = generate_setup(key, L, K, N, tau_p, asd_azimuth=asd_az, asd_elevation=asd_el)
        gain = 10.0 ** (setup.gain_db / 10.0)
        rho = fractional_downlink(gain, setup.D, rho_max, exponent=exponent)
        return setup.gain_db, setup.R, setup.pilot, setup.D, rho

    @jax.jit
    def compute_se(key, R, pilot, D, p, rho):
        return all_se(
            key, R, pilot, D, p, rho, tau_p, tau_c, n_realizations, genie=genie, devices=devices
        )

    p = jnp.full((K,), p_mw, dtype=jnp.float32)

    def step(key):
        k_setup, k_se = jax.random.split(key)
        gain_db, R, pilot, D, rho = make_setup(k_setup)
        se = compute_se(k_se, R, pilot, D, p, rho)
        return jax.device_get((gain_db, D, se))

    return step


def canonical_schemes(schemes: dict[str, Any], aliases: dict[str, str]) -> dict[str, Any]:
    """``schemes`` without the alias keys of ``all_se`` (``aliases``: alias -> scheme, e.g.
    :data:`cfmimo_jax.se.UPLINK_ALIASES`), also for the ``_genie`` keys: an alias whose scheme
    is present is dropped (same array), one whose scheme is absent is renamed to it."""
    out: dict[str, Any] = {}
    for key, value in schemes.items():
        base, genie = (key[: -len("_genie")], "_genie") if key.endswith("_genie") else (key, "")
        if base in aliases:
            name = aliases[base] + genie
            if name in schemes:
                continue
            key = name
        out[key] = value
    return out


def summarize(per_ue: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, dict[str, float]]]:
    """Median, mean, 5th and 95th percentile of the per-UE SEs of every direction and scheme."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for direction, schemes in per_ue.items():
        out[direction] = {}
        for scheme, se in schemes.items():
            se = np.asarray(se, dtype=np.float64).ravel()
            p5, p95 = np.percentile(se, [5.0, 95.0])
            out[direction][scheme] = {
                "median": float(np.median(se)),
                "mean": float(np.mean(se)),
                "p5": float(p5),
                "p95": float(p95),
                "n": int(se.size),
            }
    return out


def format_table(stats: dict[str, dict[str, dict[str, float]]]) -> str:
    """A plain-text table of the median (and 5th-percentile) per-UE SE of every scheme.

    One row per scheme key, so a scheme of both directions (e.g. ``mr_dist``, distributed MR)
    has one row; the last column gives the keys used in ``per_ue_se.csv``/``summary.json``.
    """
    from .plots import scheme_label

    labels: dict[str, str] = {}  # scheme key -> label (of its first direction)
    for direction in DIRECTIONS:
        for scheme in stats.get(direction, {}):
            labels.setdefault(scheme, scheme_label(direction, scheme))
    width = max([len(label) for label in labels.values()] + [6])
    head = (
        f"{'scheme':<{width}}  {'uplink median (5%)':>20}  {'downlink median (5%)':>22}"
        "  keys (uplink / downlink)"
    )
    lines = ["Per-UE SE [bit/s/Hz]", head, "-" * len(head)]
    for scheme, label in labels.items():
        cells, names = [], []
        for direction, w in zip(DIRECTIONS, (20, 22), strict=True):
            s = stats.get(direction, {}).get(scheme)
            cells.append(f"{s['median']:.3f} ({s['p5']:.3f})".rjust(w) if s else "-".rjust(w))
            names.append(scheme if s else "-")
        lines.append(f"{label:<{width}}  {cells[0]}  {cells[1]}  {' / '.join(names)}")
    return "\n".join(lines)


def _write_csv(path: Path, rows: list[tuple[int, int, str, str, float]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["setup", "ue", "direction", "scheme", "se"])
        for setup, ue, direction, scheme, se in rows:
            writer.writerow([setup, ue, direction, scheme, f"{se:.6g}"])


def _environment() -> dict[str, Any]:
    import jax

    devices = jax.devices()
    return {
        "jax_version": jax.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in devices],
        "device_kind": devices[0].device_kind if devices else None,
        "x64": bool(jax.config.jax_enable_x64),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def evaluate(
    config: dict[str, Any],
    out_dir: str | Path,
    *,
    progress: bool = True,
    stream=None,
) -> dict[str, Any]:
    """Run the evaluation described by ``config`` and write its outputs to ``out_dir``.

    Returns the summary (also written to ``summary.json``). ``stream`` receives the printed
    table (default ``sys.stdout``; ``False`` prints nothing).
    """
    validate_evaluate(config)  # before any compute
    # on a CPU, n host devices for devices=n; before JAX initialises its backends
    expose_host_devices(config["devices"])
    import jax
    from tqdm.auto import tqdm

    from cfmimo_jax.se import DOWNLINK_ALIASES, UPLINK_ALIASES

    from .plots import plot_se_cdf, sort_schemes

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stream = sys.stdout if stream is None else stream

    t_start = time.perf_counter()
    step = _build_step(config)
    keys = jax.random.split(jax.random.key(config["seed"]), config["n_setups"])

    per_ue: dict[str, dict[str, list[np.ndarray]]] = {d: {} for d in DIRECTIONS}
    n_served = []
    first_step_s = None
    for s in tqdm(range(config["n_setups"]), desc="setups", unit="setup", disable=not progress):
        t0 = time.perf_counter()
        _, D, se = step(keys[s])
        if first_step_s is None:
            first_step_s = time.perf_counter() - t0
        n_served.append(np.asarray(D).sum(axis=0))
        aliases = {"uplink": UPLINK_ALIASES, "downlink": DOWNLINK_ALIASES}
        for direction in DIRECTIONS:
            for scheme, values in canonical_schemes(se[direction], aliases[direction]).items():
                values = np.asarray(values, dtype=np.float64)
                if not np.all(np.isfinite(values)):
                    raise FloatingPointError(
                        f"setup {s}: non-finite {direction} SE for scheme {scheme!r}"
                    )
                per_ue[direction].setdefault(scheme, []).append(values)
    wall = time.perf_counter() - t_start

    order = {d: sort_schemes(d, schemes) for d, schemes in per_ue.items()}
    rows = [
        (s, k, d, sch, float(v))
        for s in range(config["n_setups"])
        for d in DIRECTIONS
        for sch in order[d]
        for k, v in enumerate(per_ue[d][sch][s])
    ]
    per_ue_arr = {d: {sch: np.concatenate(per_ue[d][sch]) for sch in order[d]} for d in per_ue}
    stats = summarize(per_ue_arr)
    _write_csv(out_dir / "per_ue_se.csv", rows)
    plot_se_cdf(per_ue_arr, out_dir / "se_cdf.png", config=config)

    n_served_all = np.concatenate(n_served)
    summary = {
        "command": "evaluate",
        "config": config,
        "se": stats,
        "aps_per_ue": {
            "mean": float(n_served_all.mean()),
            "min": int(n_served_all.min()),
            "max": int(n_served_all.max()),
        },
        "wall_time_s": wall,
        "first_setup_s": first_step_s,
        "mean_setup_s_after_first": (
            (wall - first_step_s) / (config["n_setups"] - 1) if config["n_setups"] > 1 else None
        ),
        "environment": _environment(),
        "outputs": ["per_ue_se.csv", "summary.json", "se_cdf.png"],
    }
    with (out_dir / "summary.json").open("w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")

    if stream is not False:
        print(format_table(stats), file=stream)
        print(
            f"{config['n_setups']} setups x {config['network']['K']} UEs, "
            f"{config['n_realizations']} realizations each; wall time {wall:.1f} s "
            f"(first setup incl. compilation {first_step_s:.1f} s) on "
            f"{summary['environment']['backend']}; outputs in {out_dir}",
            file=stream,
        )
    return summary

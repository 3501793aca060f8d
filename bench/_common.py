"""Helpers shared by the benchmark scripts of ``bench/``.

* machine description: CPU model, git state, free memory, JAX devices, the ``machine`` block
  of the JSON results and the lines of a report's machine section;
* NumPy's OpenBLAS: re-executing a script without the kernel-pinning overrides, reading its
  configuration and finding its C functions;
* timing of jitted functions: ahead-of-time compile, timed calls with ``block_until_ready``,
  rollouts fed their own state, compiled ``trainer.update`` calls, XLA's memory estimate;
* the time budget of a run (``Clock``);
* report writing: compact numbers, bullet sections, the markdown and JSON files.

Nothing here imports NumPy, JAX or torch when the module is loaded: ``bench_kernels.py`` and
``bench_xl.py`` import it before they set the OpenBLAS and XLA environment variables that must
be in place when those libraries load.
"""

from __future__ import annotations

import ctypes
import glob
import json
import os
import platform
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ---- machine --------------------------------------------------------------------------------


def cpu_model():
    """The CPU's model name from ``/proc/cpuinfo`` (``platform.processor()`` or ``"unknown"``
    where that cannot be read)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git(*args):
    """The stripped standard output of ``git *args`` run in the repository root, or ``None``
    when git fails (not installed, not a checkout, non-zero exit, 20 s timeout)."""
    try:
        out = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=20, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def mem_available():
    """``MemAvailable`` of ``/proc/meminfo`` in bytes, or ``None`` where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def jax_devices():
    """JAX's devices as ``"cpu:0, cpu:1"`` (platform and id of each)."""
    import jax

    return ", ".join(f"{d.platform}:{d.id}" for d in jax.devices())


def describe_machine(files, *, with_platform=True, after_jax=None, after_devices=None):
    """The ``machine`` block of a benchmark's results, in this key order: ``cpu``, ``cores``,
    ``platform`` (left out when ``with_platform`` is false), ``python``, ``numpy``, ``jax``,
    the items of ``after_jax``, ``devices``, the items of ``after_devices``, ``commit`` (short
    HEAD), ``dirty`` (``git status --porcelain`` of the paths ``files``, ``""`` when clean)
    and ``mem_gib`` (memory available now)."""
    import jax
    import numpy as np

    info = {"cpu": cpu_model(), "cores": os.cpu_count()}
    if with_platform:
        info["platform"] = platform.platform()
    info.update(python=platform.python_version(), numpy=np.__version__, jax=jax.__version__)
    info.update(after_jax or {})
    info["devices"] = jax_devices()
    info.update(after_devices or {})
    info.update(
        commit=git("rev-parse", "--short", "HEAD"),
        dirty=git("status", "--porcelain", "--", *files) or "",
        mem_gib=(mem_available() or 0) / 2**30,
    )
    return info


def torch_info():
    """PyTorch's version and its intra-op and inter-op thread counts (imports torch)."""
    import torch

    return {
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
    }


def peak_rss_gib():
    """Peak resident memory of this process so far, GiB (``ru_maxrss``, which is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def load_text(load):
    """A 1, 5, 15-minute load average triple as ``"1.23/1.50/1.61"``."""
    return f"{load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f}"


# ---- NumPy's OpenBLAS -----------------------------------------------------------------------

#: environment variables that pin OpenBLAS to an older kernel set (read when NumPy loads)
BLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
#: set in the re-executed process: the removed ``NAME=value`` pairs, or ``"-"`` for none
REEXEC_MARK = "CFMIMO_BENCH_REMOVED_ENV"
# symbol prefixes and suffixes of the OpenBLAS builds NumPy ships (scipy-openblas, 64-bit
# and 32-bit integers) and of a plain OpenBLAS
_OPENBLAS_NAMES = (("scipy_openblas_", "64_"), ("scipy_openblas_", ""), ("openblas_", ""))


def reexec_without_blas_overrides(script):
    """Re-execute ``script`` (with this process's arguments) once, with ``BLAS_OVERRIDES``
    removed from the environment, so that OpenBLAS picks the kernels for the actual CPU; what
    was removed is recorded in ``REEXEC_MARK``. Does nothing when ``--keep-blas-env`` is on the
    command line or this process is already the re-executed one. Call it before NumPy is
    imported."""
    if "--keep-blas-env" in sys.argv or REEXEC_MARK in os.environ:
        return
    removed = [v for v in BLAS_OVERRIDES if v in os.environ]
    env = {k: v for k, v in os.environ.items() if k not in BLAS_OVERRIDES}
    env[REEXEC_MARK] = ",".join(f"{v}={os.environ[v]}" for v in removed) or "-"
    os.execve(sys.executable, [sys.executable, os.path.abspath(script), *sys.argv[1:]], env)


def blas_env_removed():
    """The ``NAME=value`` pairs that :func:`reexec_without_blas_overrides` removed, ``""`` when
    it removed none or did not run."""
    removed = os.environ.get(REEXEC_MARK, "")
    return "" if removed in ("", "-") else removed


def openblas_functions(*names):
    """The C functions ``names`` (without prefix and suffix, e.g. ``"get_num_threads"``) of the
    OpenBLAS library NumPy loaded, as ``ctypes`` functions in the order asked, from the first
    library and symbol naming that has all of them; ``None`` when none has."""
    import numpy as np

    libs = glob.glob(os.path.join(os.path.dirname(np.__file__) + ".libs", "*openblas*"))
    for path in libs:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for pre, suf in _OPENBLAS_NAMES:
            try:
                return tuple(getattr(lib, f"{pre}{name}{suf}") for name in names)
            except AttributeError:
                continue
    return None


def openblas_info():
    """Core type, thread count and configuration of the BLAS NumPy loaded: from threadpoolctl
    when it is installed, else from OpenBLAS's own functions, else NumPy's build configuration
    (``"unknown"`` when none answers)."""
    import numpy as np

    try:
        from threadpoolctl import threadpool_info

        return "; ".join(
            f"{d.get('internal_api')} {d.get('version')} ({d.get('architecture')}, "
            f"{d.get('num_threads')} threads)"
            for d in threadpool_info()
            if d.get("user_api") == "blas"
        )
    except ImportError:
        pass
    fns = openblas_functions("get_config", "get_corename", "get_num_threads")
    if fns is not None:
        cfg, core, nth = fns
        cfg.restype = core.restype = ctypes.c_char_p
        return f"{cfg().decode().strip()}; core type in use: {core().decode()}; {nth()} threads"
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # noqa: BLE001
        return "unknown"


# ---- timing of jitted functions -------------------------------------------------------------


def aot(fn, *args):
    """``(compiled, compile_s)``: ``jax.jit(fn)`` (``fn`` itself when it is already jitted)
    lowered and compiled ahead of time for ``args``, and the seconds that took."""
    import jax

    jitted = fn if hasattr(fn, "lower") else jax.jit(fn)
    t0 = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    return compiled, time.perf_counter() - t0


def time_calls(compiled, args, calls):
    """Seconds of ``calls`` calls ``compiled(*args)`` in a row, each to ``block_until_ready``."""
    import jax

    t0 = time.perf_counter()
    for _ in range(calls):
        jax.block_until_ready(compiled(*args))
    return time.perf_counter() - t0


def time_compiled(fn, args, repeats):
    """``(compile_s, runs)``: :func:`aot` of ``fn`` on ``args``, one warm-up call, then the
    seconds of each of ``repeats`` timed calls on the same arguments (``block_until_ready``)."""
    compiled, compile_s = aot(fn, *args)
    time_calls(compiled, args, 1)
    return compile_s, [time_calls(compiled, args, 1) for _ in range(repeats)]


def memory_bytes(compiled):
    """XLA's memory estimate of a compiled program (arguments + outputs + temporaries), bytes;
    ``None`` when the backend does not report it."""
    try:
        m = compiled.memory_analysis()
        return m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
    except Exception:  # noqa: BLE001 (not every backend reports it)
        return None


def scan_rollout(env, params, n_envs, n_steps, act, consume, step=None, acc_dtype=None):
    """``(rollout, reset)``, both jitted. ``rollout(key, state, obs) -> (state, obs, acc)``:
    ``n_steps`` vectorised steps of ``n_envs`` environments in one ``lax.scan``, each
    ``step(keys[n_envs], state, action, params) -> (obs, state, reward, done, info)`` (default
    ``env.step_batch``) with the actions ``act(key, obs)`` computed inside the scan from the
    observation before the step; ``acc`` sums ``consume(reward, done, obs, info)`` over the
    steps (the outputs consumed, so that nothing is dead code; a ``acc_dtype`` scalar,
    default float32). ``reset(keys, params) -> (obs, state)``: ``env.reset`` vmapped over the
    keys."""
    import jax
    import jax.numpy as jnp

    step = env.step_batch if step is None else step

    def rollout(key, state, obs):
        def body(carry, k):
            state, obs, acc = carry
            k_act, k_env = jax.random.split(k)
            action = act(k_act, obs)
            obs, state, reward, done, info = step(
                jax.random.split(k_env, n_envs), state, action, params
            )
            return (state, obs, acc + consume(reward, done, obs, info)), None

        zero = jnp.zeros((), acc_dtype or jnp.float32)
        (state, obs, acc), _ = jax.lax.scan(
            body, (state, obs, zero), jax.random.split(key, n_steps)
        )
        return state, obs, acc

    return jax.jit(rollout), jax.jit(jax.vmap(env.reset, in_axes=(0, None)))


def time_rollouts(compiled, key, state, obs, warmup, repeats):
    """``(runs, (state, obs, acc))``: ``warmup`` untimed, then ``repeats`` timed calls of a
    compiled rollout ``(key, state, obs) -> (state, obs, acc)``, each fed the state and
    observation the previous one returned and a new key split off ``key``, each timed to
    ``block_until_ready``; the outputs of the last call."""
    import jax

    runs, acc = [], None
    for i in range(warmup + repeats):
        key, sub = jax.random.split(key)
        t0 = time.perf_counter()
        state, obs, acc = compiled(sub, state, obs)
        jax.block_until_ready((state, obs, acc))
        dt = time.perf_counter() - t0
        if i >= warmup:
            runs.append(dt)
    return runs, (state, obs, acc)


def compile_update(trainer, seed=0):
    """``(runner_state, compiled, compile_s)``: ``trainer.init(PRNGKey(seed))`` (ready) and
    ``jax.jit(trainer.update)`` compiled ahead of time on it, with the compile's seconds."""
    import jax

    rs = trainer.init(jax.random.PRNGKey(seed))
    jax.block_until_ready(rs)
    compiled, compile_s = aot(trainer.update, rs)
    return rs, compiled, compile_s


def timed_update(compiled, rs, metrics):
    """One call of a compiled ``trainer.update`` on the runner state ``rs``:
    ``(runner_state, seconds, raw metrics)``, timed to ``block_until_ready``; the mean of each
    metric over the call is appended to the list ``metrics`` (after the timing)."""
    import jax
    import numpy as np

    t0 = time.perf_counter()
    rs, m = compiled(rs)
    jax.block_until_ready((rs, m))
    dt = time.perf_counter() - t0
    metrics.append({k: float(np.mean(v)) for k, v in m.items()})
    return rs, dt, m


def best_per_n_envs(rows):
    """``{n_envs: row}``: the row of largest ``steps_per_s`` at each ``n_envs`` (the first one
    on ties), e.g. the faster of the thread settings of a PyTorch point."""
    best = {}
    for r in rows:
        b = best.get(r["n_envs"])
        if b is None or r["steps_per_s"] > b["steps_per_s"]:
            best[r["n_envs"]] = r
    return best


class Clock:
    """The run's time budget."""

    def __init__(self, budget_s, max_point_s):
        self.t0 = time.perf_counter()
        self.budget_s, self.max_point_s = budget_s, max_point_s

    def left(self):
        """Seconds left of the budget (negative once it is spent)."""
        return self.budget_s - (time.perf_counter() - self.t0)

    def skip(self, predicted_s):
        """A reason to skip a point predicted to take ``predicted_s``, or ``None``."""
        if predicted_s > self.max_point_s:
            return f"predicted {predicted_s:.0f} s > {self.max_point_s:.0f} s per point"
        if predicted_s > self.left():
            return f"predicted {predicted_s:.0f} s > {max(self.left(), 0):.0f} s left of the budget"
        return None


# ---- parity ---------------------------------------------------------------------------------


def mlp_layers(state):
    """An nnx ``MLP`` state -> ``[(kernel, bias), ...]``, one pair per layer, as NumPy
    (``kernel[in, out]``, ``bias[out]``; with a leading agent axis when the MLP is stacked per
    agent)."""
    import jax
    import numpy as np

    layers = state["layers"]
    return [
        (
            np.asarray(jax.tree.leaves(layers[i]["kernel"])[0]),
            np.asarray(jax.tree.leaves(layers[i]["bias"])[0]),
        )
        for i in range(len(layers))
    ]


# ---- report ---------------------------------------------------------------------------------


def compact(x, millions=True):
    """Compact number: ``"-"`` for ``None``, else 3 significant digits with a k suffix from
    10^4 and (when ``millions``) an M suffix from 10^6, whole numbers from 100."""
    if x is None:
        return "-"
    if millions and x >= 1e6:
        return f"{x / 1e6:.3g}M"
    if x >= 1e4:
        return f"{x / 1e3:.3g}k"
    if x >= 100:
        return f"{x:.0f}"
    return f"{x:.3g}"


def ms(x):
    """Seconds as milliseconds, 3 significant digits (``"-"`` for ``None``)."""
    return "-" if x is None else f"{1e3 * x:.3g}"


def dirty_text(info):
    """``"clean"``, or ``"uncommitted: "`` and the ``git status`` lines of ``info["dirty"]``."""
    return "clean" if not info["dirty"] else "uncommitted: " + info["dirty"].replace("\n", "; ")


def cpu_line(info):
    """The report line ``- CPU: <model>, <n> cores (<platform>)``."""
    return f"- CPU: {info['cpu']}, {info['cores']} cores ({info['platform']})"


def versions_line(info, torch=False):
    """The report line of the Python, NumPy and JAX versions and the JAX devices; with
    ``torch``, PyTorch's version and thread counts too (:func:`torch_info`)."""
    line = f"- Python {info['python']}, NumPy {info['numpy']}, JAX {info['jax']} "
    if not torch:
        return line + f"({info['devices']})"
    return line + (
        f"({info['devices']}), PyTorch {info['torch']} ({info['torch_threads']} intra-op "
        f"threads, {info['torch_interop_threads']} inter-op)"
    )


def machine_lines(info, files, load_note, torch=False, extra=()):
    """A report's ``## Machine`` section: CPU, versions (:func:`versions_line`), the commit and
    whether ``files`` (words for the checked paths) are clean, the memory available at start,
    the load averages at start and end (``info["load_start"]``, ``info["load_end"]``) followed
    by ``load_note``, the lines ``extra``, the peak resident memory, a blank line."""
    return [
        "## Machine",
        "",
        cpu_line(info),
        versions_line(info, torch),
        f"- Code: git commit {info['commit']} ({files} {dirty_text(info)})",
        f"- Memory available at start: {info['mem_gib']:.1f} GiB",
        f"- Load average (1, 5, 15 min) at start {load_text(info['load_start'])}, at end "
        f"{load_text(info['load_end'])}{load_note}",
        *extra,
        f"- Peak resident memory of the benchmark process: {info['max_rss_gib']:.1f} GiB",
        "",
    ]


def bullets(heading, items):
    """A markdown section: ``heading``, a blank line, ``- item`` for each item, a blank line."""
    return [heading, "", *(f"- {x}" for x in items), ""]


def write_markdown(path, lines):
    """Write the report ``lines`` to ``path``, joined by newlines (no newline added at the end),
    UTF-8."""
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


def write_json(md_path, data):
    """Write ``data`` as JSON (indent 1) next to the markdown report ``md_path``: the same name
    with ``.json``. Returns that path."""
    path = os.path.splitext(md_path)[0] + ".json"
    with open(path, "w") as f:
        json.dump(data, f, indent=1)
    return path

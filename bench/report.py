"""Medians of the rounds, the serving targets, and the markdown for docs/BENCHMARKS.md."""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from bench.harness import WrkResult
from bench.scenarios import Load
from model.manifest import Manifest

BEGIN = "<!-- bench/serve.py: begin (generated; edit the script, not this section) -->"
END = "<!-- bench/serve.py: end -->"
PEERS_BEGIN = "<!-- bench/serve.py --peer: begin (generated; edit the script, not this section) -->"
PEERS_END = "<!-- bench/serve.py --peer: end -->"
PEERS_TEXT = (
    "The same bundle served by this service, by MLServer and KServe with a custom runtime "
    "each (`bench/peers/`), and by the bare FastAPI route (`bench/bare.py`); one process "
    "each. /predict loads send the service's /predict body: MLServer takes it in a custom "
    "handler (orjson parse, encode, one onnxruntime run, orjson answer, as the bare route "
    "does), KServe on its V1 `:predict` route (KServe parses the body and renders the "
    "answer; the model encodes and runs). infer-1 is the Open Inference Protocol's REST "
    "infer of one row's `indices` and `weights` as JSON tensors, every output answered; "
    "each server decodes it with its own V2 types. The peers keep their defaults (access "
    "log, metrics, MLServer's gRPC server) except: MLServer runs the model in its own "
    "process (`parallel_workers=0`), KServe without gRPC; \"MLServer, no access log\" is "
    "MLServer with `debug` off, which is what turns its access log off.\n"
)
TRAINING = (
    "## Training speed\n\n"
    "Produced by `bench/train_speed.py` (not yet filled in).\n"
)


@dataclass(frozen=True)
class Sample:
    result: WrkResult
    cpu_s_per_request: float
    other_threads_cpu_s_per_request: float = 0.0  # of cpu_s_per_request: not main threads


@dataclass(frozen=True)
class Figures:
    """Medians over the rounds of one load."""

    rate: float
    p50_ms: float
    p99_ms: float
    cpu_us: float
    errors: int
    other_threads_cpu_us: float = 0.0


@dataclass(frozen=True)
class Context:
    command: str
    model_dir: Path
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    seconds: int
    repeats: int


Table = dict[tuple[str, str, int], Figures]


def medians(samples: dict[Load, list[Sample]]) -> Table:
    def median(load: Load, get: Callable[[Sample], float]) -> float:
        return statistics.median(get(s) for s in samples[load])

    return {
        (load.config, load.scenario.name, load.connections): Figures(
            rate=median(load, lambda s: s.result.rate),
            p50_ms=median(load, lambda s: s.result.p50_ms),
            p99_ms=median(load, lambda s: s.result.p99_ms),
            cpu_us=median(load, lambda s: s.cpu_s_per_request * 1e6),
            errors=sum(s.result.errors for s in samples[load]),
            other_threads_cpu_us=median(load, lambda s: s.other_threads_cpu_s_per_request * 1e6),
        )
        for load in samples
    }


def render(samples: dict[Load, list[Sample]], main: str, context: Context, bare: str | None = None,
           before: str | None = None) -> str:
    """`bare`, `before`: the labels of the bare FastAPI route's server and of the code
    before, each compared with the main server on its own loads."""
    table = medians(samples)
    instances = {load.scenario.name: load.scenario.instances for load in samples}
    others = [c for c in [bare, before] if c is not None]
    configs = [c for c in dict.fromkeys(load.config for load in samples) if c not in others]
    parts = [
        BEGIN, "## Serving\n", _preamble(context), "### Targets\n",
        _targets(table, main, bare), "### Every load on the main server\n",
        _rows(table, instances, [main]), "### Micro-batching wait and workers, side by side\n",
        "Each cell: req/s, p50 / p99 ms, server CPU µs a request.\n", pivot(table, configs),
    ]
    if others:
        parts += ["### The main server beside a bare FastAPI route and the code before\n",
                  "The bare route (`bench/bare.py`) parses the body, encodes, runs the model and "
                  "returns scores, nothing else, under the same uvicorn. Each cell: req/s, "
                  "p50 / p99 ms, server CPU µs a request.\n",
                  *(pivot(table, [main, other]) for other in others)]
    return "\n".join([*parts, END]) + "\n"


def _preamble(c: Context) -> str:
    manifest = Manifest.read(c.model_dir)
    training = manifest.training
    model = (f"`{manifest.name}` ({manifest.kind}, {len(manifest.fields)} fields, "
             f"embedding {training.get('model', {}).get('embed_dim', '?')})")
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               platform.processor())
    return (
        f"    {c.command}\n\n"
        f"- {datetime.date.today()}, commit {_commit()}; model {model}.\n"
        f"- {os.cpu_count()} cores ({cpu}), shared: load average "
        f"{load_text(c.load_before)} before the run, {load_text(c.load_after)} after. wrk runs on "
        "the same cores as the server.\n"
        f"- Python {platform.python_version()}, onnxruntime {version('onnxruntime')}, "
        f"fastapi {version('fastapi')}, uvicorn {version('uvicorn')}.\n"
        f"- Each load lasts {c.seconds:g} s; figures are medians of {c.repeats} rounds. All "
        "servers run at once and the loads are interleaved, so the comparisons are side by "
        "side. Server CPU is the CPU time of the server's processes per request.\n"
    )


def _commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=False, cwd=Path(__file__).parent)
    return done.stdout.strip() or "unknown"


def load_text(avg: tuple[float, float, float]) -> str:
    return " / ".join(f"{x:.2f}" for x in avg)


def _targets(t: Table, main: str, bare: str | None) -> str:
    figures = {(name, c): fig for (config, name, c), fig in t.items() if config == main}
    # At 256 instances, the measured cost of the per-instance JSON explanation is the
    # decided bound (batches that need every pair use OIP infer's tensors instead).
    checks = [_throughput, _tail, _big, _explained(1, "-explain", 0.3, "all pairs"),
              _explained(256, "-top3", 0.7, "top 3 pairs"),
              _explained(256, "-explain", 1.3, "all pairs")]
    if bare is not None:
        checks.append(_near_bare({(name, c): fig for (config, name, c), fig in t.items()
                                  if config == bare}))
    lines = [line for check in checks if (line := _guarded(check, figures)) is not None]
    return "\n".join(["| target | measured | met |", "|---|---|---|", *lines]) + "\n"


Check = Callable[[dict[tuple[str, int], Figures]], str]


def _guarded(check: Check, figures: dict[tuple[str, int], Figures]) -> str | None:
    """A target whose loads were not run (see --only) is left out."""
    try:
        return check(figures)
    except KeyError:
        return None


def _throughput(f: dict[tuple[str, int], Figures]) -> str:
    one, ping, live = f[("predict-1", 16)], f[("ping", 16)], f[("live", 16)]
    ratio = one.rate / ping.rate
    return (f"| 1-instance /predict at c16 ≥ 70% of /ping req/s | {one.rate:,.0f} / "
            f"{ping.rate:,.0f} = {ratio:.0%}; of /v2/health/live {one.rate / live.rate:.0%}; "
            f"by server CPU a request {ping.cpu_us / one.cpu_us:.0%} "
            f"({ping.cpu_us:.0f} / {one.cpu_us:.0f} µs) | {_yes(ratio >= 0.7)} |")


def _tail(f: dict[tuple[str, int], Figures]) -> str:
    one = f[("predict-1", 16)]
    return (f"| 1-instance /predict at c16: p99 ≤ 5 ms | {one.p99_ms:.2f} ms "
            f"(p50 {one.p50_ms:.2f}) | {_yes(one.p99_ms <= 5)} |")


def _big(f: dict[tuple[str, int], Figures]) -> str:
    big = f[("predict-256", 1)]
    return (f"| 256-instance /predict at c1: p50 ≤ 5 ms | {big.p50_ms:.2f} ms "
            f"(server CPU {big.cpu_us:,.0f} µs) | {_yes(big.p50_ms <= 5)} |")


def _explained(rows: int, suffix: str, limit: float, what: str) -> Check:
    """Explaining costs at most `limit` more than plain scoring, in server CPU a request."""
    def check(f: dict[tuple[str, int], Figures]) -> str:
        plain, expl = f[(f"predict-{rows}", 1)], f[(f"predict-{rows}{suffix}", 1)]
        target = f"| explanations, {rows} instance(s), {what}, c1: ≤ {limit:+.0%} over plain scoring"
        if not (plain.p50_ms and plain.cpu_us):
            return f"{target} | no plain request completed within the load's time | **no figure** |"
        extra = expl.cpu_us / plain.cpu_us - 1
        return (f"{target} | server CPU {plain.cpu_us:,.0f} → {expl.cpu_us:,.0f} µs = "
                f"{extra:+.0%} (p50 {plain.p50_ms:.3f} → {expl.p50_ms:.3f} ms = "
                f"{expl.p50_ms / plain.p50_ms - 1:+.0%}) | {_yes(extra <= limit)} |")

    return check


def _near_bare(bare: dict[tuple[str, int], Figures]) -> Check:
    """The 256-instance path within 20% of a bare FastAPI route's server CPU a request."""
    def check(f: dict[tuple[str, int], Figures]) -> str:
        ratios = {c: f[("predict-256", c)].cpu_us / bare[("predict-256", c)].cpu_us
                  for c in (1, 16)}
        cells = "; ".join(f"c{c} {f[('predict-256', c)].cpu_us:,.0f} / "
                          f"{bare[('predict-256', c)].cpu_us:,.0f} µs = {r - 1:+.0%}"
                          for c, r in ratios.items())
        return (f"| 256-instance /predict: server CPU ≤ +20% over a bare FastAPI route | {cells} | "
                f"{_yes(max(ratios.values()) <= 1.2)} |")

    return check


def _yes(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _rows(t: Table, instances: dict[str, int], configs: list[str]) -> str:
    lines = ["| server | endpoint | c | req/s | instances/s | p50 ms | p99 ms | "
             "server CPU µs/req |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for (config, name, c), fig in t.items():
        if config not in configs:
            continue
        rows = instances[name]
        inst = f"{fig.rate * rows:,.0f}" if rows else "–"
        errors = f" ({fig.errors} errors)" if fig.errors else ""
        lines.append(f"| {config} | {name}{errors} | {c} | {fig.rate:,.0f} | {inst} | "
                     f"{fig.p50_ms:.2f} | {fig.p99_ms:.2f} | {fig.cpu_us:.0f} |")
    return "\n".join(lines) + "\n"


def pivot(t: Table, configs: list[str]) -> str:
    """The loads every server ran, one column per server."""
    shared = [key for key in dict.fromkeys((name, c) for _, name, c in t)
              if all((config, *key) in t for config in configs)]
    lines = ["| endpoint | c | " + " | ".join(configs) + " |",
             "|---|---:|" + "---|" * len(configs)]
    for name, c in shared:
        cells = [t[(config, name, c)] for config in configs]
        lines.append(f"| {name} | {c} | " + " | ".join(
            f"{f.rate:,.0f}, {f.p50_ms:.2f} / {f.p99_ms:.2f}, {f.cpu_us:.0f}" for f in cells) + " |")
    return "\n".join(lines) + "\n"


def against_peers(samples: dict[Load, list[Sample]], configs: list[str], context: Context) -> str:
    """The section comparing the service (the first of `configs`) with the others."""
    main, others = configs[0], configs[1:]
    return "\n".join([
        PEERS_BEGIN, "### Against other Python model servers\n", _preamble(context), PEERS_TEXT,
        "Server CPU µs a request: the median of the rounds (their range), and the service's "
        "median over each other server's (— where a server has no such route):\n",
        _cpu_ranges(samples, configs, main, others),
        "Each cell: req/s, p50 / p99 ms, server CPU µs a request (medians):\n",
        pivot(medians(samples), [c for c in configs if c != configs[-1]]), PEERS_END,
    ]) + "\n"


def _cpu_ranges(samples: dict[Load, list[Sample]], configs: list[str], main: str,
                others: list[str]) -> str:
    cpu = {(load.config, load.scenario.name, load.connections):
           [s.cpu_s_per_request * 1e6 for s in runs] for load, runs in samples.items()}
    keys = sorted(dict.fromkeys((name, c) for _, name, c in cpu),
                  key=lambda key: (key[0].startswith("infer"), key[0], key[1]))
    lines = ["| load | c | " + " | ".join(configs) + " | " +
             " | ".join(f"/ {other}" for other in others) + " |",
             "|---|---:|" + "---:|" * (len(configs) + len(others))]
    for name, c in keys:
        values = [cpu.get((config, name, c)) for config in configs]
        cells = ["—" if v is None else f"{statistics.median(v):,.0f} ({min(v):,.0f}–{max(v):,.0f})"
                 for v in values]
        ratios = ["—" if values[0] is None or v is None else
                  f"{statistics.median(values[0]) / statistics.median(v):.2f}"
                  for v in values[1:]]
        lines.append(f"| {name} | {c} | " + " | ".join(cells + ratios) + " |")
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str, begin: str = BEGIN, end: str = END) -> None:
    """Replace the generated section between `begin` and `end`, keep everything else
    (other scripts' sections); a new peers section goes right after the serving one."""
    text = path.read_text() if path.is_file() else f"# Benchmarks\n\n{BEGIN}\n{END}\n\n{TRAINING}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section.rstrip("\n") + rest.split(end, 1)[1]
    elif begin != BEGIN and END in text:
        head, rest = text.split(END, 1)
        text = head + END + "\n\n" + section.rstrip("\n") + rest
    else:
        text = text.rstrip("\n") + "\n\n" + section
    if "## Training speed" not in text:
        text = text.rstrip("\n") + "\n\n" + TRAINING
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)

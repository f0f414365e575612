"""Load the inference service with wrk and write the figures to docs/BENCHMARKS.md.

    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296 \\
        .venv/bin/python -m bench.serve [--model-dir DIR] [--seconds 3] [--repeats 3]

Every server configuration compared (batching wait, workers) runs at the same time on
its own port, and the loads are interleaved round by round, so background load on a
shared machine falls on all of them alike; figures are medians over the rounds.
Without --model-dir, the synthetic AFM (configs/synthetic-afm.toml) is trained once
into runs/bench-synthetic-afm and reused; with --paper, a bundle of the paper's Frappe
shape (10 fields, K = 256, T = 8, ~5,400 features) is trained on generated data into
runs/bench-paper-afm and only its 1- and 256-instance loads run. With --shapes, the 1- and
256-instance loads (plain, all pairs explained, top 3 pairs) run on bundles of 10 and 39
fields side by side, one server each, to show how serving cost grows with the fields: the
39-field bundle is trained on a generated Criteo-format log (configs/criteo-afm.toml).
With --peer NAME=PYTHON (mlserver, mlserver-nolog, kserve; PYTHON: that server's own venv,
see bench/peers),
the service, each peer and the bare route serve the same bundle side by side on the loads
of PEER_LOADS, and the section "Against other Python model servers" is (re)written.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from bench import report
from bench.harness import WRK_INSTALL_HINT, ServerProcess, run_wrk, wrk_path
from bench.peers import PEERS, READY_PATH, version
from bench.scenarios import Load, Scenario, plan, scenarios
from model.manifest import Manifest
from training.criteo import synth as criteo_synth

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RUN = REPO / "runs" / "bench-synthetic-afm"
PAPER_RUN = REPO / "runs" / "bench-paper-afm"
PAPER_SHAPE = ["data.synthetic.num_fields=10", "data.synthetic.cardinality=540",
               "model.embed_dim=256", "model.attention_dim=8", "train.batch_size=4096"]
PAPER_LOADS = "predict-1,predict-1-explain,predict-256,predict-256-explain"
# --shapes: (label, run directory, config, overrides); the Criteo one trains on generated logs.
SHAPES = [
    ("10 fields, K 16, T 16", REPO / "runs" / "bench-10f-afm", "synthetic-afm.toml",
     ["data.synthetic.num_fields=10", "model.embed_dim=16", "model.attention_dim=16"]),
    ("10 fields, K 256, T 8 (paper)", PAPER_RUN, "synthetic-afm.toml", PAPER_SHAPE),
    ("39 fields, K 16, T 16 (Criteo)", REPO / "runs" / "bench-criteo-afm", "criteo-afm.toml",
     ["train.pretrain=''"]),
]
SHAPE_LOADS = [f"predict-{n}{suffix}" for n in (1, 256) for suffix in ("", "-explain", "-top3")]
CRITEO_ROWS = 50_000
BARE = [sys.executable, "-m", "uvicorn", "bench.bare:create", "--factory", "--http", "httptools",
        "--no-access-log", "--log-level", "warning"]
# Loads the bare route's server and the code before (--before) run beside the main server.
Loads = list[tuple[str, tuple[int, ...]]]  # scenario names and their concurrencies
BARE_LOADS: Loads = [("predict-1", (1, 16)), ("predict-256", (1, 16))]
BEFORE_LOADS: Loads = [("predict-1", (1, 16)), ("predict-1-explain", (1,)), ("predict-256", (1, 16)),
                ("predict-256-explain", (1,)), ("predict-256-top3", (1,))]
PEER_LOADS: Loads = [("predict-1", (1, 16)), ("predict-256", (1, 16)), ("infer-1", (16,))]
# glibc's allocator returns memory to the OS too eagerly for benchmark loads.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "4294967296", "MALLOC_TRIM_THRESHOLD_": "4294967296"}
log = logging.getLogger("bench.serve")


@dataclass(frozen=True)
class Config:
    """One server under test."""

    label: str
    workers: int
    wait_us: int | None  # None: the service's default
    tree: Path | None = None  # the service of another checkout (--before)
    bare: bool = False  # bench/bare.py instead of the service
    env: tuple[tuple[str, str], ...] = ()  # more settings (AFM_*)
    peer: tuple[str, str] | None = None  # another server (a key of PEERS, its venv's python)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, help="an existing bundle (default: train one)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs when training (speed "
                        "does not depend on how well the model fits)")
    parser.add_argument("--workers", type=int, default=1, help="workers of the main server")
    parser.add_argument("--large-wait-us", type=int, default=2000,
                        help="the larger AFM_BATCH_MAX_WAIT_US compared with 0 and the default")
    parser.add_argument("--seconds", type=int, default=3, help="duration of one load")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; figures are medians")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (it shares the cores)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "BENCHMARKS.md",
                        help="markdown file whose service section is (re)written")
    parser.add_argument("--only", help="comma-separated scenarios (e.g. ping,predict-1); "
                        "implies --no-write")
    parser.add_argument("--main-only", action="store_true",
                        help="no batching or workers comparison; implies --no-write")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--paper", action="store_true", help="the paper-shaped bundle instead, "
                        "1 and 256 instances on the main server; implies --no-write")
    parser.add_argument("--before", metavar="REV", help="also serve the code of git revision REV "
                        "(a temporary worktree) beside the main server")
    parser.add_argument("--shapes", action="store_true", help="bundles of 10 and 39 fields side "
                        "by side, 1 and 256 instances; implies --no-write")
    parser.add_argument("--peer", action="append", default=[], metavar="NAME=PYTHON",
                        type=_peer, help=f"also serve the bundle by another server ({', '.join(PEERS)}) "
                        "run by PYTHON (its own venv); only the comparison with the peers runs")
    args = parser.parse_args(argv)
    if args.shapes:
        args.no_write = True
    if args.paper:
        args.main_only, args.only = True, args.only or PAPER_LOADS
    if args.only or args.main_only:
        args.no_write = True  # the document holds complete runs only
    return args


def _peer(text: str) -> tuple[str, str]:
    name, _, python = text.partition("=")
    if name not in PEERS or not python:
        raise argparse.ArgumentTypeError(f"expected NAME=PYTHON with NAME one of {list(PEERS)}, "
                                         f"got {text!r}")
    if not os.access(python, os.X_OK):
        raise argparse.ArgumentTypeError(f"{python} is not an executable (the peer's venv python)")
    return name, python


def bundle_dir(args: argparse.Namespace) -> Path:
    if args.model_dir is not None:
        return Path(args.model_dir).resolve()
    run, shape = (PAPER_RUN, PAPER_SHAPE) if args.paper else (DEFAULT_RUN, [])
    if not (run / "manifest.json").is_file():
        log.info("training the synthetic AFM into %s", run)
        subprocess.run(
            [str(Path(sys.executable).with_name("afm-train")), "--config",
             str(REPO / "configs" / "synthetic-afm.toml"), "--out", str(run),
             "--set", f"train.epochs={args.epochs}", *(x for kv in shape for x in ("--set", kv))],
            check=True, stdout=subprocess.DEVNULL,
        )
    return run


def shape_bundle(run: Path, config: str, overrides: list[str], epochs: int) -> Path:
    """A bundle of the given shape, trained once into `run` (speed does not need a good fit)."""
    if (run / "manifest.json").is_file():
        return run
    log.info("training %s into %s", config, run)
    sets = [*overrides, f"train.epochs={epochs}"]
    with tempfile.TemporaryDirectory() as tmp:
        if config.startswith("criteo"):
            world = criteo_synth.World()
            for name, rows, seed in (("train.tsv", CRITEO_ROWS, 0), ("valid.tsv", CRITEO_ROWS // 5, 1)):
                criteo_synth.write(Path(tmp) / name, rows, world, seed)
            sets += [f"data.train={tmp}/train.tsv", f"data.validation={tmp}/valid.tsv",
                     f"data.cache_dir={tmp}/cache"]
        subprocess.run(
            [str(Path(sys.executable).with_name("afm-train")), "--config",
             str(REPO / "configs" / config), "--out", str(run),
             *(x for kv in sets for x in ("--set", kv))],
            check=True, stdout=subprocess.DEVNULL,
        )
    return run


def compare_shapes(args: argparse.Namespace, argv: list[str] | None) -> str:
    """The same loads at c1 on one server per shape, interleaved; a column per shape."""
    bundles = {label: shape_bundle(run, config, sets, args.epochs)
               for label, run, config, sets in SHAPES}
    loads = [Load(label, scenario, 1) for label, bundle in bundles.items()
             for name, scenario in scenarios(bundle).items() if name in SHAPE_LOADS]
    load_before = os.getloadavg()
    with ExitStack() as stack:
        servers: dict[str, ServerProcess] = {}
        for label, bundle in bundles.items():
            servers[label] = server = start(Config(label, 1, None), bundle)
            stack.callback(server.stop)
        for server in servers.values():
            server.wait_ready()
        samples = measure(servers, loads, args)
    return (f"    {command(argv)}\n\n"
            f"One worker each, default batching wait, c1; {args.repeats} rounds of {args.seconds} s, "
            f"medians; load average {report.load_text(load_before)} before, "
            f"{report.load_text(os.getloadavg())} after. Each cell: req/s, p50 / p99 ms, "
            "server CPU µs a request.\n\n" + report.pivot(report.medians(samples), list(bundles)))


def compare_peers(args: argparse.Namespace, argv: list[str] | None) -> str:
    """The service, the peers, the code before (--before) and the bare route, side by side."""
    model_dir = bundle_dir(args)
    all_scenarios = scenarios(model_dir)
    model = Manifest.read(model_dir).name
    compared: list[tuple[Config, Loads]] = [(Config("this service", 1, None), PEER_LOADS)]
    for name, python in args.peer:
        label = f"{PEERS[name].title} {version(python, PEERS[name].package)}"
        compared.append((Config(label, 1, None, peer=(name, python)), PEER_LOADS))
    compared.append((Config("bare FastAPI route", 1, None, bare=True), BARE_LOADS))
    load_before = os.getloadavg()
    with ExitStack() as stack:
        if args.before:
            tree = stack.enter_context(worktree(args.before))
            compared.insert(1, (Config(f"before ({args.before})", 1, None, tree=tree), PEER_LOADS))
        loads = [Load(config.label, _served(config, all_scenarios[name], model), c)
                 for config, wanted in compared for name, cs in wanted for c in cs
                 if not args.only or name in args.only.split(",")]
        servers: dict[str, ServerProcess] = {}
        for config, _ in compared:
            servers[config.label] = server = start(config, model_dir)
            stack.callback(server.stop)
        for server in servers.values():
            server.wait_ready()
        samples = measure(servers, loads, args)
    return report.against_peers(samples, [config.label for config, _ in compared], report.Context(
        command=command(argv), model_dir=model_dir, load_before=load_before,
        load_after=os.getloadavg(), seconds=args.seconds, repeats=args.repeats,
    ))


def _served(config: Config, scenario: Scenario, model: str) -> Scenario:
    """The scenario as `config`'s server takes it (a peer's /predict lives elsewhere)."""
    if config.peer is None:
        return scenario
    return replace(scenario, request=PEERS[config.peer[0]].request(scenario.request, model))


def configs(args: argparse.Namespace) -> list[Config]:
    other = 2 if args.workers == 1 else 1
    return [
        Config(f"{args.workers}w, wait default", args.workers, None),
        Config(f"{args.workers}w, wait 0", args.workers, 0),
        Config(f"{args.workers}w, wait {args.large_wait_us}", args.workers, args.large_wait_us),
        Config(f"{other}w, wait default", other, None),
    ]


def start(config: Config, model_dir: Path) -> ServerProcess:
    env = {**os.environ, **MALLOC_ENV}
    if config.bare:
        return ServerProcess([], {**env, "AFM_MODEL_DIR": str(model_dir)}, command=BARE)
    if config.peer is not None:
        name, python = config.peer
        peer = PEERS[name]
        return ServerProcess([], {**env, **dict(peer.env), "AFM_MODEL_DIR": str(model_dir),
                                  "PYTHONPATH": str(REPO)},
                             command=[python, "-m", peer.module], cwd=REPO, ready_path=READY_PATH)
    if config.wait_us is not None:
        env["AFM_BATCH_MAX_WAIT_US"] = str(config.wait_us)
    env.update(config.env)
    return ServerProcess(["--model-dir", str(model_dir), "--workers", str(config.workers)], env,
                         cwd=config.tree)


@contextmanager
def worktree(rev: str) -> Iterator[Path]:
    """A temporary, detached git worktree of `rev`, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="afm-before-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), rev], cwd=REPO,
                       check=True, capture_output=True)
        try:
            yield tree
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO,
                           check=False, capture_output=True)


def side_by_side(compared: list[tuple[Config, Loads]],
                 all_scenarios: dict[str, Scenario]) -> list[Load]:
    return [Load(config.label, all_scenarios[name], c)
            for config, loads in compared for name, cs in loads for c in cs]


def measure(
    servers: dict[str, ServerProcess], loads: list[Load], args: argparse.Namespace,
) -> dict[Load, list[report.Sample]]:
    """Warm every (server, scenario) up once, then run every load once per round."""
    warm = {(load.config, load.scenario.name): load.scenario for load in loads}
    for (config, _), scenario in warm.items():
        run_wrk(servers[config].url + scenario.request.path, 1, 16, args.threads,
                scenario.request, count=False)
    samples: dict[Load, list[report.Sample]] = {load: [] for load in loads}
    # The loads compared with each other one after the other (each server's load of a
    # request kind and concurrency, plain before explained): the load of other jobs on a
    # shared machine drifts within a round.
    ordered = sorted(loads, key=lambda load: (load.scenario.instances, load.connections,
                                              load.scenario.name))
    for round_ in range(args.repeats):
        log.info("round %d of %d (%d loads)", round_ + 1, args.repeats, len(loads))
        for load in ordered:
            samples[load].append(_sample(servers[load.config], load, args))
    return samples


def _sample(server: ServerProcess, load: Load, args: argparse.Namespace) -> report.Sample:
    before = server.cpu_split()
    request = load.scenario.request
    result = run_wrk(server.url + request.path, args.seconds, load.connections, args.threads,
                     request, count=False)
    main, other = (after - start for after, start in zip(server.cpu_split(), before, strict=True))
    if result.errors:
        log.warning("%s %s c%d: %d errors", load.config, load.scenario.name, load.connections,
                    result.errors)
    requests = max(result.requests, 1)
    return report.Sample(result, (main + other) / requests, other / requests)


def command(argv: list[str] | None) -> str:
    given = sys.argv[1:] if argv is None else argv
    return ("MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296 "
            f".venv/bin/python -m bench.serve {shlex.join(given)}").strip()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(argv)
    if wrk_path() is None:
        raise SystemExit(WRK_INSTALL_HINT)  # fail first
    if args.shapes:
        print(compare_shapes(args, argv))
        return 0
    if args.peer:
        text = compare_peers(args, argv)
        print(text)
        if not args.no_write:
            report.write_section(args.out, text, report.PEERS_BEGIN, report.PEERS_END)
            log.info("wrote %s", args.out)
        return 0
    model_dir = bundle_dir(args)
    chosen = configs(args)[:1] if args.main_only else configs(args)
    all_scenarios = scenarios(model_dir)
    loads = plan(all_scenarios, chosen[0].label, [c.label for c in chosen[1:3]],
                 [c.label for c in chosen[3:]])
    bare = Config("bare FastAPI route", 1, None, bare=True)
    compared: list[tuple[Config, Loads]] = [(bare, BARE_LOADS)]
    load_before = os.getloadavg()
    with ExitStack() as stack:
        if args.before:
            tree = stack.enter_context(worktree(args.before))
            compared.append((Config(f"before ({args.before})", 1, None, tree=tree), BEFORE_LOADS))
        loads += side_by_side(compared, all_scenarios)
        if args.only:
            loads = [load for load in loads if load.scenario.name in args.only.split(",")]
        servers: dict[str, ServerProcess] = {}
        for config in [*chosen, *(config for config, _ in compared)]:
            servers[config.label] = server = start(config, model_dir)
            stack.callback(server.stop)
        for server in servers.values():
            server.wait_ready()
        samples = measure(servers, loads, args)
    text = report.render(samples, chosen[0].label, report.Context(
        command=command(argv), model_dir=model_dir, load_before=load_before,
        load_after=os.getloadavg(), seconds=args.seconds, repeats=args.repeats,
    ), bare=bare.label, before=compared[1][0].label if args.before else None)
    print(text)
    if not args.no_write:
        report.write_section(args.out, text)
        log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Criteo-scale data: raw log -> shards -> (optionally) trained bundle, at several sizes.

    python -m bench.criteo --rows 1000000 --rows 10000000 [--train fm --train afm]
        [--scale 0.01 --planted 12] [--seed 2017 --seed 1 ...]

For each size: generate a synthetic Criteo-format log and a validation log a tenth its size
under --data-dir (once; reused), then preprocess them with `afm-train --prepare-only` into a
fresh cache (pass 1 counts, pass 2 encodes), then once more (the cache is reused), then
optionally train, once per --seed, each model by its committed config (the AFM's starts as
an FM of its own vectors), and a table compares them with the generator's Bayes-optimal
figures on the validation rows. Every stage runs as its own
process; its private memory (RssAnon: RSS minus file-backed pages, summed over the process
and all its children) is sampled every 0.1 s. One JSON line per stage goes to --results; a
Markdown table to stdout.

Stages run one at a time. Run it in the background with OMP_NUM_THREADS=1 on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = {"OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": "4294967296",
       "MALLOC_TRIM_THRESHOLD_": "4294967296"}
PASS_LINE = re.compile(r"(counting|encoding) (\S+): (\d+) rows in ([\d.]+) s "
                       r"\((\d+) rows/s(?:, ([\d.]+) s CPU)?\)")
PROGRESS_LINE = re.compile(r"epoch \d+/\d+: step (\d+)/(\d+), (\d+) samples/s")
SAMPLE_S = 0.1


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _rss_anon_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_anon_kib(root: int) -> int:
    """RssAnon summed over `root` and every descendant."""
    tree, total, todo = _children(), 0, [root]
    while todo:
        pid = todo.pop()
        total += _rss_anon_kib(pid)
        todo.extend(tree.get(pid, []))
    return total


@dataclass
class Stage:
    name: str
    command: list[str]
    seconds: float = 0.0
    peak_rss_anon_mib: float = 0.0
    cpu_seconds: float = 0.0
    stderr: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def run(self, timeout_s: float | None = None) -> Stage:
        """Run the command to its end (or for timeout_s, then stop it), sampling memory."""
        began = time.perf_counter()
        process = subprocess.Popen(self.command, cwd=REPO, env={**os.environ, **ENV},
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   start_new_session=True)
        peak, done = [0], threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], tree_rss_anon_kib(process.pid))
                done.wait(SAMPLE_S)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        before = os.times()
        try:
            out, err = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 15)
            out, err = process.communicate()
            self.extra["stopped_after_s"] = timeout_s
        after = os.times()
        done.set()
        sampler.join()
        self.seconds = time.perf_counter() - began
        self.cpu_seconds = (after.children_user - before.children_user
                            + after.children_system - before.children_system)
        self.peak_rss_anon_mib = peak[0] / 1024
        self.stderr = err
        if process.returncode not in (0, -15) and "stopped_after_s" not in self.extra:
            raise RuntimeError(f"{self.name} failed ({process.returncode}):\n{err[-3000:]}")
        self.extra["stdout"] = out.strip().splitlines()[-1:] if out.strip() else []
        return self

    def record(self) -> dict[str, Any]:
        return {"stage": self.name, "seconds": round(self.seconds, 2),
                "cpu_seconds": round(self.cpu_seconds, 2),
                "peak_rss_anon_mib": round(self.peak_rss_anon_mib, 1), **self.extra}


def du_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def generate(path: Path, rows: int, seed: int, scale: float, planted: int) -> dict[str, Any]:
    if Path(f"{path}.truth.json").is_file() and path.is_file():
        return {"stage": "generate", "file": str(path), "reused": True,
                **json.loads(Path(f"{path}.truth.json").read_text())}
    stage = Stage("generate", [str(BIN / "python"), "-m", "training.criteo.synth", "--rows", str(rows),
                               "--out", str(path), "--seed", str(seed), "--scale", str(scale),
                               "--planted", str(planted)]).run()
    truth = json.loads(Path(f"{path}.truth.json").read_text())
    return {**stage.record(), "file": str(path), "bytes": path.stat().st_size,
            "rows_per_s": round(rows / stage.seconds), **{k: truth[k] for k in
                                                          ("bayes_auc", "bayes_logloss", "positives")}}


def prepare(config: str, train: Path, validation: Path, cache: Path, label: str,
            sets: tuple[str, ...] = ()) -> dict[str, Any]:
    command = [str(BIN / "afm-train"), "--config", config, "--out", str(cache / "unused"),
               "--set", f"data.train={train}", "--set", f"data.validation={validation}",
               "--set", f"data.cache_dir={cache}", "--prepare-only"]
    stage = Stage(label, [*command, *(a for s in sets for a in ("--set", s))]).run()
    passes = [{"pass": m[0], "file": m[1], "rows": int(m[2]), "seconds": float(m[3]),
               "rows_per_s": int(m[4]), "cpu_seconds": float(m[5]) if m[5] else None}
              for m in PASS_LINE.findall(stage.stderr)]
    return {**stage.record(), "passes": passes, "cache_bytes": du_bytes(cache)}


def train(config: str, kind: str, train_file: Path, validation: Path, cache: Path, out: Path,
          minutes: float | None, sets: list[str]) -> dict[str, Any]:
    shutil.rmtree(out, ignore_errors=True)
    command = [str(BIN / "afm-train"), "--config", config, "--out", str(out),
               "--set", f"data.train={train_file}", "--set", f"data.validation={validation}",
               "--set", f"data.cache_dir={cache}", "--fresh"]
    for s in sets:
        command += ["--set", s]
    stage = Stage(f"train-{kind}", command).run(timeout_s=minutes * 60 if minutes else None)
    record = stage.record()
    progress = PROGRESS_LINE.findall(stage.stderr)
    if progress:  # the last minute-by-minute line: where a stopped run had got to
        step, steps, rate = progress[-1]
        record.update({"last_step": int(step), "steps_per_epoch": int(steps), "samples_per_s": int(rate)})
    history = out / "history.json"
    if history.is_file():
        h = json.loads(history.read_text())
        record.update({"best_metrics": h.get("best_metrics"), "epochs": h.get("epochs", [])})
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.criteo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, action="append", required=True, help="repeatable")
    parser.add_argument("--data-dir", type=Path, default=Path("/work/bench-data"))
    parser.add_argument("--scale", type=float, default=1.0, help="generator cardinalities x this")
    parser.add_argument("--planted", type=int, default=4, help="the generator's interacting pairs")
    parser.add_argument("--validation-rows", type=int, help="default: a tenth of --rows")
    parser.add_argument("--seed", dest="seeds", type=int, action="append", default=[],
                        help="training seed, repeatable (default: the configs')")
    parser.add_argument("--train", action="append", default=[], choices=["fm", "afm"])
    parser.add_argument("--train-minutes", type=float, help="stop each training after this long")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="for training runs")
    parser.add_argument("--results", type=Path, default=Path("/work/bench-data/criteo-results.jsonl"))
    parser.add_argument("--reuse-cache", action="store_true",
                        help="keep an existing cache (skip the first, uncached preprocessing)")
    args = parser.parse_args(argv)
    args.data_dir.mkdir(parents=True, exist_ok=True)
    world = "" if (args.scale, args.planted) == (1.0, 4) else f"-x{args.scale:g}-p{args.planted}"
    for rows in args.rows:
        tag = (f"{rows // 1_000_000}M" if rows >= 1_000_000 else str(rows)) + world
        train_file = args.data_dir / f"criteo-{tag}.train.tsv"
        validation = args.data_dir / f"criteo-{tag}.valid.tsv"
        cache = args.data_dir / f"cache-{tag}"
        records = [generate(train_file, rows, 0, args.scale, args.planted),
                   generate(validation, args.validation_rows or max(rows // 10, 1000), 1, args.scale,
                            args.planted)]
        config = str(REPO / "configs" / "criteo-fm.toml")
        if not (args.reuse_cache and cache.is_dir()):
            shutil.rmtree(cache, ignore_errors=True)
            records.append(prepare(config, train_file, validation, cache, "prepare"))
        records.append(prepare(config, train_file, validation, cache, "prepare-cached"))
        for seed in args.seeds or [None]:
            suffix, sets = ("", args.sets) if seed is None else (f"-s{seed}", [*args.sets, f"seed={seed}"])
            for kind in ("fm", "afm"):
                if kind not in args.train:
                    continue
                out = args.data_dir / f"run-{tag}-{kind}{suffix}"
                record = train(str(REPO / "configs" / f"criteo-{kind}.toml"), kind, train_file,
                               validation, cache, out, args.train_minutes, sets)
                records.append({**record, "seed": seed})
        with args.results.open("a") as f:
            for record in records:
                f.write(json.dumps({"rows": rows, **record}) + "\n")
        report(rows, records)
        if {"fm", "afm"} <= set(args.train):
            compare(records, json.loads(Path(f"{validation}.truth.json").read_text()))
    return 0


def report(rows: int, records: list[dict[str, Any]]) -> None:
    print(f"\n{rows:,} rows")
    print("| stage | wall s | CPU s | peak private MiB | notes |\n|---|---|---|---|---|")
    for r in records:
        notes = ""
        if r["stage"] == "generate":
            notes = ("reused" if r.get("reused")
                     else f"{r['rows_per_s']:,} rows/s, {r['bytes'] / 2**30:.2f} GiB")
        elif r["stage"].startswith("prepare"):
            notes = "; ".join(f"{p['pass']} {p['file']} {p['rows_per_s']:,} rows/s" for p in r["passes"])
            notes += f"; cache {r['cache_bytes'] / 2**30:.2f} GiB"
        elif r.get("best_metrics"):
            rates = [round(e["samples_per_second"]) for e in r.get("epochs", [])]
            notes = f"{json.dumps(r['best_metrics'])}; samples/s per epoch {rates}"
        elif r.get("samples_per_s"):
            notes = (f"stopped at step {r['last_step']:,} of {r['steps_per_epoch']:,}: "
                     f"{r['samples_per_s']:,} samples/s")
        print(f"| {r['stage']} | {r.get('seconds', '')} | {r.get('cpu_seconds', '')} | "
              f"{r.get('peak_rss_anon_mib', '')} | {notes} |")


def compare(records: list[dict[str, Any]], truth: dict[str, Any]) -> None:
    """FM against AFM per seed: the FM's best epoch for each metric separately (the strictest
    comparison), the AFM's figures at its best epoch."""
    runs = {(r["seed"], r["stage"]): r for r in records if r["stage"].startswith("train-")}
    print("\n| seed | FM best AUC | FM best logloss | AFM AUC | AFM logloss | AFM better in |\n"
          "|---|---|---|---|---|---|")
    rows = []
    for seed in dict.fromkeys(seed for seed, _ in runs):
        fm, afm = runs.get((seed, "train-fm")), runs.get((seed, "train-afm"))
        if not (fm and afm and fm.get("epochs") and afm.get("best_metrics")):
            continue
        fm_auc = max(e["validation_auc"] for e in fm["epochs"])
        fm_logloss = min(e["validation_logloss"] for e in fm["epochs"])
        auc, logloss = afm["best_metrics"]["auc"], afm["best_metrics"]["logloss"]
        rows.append((fm_auc, fm_logloss, auc, logloss))
        better = [name for name, won in (("AUC", auc > fm_auc), ("logloss", logloss < fm_logloss)) if won]
        print(f"| {seed} | {fm_auc:.5f} | {fm_logloss:.5f} | {auc:.5f} | {logloss:.5f} | "
              f"{' and '.join(better) or 'neither'} |")
    if rows:
        means = [sum(column) / len(rows) for column in zip(*rows, strict=True)]
        print(f"| mean | {means[0]:.5f} | {means[1]:.5f} | {means[2]:.5f} | {means[3]:.5f} | |")
    print(f"| Bayes-optimal | {truth['bayes_auc']:.5f} | {truth['bayes_logloss']:.5f} | | | |")


if __name__ == "__main__":
    sys.exit(main())

"""Preprocessing shared out: one process, one process with 2 workers, and 2 torchrun ranks.

    python -m bench.prepare_shares --train /work/bench-data/criteo-10M.tsv \\
        --validation /work/bench-data/criteo-10M.valid.tsv [--cache-root /work/bench-data/shares]

Each setup runs `afm-train --config configs/criteo-fm.toml --prepare-only` on the same log
into its own empty cache, one after the other, and checks that all of them wrote the same
shards. Every process's private memory (RssAnon) is sampled every 0.1 s; the table gives
the wall time, the CPU time of the whole process tree, each pass's summary line and the peak
private memory of every process (launcher, ranks, workers). The load average is read before
and after each setup. Generate a log with `python -m training.criteo.synth` (bench.criteo).
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.criteo import BIN, ENV, PASS_LINE, REPO, SAMPLE_S, _children, _rss_anon_kib

SETUPS = {
    "1 process": [str(BIN / "afm-train")],
    "1 process, data.workers=2": [str(BIN / "afm-train")],
    "torchrun, 2 ranks": [str(BIN / "torchrun"), "--standalone", "--nproc-per-node=2", "--no-python",
                          str(BIN / "afm-train")],
}


def _tree(root: int) -> list[int]:
    tree, found, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(tree.get(pid, []))
    return found


def _name(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    text = " ".join(a.decode(errors="replace") for a in argv)
    if "multiprocessing" in text:
        return "worker"
    return "torchrun" if "torchrun" in text else "afm-train"


def run(label: str, train: Path, validation: Path, cache: Path) -> dict[str, Any]:
    shutil.rmtree(cache, ignore_errors=True)
    command = [*SETUPS[label], "--config", "configs/criteo-fm.toml", "--out", str(cache / "unused"),
               "--set", f"data.train={train}", "--set", f"data.validation={validation}",
               "--set", f"data.cache_dir={cache}", "--prepare-only"]
    if "workers" in label:
        command += ["--set", "data.workers=2"]
    load_before = os.getloadavg()
    began, before = time.perf_counter(), os.times()
    process = subprocess.Popen(command, cwd=REPO, env={**os.environ, **ENV}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    peaks: dict[int, int] = {}
    names: dict[int, str] = {}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for pid in _tree(process.pid):
                peaks[pid] = max(peaks.get(pid, 0), _rss_anon_kib(pid))
                names.setdefault(pid, _name(pid))
            done.wait(SAMPLE_S)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = process.communicate()
    done.set()
    sampler.join()
    seconds, after = time.perf_counter() - began, os.times()
    if process.returncode:
        raise RuntimeError(f"{label} failed:\n{err[-3000:]}")
    cpu = after.children_user - before.children_user + after.children_system - before.children_system
    memory = sorted(((names[pid], round(kib / 1024)) for pid, kib in peaks.items() if kib),
                    key=lambda item: -item[1])
    return {"setup": label, "seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1),
            "passes": [" ".join(m[:5]) for m in PASS_LINE.findall(err)],
            "peak_rss_anon_mib": memory, "load_before": load_before, "load_after": os.getloadavg(),
            "prepared": json.loads(out.strip().splitlines()[-1])}


def same_shards(first: dict[str, Any], other: dict[str, Any]) -> bool:
    for split in ("train", "validation"):
        a, b = Path(first["prepared"][split]), Path(other["prepared"][split])
        names = sorted(p.name for p in a.iterdir())
        if names != sorted(p.name for p in b.iterdir()) or a.name != b.name:
            return False
        if any(not filecmp.cmp(a / n, b / n, shallow=False) for n in names):
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--validation", type=Path, required=True)
    parser.add_argument("--cache-root", type=Path, default=Path("/work/bench-data/shares"))
    parser.add_argument("--setup", action="append", choices=list(SETUPS), help="default: all three")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of every setup, interleaved")
    args = parser.parse_args(argv)
    setups = args.setup or list(SETUPS)
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in setups}
    for _ in range(args.repeat):
        for k, label in enumerate(setups):
            record = run(label, args.train, args.validation, args.cache_root / str(k))
            print(json.dumps(record), file=sys.stderr, flush=True)
            runs[label].append(record)
    print("| setup | wall, median | CPU, all processes | speed-up | peak private memory per process | "
          "same shards | load average before -> after |")
    print("|---|---|---|---|---|---|---|")
    first = statistics.median(r["seconds"] for r in runs[setups[0]])
    for label in setups:
        records = runs[label]
        seconds = statistics.median(r["seconds"] for r in records)
        cpu = statistics.median(r["cpu_seconds"] for r in records)
        # the k-th largest process of every round, at its highest
        ranked = [sorted(r["peak_rss_anon_mib"], key=lambda item: -item[1]) for r in records]
        memory = ", ".join(f"{ranked[0][i][0]} {max(round_[i][1] for round_ in ranked)} MiB"
                           for i in range(min(len(round_) for round_ in ranked)))
        load = ", ".join(f"{r['load_before'][0]:.2f} -> {r['load_after'][0]:.2f}" for r in records)
        same = same_shards(runs[setups[0]][-1], records[-1])
        print(f"| {label} | {seconds:.1f} s ({', '.join(str(r['seconds']) for r in records)}) | "
              f"{cpu:.1f} s | {first / seconds:.2f}x | {memory} | {same} | {load} |")
    for k in range(len(setups)):
        shutil.rmtree(args.cache_root / str(k), ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`afm-tune`: hyperparameter search over the `[tune]` space of a run config, with Optuna.

Every trial is an ordinary run directory (`OUT/trial-0007`) trained by `training.run.run` with
the trial's overrides; TPE samples the space and a median pruner stops trials whose
validation metric lags at the same epoch. The study lives in `OUT/study.db` (SQLite), so the
same command again resumes a stopped search: finished trials are kept, a trial killed midway
resumes from its checkpoints. The best trial's config is written to `OUT/best.toml`, which
`afm-train --config` takes as it is; `OUT/summary.md` and `OUT/summary.json` hold the trials
and the importance of each hyperparameter.

An AFM trained from an FM (`train.pretrain`) shares one FM (`OUT/pretrain`) across trials
unless the space reaches the FM (`pretrain.*` keys, the embedding size, the data, ...).
With `parallel = N` workers, a study may end with up to N - 1 trials more than `n_trials`
(each worker checks the count when its trial ends).
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import shutil
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import optuna
from optuna.trial import FrozenTrial, Trial, TrialState

from training.config import (
    PRETRAIN_PREFIX,
    SHARED_WITH_PRETRAIN,
    RunConfig,
    SearchRange,
    TuneSection,
    apply_override,
)
from training.console import DEBUG_HELP, UsageError, read_config, setup_logging, user_errors
from training.metrics import LOWER_IS_BETTER, monitored

log = logging.getLogger(__name__)
STUDY_FILE = "study.db"
BEST_CONFIG = "best.toml"
BEST_PRETRAIN = "best-pretrain.toml"
SHARED_FM = "pretrain"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclass(frozen=True)
class Search:
    """One afm-tune invocation: the base config, its overrides and the output directory."""

    config: Path
    overrides: list[str]
    out: Path
    cfg: RunConfig
    tune: TuneSection
    metric: str

    @classmethod
    def load(cls, config: str, overrides: list[str], out: str) -> Search:
        cfg = read_config(config, overrides)
        if cfg.tune is None:
            raise UsageError(f"{config} has no [tune] section: declare the search space there "
                             '(e.g. [tune.space] "train.lr" = {low = 1e-4, high = 1e-2, log = true})')
        return cls(Path(config), overrides, Path(out), cfg, cfg.tune,
                   monitored(cfg.data.task, cfg.tune.metric or cfg.train.monitor))

    @property
    def direction(self) -> Literal["minimize", "maximize"]:
        return "minimize" if LOWER_IS_BETTER[self.metric] else "maximize"

    def study(self, seed: int) -> optuna.Study:
        storage = optuna.storages.RDBStorage(
            f"sqlite:///{(self.out / STUDY_FILE).resolve()}",
            engine_kwargs={"connect_args": {"timeout": 120}},  # several processes share the file
        )
        pruner: optuna.pruners.BasePruner = optuna.pruners.NopPruner()
        if self.tune.pruner == "median":
            pruner = optuna.pruners.MedianPruner(self.tune.startup_trials, self.tune.warmup_epochs)
        sampler = optuna.samplers.TPESampler(n_startup_trials=self.tune.startup_trials, seed=seed)
        return optuna.create_study(storage=storage, study_name=self.cfg.name, direction=self.direction,
                                   sampler=sampler, pruner=pruner, load_if_exists=True)


def suggest(trial: Trial, key: str, space: SearchRange) -> Any:
    if space.choices is not None:
        return trial.suggest_categorical(key, space.choices)
    assert space.low is not None and space.high is not None  # checked by SearchRange
    if isinstance(space.low, int) and isinstance(space.high, int) and not isinstance(space.step, float):
        return trial.suggest_int(key, space.low, space.high, step=space.step or 1, log=space.log)
    return trial.suggest_float(key, space.low, space.high, step=space.step, log=space.log)


def shares_fm(search: Search) -> bool:
    """Whether every trial can start from one FM: an AFM with a pretraining FM that no
    searched key reaches."""
    train = search.cfg.train
    if search.cfg.model.kind != "afm" or not train.pretrain or train.init_from:
        return False
    return not any(k.startswith(PRETRAIN_PREFIX) or k.startswith(SHARED_WITH_PRETRAIN)
                   for k in search.tune.space)


def train_shared_fm(search: Search) -> Path:
    from training.config import load_config
    from training.run import finished, run

    directory = search.out / SHARED_FM
    if finished(directory):
        return directory.resolve()
    fm_config = load_config(search.config.parent / search.cfg.train.pretrain, search.cfg.pretrain_overrides())
    log.info("one FM for every trial: training %s into %s", fm_config.source, directory)
    run(fm_config, directory)
    return directory.resolve()


def objective(search: Search, fm: Path | None) -> Any:
    from training.config import load_config
    from training.run import RESUME_DIR, run

    def trial_run(trial: Trial) -> float:
        values = {key: suggest(trial, key, space) for key, space in search.tune.space.items()}
        overrides = [*search.overrides, *(f"{k}={_value(v)}" for k, v in values.items())]
        if fm is not None:
            overrides.append(f"train.init_from={_value(str(fm))}")
        directory = Path(trial.user_attrs.get("resume_dir") or search.out / f"trial-{trial.number:04d}")
        trial.set_user_attr("dir", str(directory))
        cfg = load_config(search.config, overrides)

        def report(epoch: int, metrics: dict[str, float]) -> None:
            trial.report(metrics[search.metric], epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"{search.metric} {metrics[search.metric]:.5f} at epoch {epoch}")

        try:
            manifest = run(cfg, directory, on_epoch=report)
        except optuna.TrialPruned:
            shutil.rmtree(directory / RESUME_DIR, ignore_errors=True)
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)  # resumed from its checkpoints next time
            raise
        trial.set_user_attr("best_epoch", manifest.training.get("best_epoch"))
        trial.set_user_attr("metrics", manifest.metrics)
        return manifest.metrics[search.metric]

    return trial_run


def requeue_interrupted(study: optuna.Study) -> None:
    """Trials a killed search left running (or interrupted) go back in the queue with their
    parameters and run directory, so they resume from their checkpoints."""
    trials = study.get_trials(deepcopy=False)
    for trial in trials:
        stale = trial.state == TrialState.RUNNING
        if not (stale or (trial.state == TrialState.FAIL and trial.user_attrs.get("interrupted"))):
            continue
        directory = trial.user_attrs.get("dir")
        if stale:
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        claimed = any(t.number > trial.number and directory in (t.user_attrs.get("dir"),
                      t.user_attrs.get("resume_dir")) for t in trials)
        if directory and not claimed:
            log.info("trial %d was stopped midway: it resumes from %s", trial.number, directory)
            study.enqueue_trial(trial.params, user_attrs={"resume_dir": directory})


def work(config: str, overrides: list[str], out: str, fm: str, seed: int, threads: int,
         deadline: float | None) -> None:
    """One worker: trials until the study has its n_trials finished ones or time is up."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    search = Search.load(config, overrides, out)
    study = search.study(seed)
    started = time.time()
    left = None if deadline is None else deadline - started
    remaining = search.tune.n_trials - len(study.get_trials(deepcopy=False, states=FINISHED))
    if remaining <= 0 or (left is not None and left <= 0):
        return
    study.optimize(
        objective(search, Path(fm) if fm else None), n_trials=remaining, timeout=left, catch=(ValueError,),
        callbacks=[optuna.study.MaxTrialsCallback(search.tune.n_trials, states=FINISHED),
                   Progress(search, deadline, started)],
    )


@dataclass
class Progress:
    """After each trial: trials done, the best so far, and the time left."""

    search: Search
    deadline: float | None
    started: float
    ran: int = 0

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.ran += 1
        done = len(study.get_trials(deepcopy=False, states=FINISHED))
        total, metric = self.search.tune.n_trials, self.search.metric
        best = _best(study)
        best_text = f"best {metric} {best.value:.5f} (trial {best.number})" if best else "no best yet"
        now = time.time()
        if self.deadline is not None:
            left = f"{max(self.deadline - now, 0) / 60:.1f} min left of the time budget"
        else:  # this worker's pace, shared by all of them
            per_trial = (now - self.started) / self.ran
            left = f"~{per_trial * max(total - done, 0) / self.search.tune.parallel / 60:.1f} min left"
        value = "" if trial.value is None else f" {trial.value:.5f}"
        log.info("trial %d %s%s | %d/%d trials done, %s | %s", trial.number, trial.state.name.lower(),
                 value, done, total, best_text, left)


def _best(study: optuna.Study) -> FrozenTrial | None:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return study.best_trial if complete else None


def search_all(search: Search) -> optuna.Study:
    """Run the search, one trial at a time with all threads or `parallel` processes with one each."""
    search.out.mkdir(parents=True, exist_ok=True)
    study = search.study(search.cfg.seed)
    requeue_interrupted(study)
    finished = len(study.get_trials(deepcopy=False, states=FINISHED))
    fm = train_shared_fm(search) if shares_fm(search) and finished < search.tune.n_trials else None
    minutes = search.tune.timeout_minutes
    deadline = time.time() + 60 * minutes if minutes else None
    seed = search.cfg.seed + finished  # a resumed search does not redraw the first trials' parameters
    args = (str(search.config), search.overrides, str(search.out), str(fm or ""))
    parallel = search.tune.parallel
    if parallel == 1:
        work(*args, seed, 0, deadline)
        return study
    from training.run import prepare_data

    prepare_data(search.cfg)  # encoded once, before the workers look for it in the cache
    spawn = multiprocessing.get_context("spawn")
    workers = [spawn.Process(target=_worker, args=(*args, seed + 1000 * k, 1, deadline))
               for k in range(1, parallel)]
    for process in workers:
        process.start()
    work(*args, seed, 1, deadline)
    for process in workers:
        process.join()
    return study


def _worker(*args: Any) -> None:
    setup_logging()
    work(*args)


def summarise(search: Search, study: optuna.Study) -> dict[str, Any]:
    """The trials (best first), the importances, and the best config written as TOML."""
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: _rank(search, t))
    rows = [{"trial": t.number, "state": t.state.name.lower(), "value": t.value,
             "best_epoch": t.user_attrs.get("best_epoch"),
             "epochs": max(t.intermediate_values, default=None),
             "seconds": t.duration.total_seconds() if t.duration else None,
             "params": t.params, "dir": t.user_attrs.get("dir")} for t in trials]
    try:
        importances = optuna.importance.get_param_importances(study)
    except (ValueError, RuntimeError) as e:  # too few complete trials, or nothing varied
        log.info("no importances: %s", e)
        importances = {}
    best = _best(study)
    config = write_best_config(search, best) if best else None
    return {"metric": search.metric, "direction": search.direction, "best_config": config,
            "best": rows[0] if best else None, "importances": importances, "trials": rows}


def _rank(search: Search, trial: FrozenTrial) -> tuple[int, float]:
    order = {TrialState.COMPLETE: 0, TrialState.PRUNED: 1}.get(trial.state, 2)
    value = trial.value if trial.value is not None else 0.0
    return order, value if search.direction == "minimize" else -value


def write_best_config(search: Search, best: FrozenTrial) -> str:
    """The base config with the best trial's values, as a TOML file for `afm-train --config`
    (with its pretraining FM's config beside it when the search reached the FM)."""
    raw, fm_overrides = _read(search.config), []
    for override in [*search.overrides, *(f"{k}={_value(v)}" for k, v in best.params.items())]:
        key, _, value = override.partition("=")
        key = key.strip()
        if key.startswith(PRETRAIN_PREFIX):
            fm_overrides.append(override.strip()[len(PRETRAIN_PREFIX):])
        elif not key.startswith("tune."):
            apply_override(raw, key, value)
            if key.startswith(SHARED_WITH_PRETRAIN):
                fm_overrides.append(override)
    raw.pop("tune", None)
    pretrain = raw.get("train", {}).get("pretrain")
    if pretrain:
        fm_raw = _read(search.config.parent / pretrain)
        for override in fm_overrides:
            key, _, value = override.partition("=")
            apply_override(fm_raw, key, value)
        fm_raw.pop("tune", None)
        header = f"# The pretraining FM of {BEST_CONFIG}, from {search.config.parent / pretrain}.\n"
        (search.out / BEST_PRETRAIN).write_text(header + to_toml(fm_raw))
        raw["train"]["pretrain"] = BEST_PRETRAIN
    header = (f"# Best trial {best.number} of the afm-tune search in {search.out} over {search.config}: "
              f"validation {search.metric} {best.value:.6f}.\n")
    path = search.out / BEST_CONFIG
    path.write_text(header + to_toml(raw))
    return str(path)


def _read(path: Path) -> dict[str, Any]:
    with path.open("rb") as f:
        return tomllib.load(f)


def to_toml(tree: dict[str, Any]) -> str:
    """A config tree (tables, scalars, lists) as TOML that `tomllib` reads back unchanged."""
    lines: list[str] = []
    _table(tree, [], lines)
    return "\n".join(lines).lstrip("\n") + "\n"


def _table(tree: dict[str, Any], path: list[str], lines: list[str]) -> None:
    scalars = {k: v for k, v in tree.items() if not isinstance(v, dict)}
    if path and (scalars or not tree):
        lines += ["", f"[{'.'.join(_key(k) for k in path)}]"]
    lines += [f"{_key(k)} = {_value(v)}" for k, v in scalars.items()]
    for key, value in tree.items():
        if isinstance(value, dict):
            _table(value, [*path, key], lines)


def _key(key: str) -> str:
    return key if key and all(c.isalnum() or c in "_-" for c in key) else json.dumps(key)


def _value(value: Any) -> str:
    """A TOML literal (also what `--set` parses back to the same value)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise ValueError(f"cannot write {value!r} as TOML")


def markdown(summary: dict[str, Any]) -> str:
    metric = summary["metric"]
    lines = [f"# afm-tune: validation {metric} ({summary['direction']})", ""]
    if summary["best"]:
        lines += [f"Best: trial {summary['best']['trial']}, {metric} {summary['best']['value']:.6f}; "
                  f"config {summary['best_config']}", ""]
    if summary["importances"]:
        lines += ["| hyperparameter | importance |", "|---|---|"]
        lines += [f"| {k} | {v:.3f} |" for k, v in summary["importances"].items()] + [""]
    lines += [f"| trial | state | {metric} | best epoch | epochs | seconds | parameters |",
              "|---|---|---|---|---|---|---|"]
    for row in summary["trials"]:
        value = "" if row["value"] is None else f"{row['value']:.6f}"
        seconds = "" if row["seconds"] is None else f"{row['seconds']:.0f}"
        params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in row["params"].items())
        lines.append(f"| {row['trial']} | {row['state']} | {value} | {row['best_epoch'] or ''} | "
                     f"{row['epochs'] or ''} | {seconds} | {params} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="afm-tune", description="Search hyperparameters of a run "
                                     "config's [tune] space with Optuna; rerun to resume.")
    parser.add_argument("--config", required=True, help="a TOML run config with a [tune] section")
    parser.add_argument("--out", required=True, help="study directory: trial runs, study.db, best.toml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value for every trial, e.g. tune.n_trials=40 (repeatable)")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    args = parser.parse_args(argv)
    setup_logging()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own progress line says it shorter
    with user_errors("afm-tune", args.debug):
        search = Search.load(args.config, args.overrides, args.out)
        study = search_all(search)
        summary = summarise(search, study)
    (search.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    text = markdown(summary)
    (search.out / "summary.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

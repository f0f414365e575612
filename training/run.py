"""One training run: data -> shards -> model -> fit -> checkpoint, history, plots, bundle."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.afm import AFM, FM, ModelConfig, PairModel, build_model, init_from_fm, start_as_fm
from model.calibration import Calibration
from model.features import FeatureSpace
from model.manifest import Manifest
from training import formats
from training.calibrate import fit as fit_calibration
from training.config import RunConfig, load_config
from training.data import Prepared
from training.distributed import Context, barrier
from training.export import Serving, write_bundle
from training.loop import evaluation_shift, predict
from training.metrics import evaluate_predictions
from training.numerics import flushing_denormals
from training.plots import save_plots
from training.stream.team import Team
from training.trainer import Checkpointing, FitResult, Trainer
from training.warm_start import index_mapping, warm_start

log = logging.getLogger(__name__)
MODEL_CHECKPOINT = "checkpoint.pt"
"""A run directory's finished model: `{"model", "model_config", "metrics", "epoch"}`."""
RESUME_DIR = "checkpoints"
"""A run directory's resumable training state while the run is under way."""
PRETRAIN = "pretrain"


def prepare_data(cfg: RunConfig, previous: FeatureSpace | None = None,
                 context: Context | None = None) -> Prepared:
    """The run's data as shard sets in the data cache, encoded once and reused, by its
    format (`training.formats`); a format that can grows the `previous` model's vocabulary
    when given one (day-by-day retraining). Under torchrun every rank calls this: the
    streamed formats share the work among the ranks (and `data.workers` processes in each);
    for the others rank 0 prepares while the rest wait, then open its cache."""
    context = context or Context()
    prepare = formats.preparer(cfg.data.format)
    team = Team.of(context, cfg.data.workers)
    if formats.on_every_rank(cfg.data.format):
        prepared = prepare(cfg.data, Path(cfg.data.cache_dir), previous, cfg.seed, team)
    else:
        if context.is_main:
            prepare(cfg.data, Path(cfg.data.cache_dir), previous, cfg.seed, team)
        barrier(context)  # the others find rank 0's shards in the cache
        prepared = prepare(cfg.data, Path(cfg.data.cache_dir), previous, cfg.seed, team)
    log.info(
        "%s data: %d train, %d validation rows; %d fields, %d features; %d validation values out of "
        "vocabulary", cfg.name, len(prepared.train), len(prepared.validation),
        prepared.space.num_fields, prepared.space.num_features, prepared.validation.oov,
    )
    for name, shards in (("train", prepared.train), ("validation", prepared.validation)):
        if shards.downsampling.negative_keep_rate < 1.0:
            log.info("%s %s: %s", cfg.name, name, shards.downsampling.describe())
    return prepared


def model_config(cfg: RunConfig, space: FeatureSpace) -> ModelConfig:
    return ModelConfig(
        num_features=space.num_features, num_fields=space.num_fields, **cfg.model.model_dump()
    )


def finished(run_dir: Path) -> bool:
    """Whether `run_dir` holds a finished run's model (which a later run may reuse as it is)."""
    return (run_dir / MODEL_CHECKPOINT).is_file() and not (run_dir / RESUME_DIR).exists()


def load_checkpoint(run_dir: Path) -> PairModel:
    checkpoint = torch.load(run_dir / MODEL_CHECKPOINT, map_location="cpu", weights_only=True)
    model = build_model(ModelConfig(**checkpoint["model_config"]))
    model.load_state_dict(checkpoint["model"])
    return model


def _initial_weights(model: PairModel, cfg: RunConfig, out: Path, prepared: Prepared,
                     context: Context) -> None:
    """`train.init_from`: start from a previous run's model (an FM, or yesterday's model on a
    grown vocabulary); else the paper protocol's `train.pretrain`: train the FM first."""
    if cfg.train.init_from:
        previous_dir = Path(cfg.train.init_from)
        previous = load_checkpoint(previous_dir)
        mapping = prepared.mapping
        if mapping is None:
            mapping = index_mapping(Manifest.read(previous_dir).feature_space(), prepared.space)
        warm_start(model, previous, mapping)
        return
    if not (isinstance(model, AFM) and cfg.train.pretrain):
        return
    pretrain_dir = out / PRETRAIN
    if finished(pretrain_dir):
        log.info("paper protocol: reusing the finished FM in %s", pretrain_dir)
    else:
        fm_config = load_config(Path(cfg.source).parent / cfg.train.pretrain, cfg.pretrain_overrides())
        log.info("paper protocol: training the FM of %s first", fm_config.source)
        run(fm_config, pretrain_dir, context)
    fm = load_checkpoint(pretrain_dir)
    if not isinstance(fm, FM):
        raise ValueError(f"AFM starts from an FM, got a {fm.config.kind} checkpoint")
    init_from_fm(model, fm)


def run(cfg: RunConfig, out: Path, context: Context | None = None, fresh: bool = False,
        on_epoch: Callable[[int, dict[str, float]], None] = lambda epoch, metrics: None) -> Manifest:
    """Train `cfg` into the run directory `out`, resuming a run killed there unless `fresh`.
    Under torchrun every rank calls this; rank 0 writes and every rank returns the manifest.
    `on_epoch` sees each epoch's validation metrics (not the pretraining FM's)."""
    context = context or Context()
    out.mkdir(parents=True, exist_ok=True)
    if fresh and context.is_main:
        for stale in (out / RESUME_DIR, out / PRETRAIN / RESUME_DIR):
            shutil.rmtree(stale, ignore_errors=True)
    with flushing_denormals() as flushed:  # every training entry point comes through here
        return _run(cfg, out, context, flushed, on_epoch)


def _run(cfg: RunConfig, out: Path, context: Context, flushed: bool,
         on_epoch: Callable[[int, dict[str, float]], None]) -> Manifest:
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    start = Manifest.read(Path(cfg.train.init_from)) if cfg.train.init_from else None
    previous = start.feature_space() if start else None
    prepared = prepare_data(cfg, previous, context)
    model = build_model(model_config(cfg, prepared.space))
    _initial_weights(model, cfg, out, prepared, context)
    if cfg.train.uniform_start and isinstance(model, AFM) and (start is None or start.kind == "fm"):
        # an AFM from yesterday's AFM keeps the attention it learned
        start_as_fm(model)
    threads = torch.get_num_threads()
    log.info("%s: %d parameters, %d thread%s", cfg.name, sum(p.numel() for p in model.parameters()),
             threads, "" if threads == 1 else "s")
    checkpoints = Checkpointing(out / RESUME_DIR, cfg.train.checkpoint_every_steps,
                                60 * cfg.train.checkpoint_every_minutes, cfg.identity())
    label_range = prepared.label_range(cfg.data.task)
    result = Trainer(model, prepared.train, prepared.validation, cfg.data.task, label_range,
                     cfg.train, cfg.seed, context, checkpoints, on_epoch).fit()
    log.info("best epoch %d: %s (%.0fs)", result.best_epoch, result.best_metrics, result.seconds)
    if context.is_main:
        _write_run(out, cfg, model, prepared, label_range, result, context, flushed)
    barrier(context)
    return Manifest.read(out)


def _write_run(out: Path, cfg: RunConfig, model: PairModel, prepared: Prepared,
               label_range: tuple[float, float], result: FitResult, context: Context,
               flushed: bool) -> None:
    torch.save(
        {"model": model.state_dict(), "model_config": model.config.to_dict(),
         "metrics": result.best_metrics, "epoch": result.best_epoch},
        out / MODEL_CHECKPOINT,
    )
    serving = Serving(cfg.data.task, label_range, prepared.train.downsampling.negative_keep_rate)
    served = _served_validation(cfg, model, prepared) if cfg.data.task == "binary" else None
    history: dict[str, Any] = {
        "config": cfg.model_dump(), "best_epoch": result.best_epoch,
        "best_metrics": result.best_metrics, "seconds": result.seconds, "epochs": result.history}
    metrics = result.best_metrics  # the manifest's: those of what the bundle serves
    if served is not None:
        serving = replace(serving, calibration=served.calibration)
        if served.metrics:
            history["calibrated_metrics"] = metrics = served.metrics
    (out / "history.json").write_text(json.dumps(history, indent=2))
    manifest = write_bundle(
        out, model, prepared.space, name=cfg.name, version=cfg.version, serving=serving,
        validation=prepared.validation,
        training={**cfg.model_dump(exclude={"source", "overrides"}), "best_epoch": result.best_epoch,
                  "world_size": context.world_size, "backend": context.backend or "none",
                  "threads": torch.get_num_threads(), "flush_denormal": flushed,
                  "sparse_tables": result.sparse_tables},
        data=prepared.fingerprints, metrics=metrics, table_dtype=cfg.export.table_dtype,
    )
    save_plots(out, result.history, manifest,
               None if served is None else (served.labels, served.probabilities))
    shutil.rmtree(out / RESUME_DIR, ignore_errors=True)  # finished: nothing left to resume


@dataclass
class _Served:
    """The validation rows as the bundle serves them (binary tasks)."""

    calibration: Calibration
    labels: np.ndarray
    probabilities: np.ndarray
    metrics: dict[str, float]
    """Of the calibrated probabilities, on the rows the map was fitted on (empty without one)."""


def _served_validation(cfg: RunConfig, model: PairModel, prepared: Prepared) -> _Served:
    """Score the validation rows with the final model, on the served logit scale (their own,
    if they are downsampled), and fit `train.calibration` on them. The probabilities are
    rounded to float32 as the graph serves them, so that the metrics are afm-eval's."""
    scores, labels = predict(model, prepared.validation, cfg.train.eval_batch_size)
    scores = scores + evaluation_shift(prepared.train, prepared.validation)
    calibration = fit_calibration(cfg.calibration(), scores, labels)
    probabilities = calibration.probability(scores).astype(np.float32)
    if calibration.kind == "none":
        return _Served(calibration, labels, probabilities, {})
    metrics = evaluate_predictions("binary", labels, probabilities, (0.0, 1.0))
    log.info("calibration %s fitted on %d validation rows: logloss %.5f, calibration %.4f "
             "(measured on the rows it was fitted on)", calibration.kind, len(labels),
             metrics["logloss"], metrics["calibration"])
    return _Served(calibration, labels, probabilities, metrics)

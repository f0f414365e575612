"""One training run: data -> model -> fit -> checkpoint, history, plots, bundle."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from model.afm import AFM, FM, ModelConfig, PairModel, build_model, init_from_fm
from model.features import FeatureSpace
from model.manifest import Manifest
from training import libfm, synthetic
from training.config import RunConfig, load_config
from training.data import Dataset, Splits, binary_labels, fingerprint
from training.export import write_bundle
from training.loop import fit
from training.plots import save_plots

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint.pt"


@dataclass
class Prepared:
    space: FeatureSpace
    splits: Splits
    label_range: tuple[float, float]


def prepare_data(cfg: RunConfig) -> Prepared:
    data = cfg.data
    if data.format == "libfm":
        train_rows, valid_rows = libfm.read_libfm(data.train), libfm.read_libfm(data.validation)
        space = libfm.feature_space(train_rows, data.fields, data.min_count)
        train = libfm.encode(space, train_rows, binary_labels(train_rows.labels, data.task))
        validation = libfm.encode(space, valid_rows, binary_labels(valid_rows.labels, data.task))
        prints = {
            "train": fingerprint(data.train, len(train)),
            "validation": fingerprint(data.validation, len(validation)),
        }
        splits = Splits(train, validation, prints)
    elif data.format == "tabular":
        from training import tabular

        space, splits = tabular.load(data)
    else:
        spec = synthetic.SyntheticSpec.model_validate(data.synthetic)
        space, train, validation = synthetic.datasets(spec)
        splits = Splits(train, validation, {})
    log.info(
        "data: %d train, %d validation rows; %d fields, %d features; %d validation values out of vocabulary",
        len(splits.train), len(splits.validation), space.num_fields, space.num_features,
        splits.validation.oov,
    )
    return Prepared(space, splits, _label_range(splits.train, data.task))


def _label_range(train: Dataset, task: str) -> tuple[float, float]:
    if task == "binary":
        return (0.0, 1.0)
    return (float(train.labels.min()), float(train.labels.max()))


def model_config(cfg: RunConfig, space: FeatureSpace) -> ModelConfig:
    return ModelConfig(
        num_features=space.num_features, num_fields=space.num_fields, **cfg.model.model_dump()
    )


def load_checkpoint(run_dir: Path) -> PairModel:
    checkpoint = torch.load(run_dir / CHECKPOINT, map_location="cpu", weights_only=True)
    model = build_model(ModelConfig(**checkpoint["model_config"]))
    model.load_state_dict(checkpoint["model"])
    return model


def _start_from_fm(model: AFM, cfg: RunConfig, out: Path) -> None:
    if cfg.train.init_from:
        fm = load_checkpoint(Path(cfg.train.init_from))
    else:
        fm_config = load_config(Path(cfg.source).parent / cfg.train.pretrain)
        log.info("paper protocol: training the FM of %s first", fm_config.source)
        run(fm_config, out / "pretrain")
        fm = load_checkpoint(out / "pretrain")
    if not isinstance(fm, FM):
        raise ValueError(f"AFM starts from an FM, got a {fm.config.kind} checkpoint")
    init_from_fm(model, fm)


def run(cfg: RunConfig, out: Path) -> Manifest:
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    prepared = prepare_data(cfg)
    model = build_model(model_config(cfg, prepared.space))
    if isinstance(model, AFM) and (cfg.train.pretrain or cfg.train.init_from):
        _start_from_fm(model, cfg, out)
    log.info("%s: %d parameters", cfg.name, sum(p.numel() for p in model.parameters()))
    splits = prepared.splits
    result = fit(model, splits.train, splits.validation, cfg.data.task, prepared.label_range,
                 cfg.train, cfg.seed)
    log.info("best epoch %d: %s (%.0fs)", result.best_epoch, result.best_metrics, result.seconds)
    torch.save(
        {"model": model.state_dict(), "model_config": model.config.to_dict(),
         "metrics": result.best_metrics, "epoch": result.best_epoch},
        out / CHECKPOINT,
    )
    (out / "history.json").write_text(json.dumps(
        {"config": cfg.model_dump(), "best_epoch": result.best_epoch,
         "best_metrics": result.best_metrics, "seconds": result.seconds,
         "epochs": result.history}, indent=2))
    manifest = write_bundle(
        out, model, prepared.space, name=cfg.name, version=cfg.version, task=cfg.data.task,
        label_range=prepared.label_range, validation=splits.validation,
        training={**cfg.model_dump(), "best_epoch": result.best_epoch},
        data=splits.fingerprints, metrics=result.best_metrics,
    )
    save_plots(out, result.history, manifest)
    return manifest

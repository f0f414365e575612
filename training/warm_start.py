"""Starting from a previous run's model (`train.init_from`).

Two uses: the paper's protocol (an AFM starts from a trained FM), and day-by-day retraining
(today's model starts from yesterday's, on a vocabulary that has grown). Both go through an
index mapping from the previous feature table to the new one: a known value keeps its
learned vector (and linear weight), a new value starts from the new model's initialisation.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import torch

from model.afm import AFM, FM, PairModel, init_from_fm
from model.features import FeatureSpace, FieldKind

log = logging.getLogger(__name__)


def index_mapping(old: FeatureSpace, new: FeatureSpace) -> np.ndarray:
    """(old.num_features,) int64: the new index of each old index, by field and value name;
    -1 where the new space does not hold the value. OOV, missing and numeric indices map to
    their counterparts in fields of the same name."""
    mapping = np.full(old.num_features, -1, dtype=np.int64)
    mapping[0] = 0
    position = {name: p for p, name in enumerate(new.field_names)}
    for p, spec in enumerate(old.fields):
        q = position.get(spec.name)
        if q is None or new.fields[q].kind != spec.kind:
            continue
        mapping[old.offsets[p]] = new.offsets[q]  # OOV (a numeric field's own index)
        if spec.kind == FieldKind.NUMERIC:
            continue
        for k, value in enumerate(spec.known):
            index = new.index_of(q, value)
            if index is not None:
                mapping[old.offsets[p] + 1 + k] = index
        old_missing, new_missing = old.missing_index(p), new.missing_index(q)
        if old_missing is not None and new_missing is not None:
            mapping[old_missing] = new_missing
    return mapping


def warm_start(model: PairModel, previous: PairModel, mapping: np.ndarray) -> None:
    """Load `previous`'s weights into `model` through `mapping` (see `index_mapping`).

    Per-feature tables (embeddings, linear weights) are copied row by row; everything else
    is copied as it is when both models are of one kind. An AFM starting from an FM follows
    the paper's protocol (`init_from_fm`)."""
    if len(mapping) != previous.config.num_features:
        raise ValueError(f"mapping of {len(mapping)} indices for a table of {previous.config.num_features}")
    state = _remapped(previous, model, mapping)
    if isinstance(model, AFM) and isinstance(previous, FM):
        fm = FM(replace(previous.config, num_features=model.config.num_features))
        fm.load_state_dict(state)
        init_from_fm(model, fm)
    elif model.config.kind == previous.config.kind:
        model.load_state_dict(state)
    else:
        raise ValueError(f"a {model.config.kind} model cannot start from a {previous.config.kind} one")
    kept = int((mapping[1:] >= 0).sum())
    log.info("warm start: %d of %d previous features kept, %d new", kept, len(mapping) - 1,
             model.config.num_features - 1 - len(np.unique(mapping[mapping > 0])))


def _remapped(previous: PairModel, model: PairModel, mapping: np.ndarray) -> dict[str, torch.Tensor]:
    """`previous`'s state with every per-feature table moved to the new table's rows; rows
    that no previous feature maps to keep `model`'s initial values."""
    fresh = model.state_dict()
    state = dict(previous.state_dict())
    kept = torch.from_numpy(np.flatnonzero(mapping >= 0))
    target = torch.from_numpy(mapping[mapping >= 0])
    for name, table in state.items():
        per_feature = table.dim() and table.shape[0] == previous.config.num_features
        if per_feature and name in fresh and fresh[name].shape[0] == model.config.num_features:
            moved = fresh[name].clone()
            moved[target] = table[kept]
            state[name] = moved
    return state

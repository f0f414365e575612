"""The loop's small deciders: early stopping, the optimizer's parameter groups and
schedule, the regularisation terms and the pretraining freeze."""

import pytest
import torch

from model.afm import AFM, ModelConfig
from training.config import TrainSection
from training.loop import EarlyStopping, penalty
from training.optim import freeze_pretrained, make_optimizer, make_schedule
from training.shards import Batch


def test_early_stopping_tracks_the_best_epoch_and_patience() -> None:
    stopping = EarlyStopping("regression", patience=2)
    assert stopping.update(1, 0.5) and stopping.update(2, 0.4)
    assert not stopping.update(3, 0.45) and not stopping.should_stop
    assert not stopping.update(4, 0.41) and stopping.should_stop
    assert (stopping.best, stopping.best_epoch) == (0.4, 2)


def test_early_stopping_on_auc_wants_higher() -> None:
    stopping = EarlyStopping("binary", patience=1)
    assert stopping.update(1, 0.8) and not stopping.update(2, 0.7)
    assert stopping.best == 0.8


def test_attention_lr_gives_the_new_weights_their_own_rate() -> None:
    model = AFM(ModelConfig(kind="afm", num_features=10, num_fields=3, embed_dim=4))
    optimizer = make_optimizer(model, TrainSection(optimizer="adam", lr=0.001, attention_lr=0.01))
    pretrained, new = optimizer.param_groups
    assert (pretrained["lr"], new["lr"]) == (0.001, 0.01)
    assert any(p is model.p for p in new["params"])
    assert any(p is model.embedding.embedding.weight for p in pretrained["params"])
    total = sum(p.numel() for group in optimizer.param_groups for p in group["params"])
    assert total == sum(p.numel() for p in model.parameters())
    assert len(make_optimizer(model, TrainSection(optimizer="adagrad")).param_groups) == 1


def test_early_stopping_defaults_behave_as_before_on_the_watched_metric() -> None:
    stopping = EarlyStopping("binary", patience=1, metric="logloss")
    assert stopping.update(1, 0.30) and stopping.update(2, 0.29)
    assert not stopping.update(3, 0.31) and stopping.should_stop


def test_smoothed_patience_survives_one_lucky_epoch() -> None:
    """A lucky low epoch ends a raw-patience run; on the smoothed metric the trend goes on."""
    curve = [0.50, 0.48, 0.40, 0.47, 0.46, 0.45, 0.44]
    raw = EarlyStopping("regression", patience=3)
    smoothed = EarlyStopping("regression", patience=3, smoothing=0.7)
    for epoch, value in enumerate(curve, start=1):
        raw.update(epoch, value)
        smoothed.update(epoch, value)
    assert raw.should_stop and not smoothed.should_stop
    assert smoothed.best_epoch == raw.best_epoch == 3


def test_min_delta_ignores_tiny_gains_but_keeps_the_best_epoch() -> None:
    stopping = EarlyStopping("regression", patience=2, min_delta=0.01)
    stopping.update(1, 0.5)
    assert stopping.update(2, 0.499) and stopping.update(3, 0.498)
    assert stopping.should_stop and stopping.best_epoch == 3


def test_schedule_warms_up_then_decays_and_resumes_where_it_was() -> None:
    model = AFM(ModelConfig(kind="afm", num_features=10, num_fields=3, embed_dim=4))
    cfg = TrainSection(optimizer="adam", lr=0.01, attention_lr=0.1, warmup_epochs=1,
                       lr_decay="exponential", lr_gamma=0.5)
    optimizer = make_optimizer(model, cfg)
    schedule = make_schedule(optimizer, cfg, steps_per_epoch=4)
    assert schedule is not None
    rates = []
    for _ in range(12):
        rates.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        schedule.step()
    assert rates[0] == pytest.approx([0.002, 0.02]) and rates[3] == pytest.approx([0.008, 0.08])
    assert rates[4] == pytest.approx([0.01, 0.1]) and rates[8] == pytest.approx([0.005, 0.05])
    resumed = make_optimizer(model, cfg)
    resumed.load_state_dict(optimizer.state_dict())
    make_schedule(resumed, cfg, steps_per_epoch=4, done=8)
    assert [group["lr"] for group in resumed.param_groups] == pytest.approx(rates[8])
    assert make_schedule(optimizer, TrainSection(), steps_per_epoch=4) is None


def test_embedding_l2_on_the_batch_rows_counts_each_use() -> None:
    model = AFM(ModelConfig(kind="afm", num_features=10, num_fields=3, embed_dim=4))
    indices = torch.tensor([[[1], [2], [3]], [[1], [4], [0]]])  # (B=2, F=3, L=1); 0 is padding
    weights = (indices != 0).float()
    batch = Batch(indices, weights, torch.zeros(2))
    table = model.embedding.embedding.weight.detach()
    norms = 0.5 * table.square().sum(dim=1)
    expected = (2 * norms[1] + norms[2] + norms[3] + norms[4]) / 2
    batch_cfg = TrainSection(embedding_l2=1.0)
    assert float(penalty(model, batch_cfg, batch)) == pytest.approx(float(expected))
    table_cfg = TrainSection(embedding_l2=1.0, l2_scope="table")
    assert float(penalty(model, table_cfg, batch)) == pytest.approx(float(norms.sum()))
    assert penalty(model, TrainSection(), batch) == 0.0


def test_freeze_keeps_the_pretrained_fm_fixed_for_the_first_epochs() -> None:
    model = AFM(ModelConfig(kind="afm", num_features=10, num_fields=3, embed_dim=4))
    cfg = TrainSection(init_from="runs/fm", freeze_pretrained_epochs=2)
    freeze_pretrained(model, cfg, 2, distributed=False)
    assert not model.embedding.embedding.weight.requires_grad and model.p.requires_grad
    freeze_pretrained(model, cfg, 3, distributed=False)
    assert model.embedding.embedding.weight.requires_grad and model.linear.bias.requires_grad
    with pytest.raises(ValueError, match="torchrun"):
        freeze_pretrained(model, cfg, 1, distributed=True)

"""The loop's small deciders: early stopping and the optimizer's parameter groups."""

from model.afm import AFM, ModelConfig
from training.config import TrainSection
from training.loop import EarlyStopping
from training.optim import make_optimizer


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

"""train.micro_batch_size: a batch in several passes takes the step the whole batch takes."""

import torch

from model.afm import AFM, ModelConfig
from training.config import TrainSection
from training.loop import EpochProgress, train_one_epoch
from training.optim import make_optimizer
from training.shards import Batch


def _trained(micro_batch_size: int, l2: float) -> tuple[dict[str, torch.Tensor], float]:
    torch.manual_seed(0)
    model = AFM(ModelConfig(kind="afm", num_features=40, num_fields=4, embed_dim=6, attention_dim=5,
                            pair_dropout=0.0))
    cfg = TrainSection(optimizer="adam", lr=0.01, micro_batch_size=micro_batch_size,
                       attention_l2=l2, embedding_l2=l2)
    generator = torch.Generator().manual_seed(1)
    batches = [Batch(torch.randint(1, 40, (96, 4, 1), generator=generator), torch.ones(96, 4, 1),
                     torch.randn(96, generator=generator)) for _ in range(5)]
    progress = EpochProgress()
    train_one_epoch(model, batches, make_optimizer(model, cfg), "regression", cfg, progress)
    assert (progress.step, progress.seen) == (5, 480)
    return model.state_dict(), progress.loss_sum / progress.seen


def test_micro_batches_take_the_whole_batch_step() -> None:
    for l2 in (0.0, 0.01):
        whole, whole_loss = _trained(0, l2)
        parts, parts_loss = _trained(25, l2)  # 96 rows: passes of 25, 25, 25 and 21
        for name, value in whole.items():
            torch.testing.assert_close(parts[name], value, rtol=1e-4, atol=1e-6, msg=name)
        assert abs(parts_loss - whole_loss) < 1e-5

"""The fused optimizers take the same steps as torch's reference implementations."""

import pytest
import torch

from model.afm import ModelConfig, build_model
from training.config import TrainSection
from training.optim import make_optimizer


@pytest.mark.parametrize("optimizer", ["adam", "adagrad"])
def test_fused_optimizer_matches_the_reference_steps(optimizer: str) -> None:
    config = ModelConfig(kind="afm", num_features=20, num_fields=3, embed_dim=4, attention_dim=2,
                         pair_dropout=0.0)
    cfg = TrainSection(optimizer=optimizer, lr=0.01, attention_lr=0.05)  # type: ignore[arg-type]
    fused, plain = build_model(config), build_model(config)
    plain.load_state_dict(fused.state_dict())
    fused_opt = make_optimizer(fused, cfg)
    name_of = {id(p): n for n, p in fused.named_parameters()}
    by_name = dict(plain.named_parameters())
    groups = [{"params": [by_name[name_of[id(p)]] for p in g["params"]], "lr": g["lr"]}
              for g in fused_opt.param_groups]
    plain_opt = (torch.optim.Adagrad(groups, initial_accumulator_value=1e-8) if optimizer == "adagrad"
                 else torch.optim.Adam(groups))
    torch.manual_seed(0)
    indices, weights = torch.randint(1, 20, (8, 3, 1)), torch.rand(8, 3, 1)
    for _ in range(3):
        for model, opt in ((fused, fused_opt), (plain, plain_opt)):
            opt.zero_grad()
            model(indices, weights).square().mean().backward()
            opt.step()
    assert all(g.get("fused") for g in fused_opt.param_groups)
    for (name, a), b in zip(fused.named_parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)

"""The Trainer's dropout seeds: the streams earlier runs drew, distinct per rank, epoch and step."""

from training.trainer import dropout_seed


def test_dropout_seeds_are_the_ones_earlier_runs_drew() -> None:
    assert dropout_seed(2017, rank=0, epoch=1, step=0) == 2017 + 104729  # every fresh run's rank 0
    assert dropout_seed(5, rank=2, epoch=3, step=7) == 5 + 2 * 7919 + 3 * 104729 + 7


def test_no_two_ranks_epochs_or_steps_share_a_seed() -> None:
    starts = [(rank, epoch, step) for rank in range(13) for epoch in range(1, 4)
              for step in range(7919)]
    seeds = {dropout_seed(2017, *start) for start in starts}
    assert len(seeds) == len(starts)

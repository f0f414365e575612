"""A killed run resumes from its newest good checkpoint and ends where an unbroken run ends."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from model.afm import AFM, ModelConfig
from model.manifest import Manifest
from tests.helpers import REPO, train_bundle
from training import checkpoint
from training.checkpoint import CheckpointError, TrainingState
from training.loop import EarlyStopping, EpochProgress

ARGS = ["train.epochs=12", "train.checkpoint_every_steps=25", "data.synthetic.rows=20000"]


def _overrides(cache: Path, *extra: str) -> list[str]:
    return [*ARGS, f"data.cache_dir={cache}", *extra]


def _kill_after_checkpoints(out: Path, cache: Path, count: int, *extra: str) -> None:
    """Start afm-train and SIGKILL it once `count` checkpoints have been written."""
    command = [sys.executable, "-m", "training.cli", "--config", str(REPO / "configs" / "synthetic-afm.toml"),
               "--out", str(out)]
    for override in _overrides(cache, *extra):
        command += ["--set", override]
    process = subprocess.Popen(command, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    try:
        while len(list((out / "checkpoints").glob("step-*.pt"))) < count:
            assert process.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()


@pytest.mark.slow
@pytest.mark.parametrize("tables", ["train.sparse_tables=false", "train.sparse_tables=true"])
def test_a_killed_run_resumes_and_matches_an_unbroken_one(tmp_path: Path, tables: str) -> None:
    torch.set_num_threads(1)
    overrides = _overrides(tmp_path / "cache", tables)
    unbroken = train_bundle("synthetic-afm.toml", tmp_path / "unbroken", overrides)
    _kill_after_checkpoints(tmp_path / "killed", tmp_path / "cache", 2, tables)
    saved = sorted((tmp_path / "killed" / "checkpoints").glob("step-*.pt"))
    state = checkpoint.load(saved[-1])
    assert 0 < state["step"] or state["epoch"] > 1
    assert not (tmp_path / "killed" / "manifest.json").exists()
    if tables.endswith("true"):  # the lazy Adam's moments are saved beside the dense Adam's
        assert state["optimizer"].keys() == {"tables", "dense"}

    resumed = train_bundle("synthetic-afm.toml", tmp_path / "killed", overrides)
    assert resumed.metrics["rmse"] == pytest.approx(unbroken.metrics["rmse"], rel=1e-4)
    assert not (tmp_path / "killed" / "checkpoints").exists()
    assert Manifest.read(tmp_path / "killed").training["best_epoch"] == unbroken.training["best_epoch"]


TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
            "--no-python", sys.executable, "-m", "training.cli"]


def _torchrun(out: Path, cache: Path, *extra: str) -> subprocess.Popen[bytes]:
    command = [*TORCHRUN, "--config", str(REPO / "configs" / "synthetic-afm.toml"), "--out", str(out)]
    for override in _overrides(cache, *extra):
        command += ["--set", override]
    return subprocess.Popen(command, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def _kill_group(launcher: int) -> None:
    """SIGKILL torchrun and its ranks at once, as a machine that goes away would (each rank
    runs in a session of its own, so they are found as the launcher's children)."""
    doomed = [launcher]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == launcher:  # the parent's pid
            doomed.append(int(stat.parent.name))
    for pid in doomed:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.slow
def test_a_killed_torchrun_group_with_sparse_tables_resumes(tmp_path: Path) -> None:
    tables = "train.sparse_tables=true"
    unbroken = _torchrun(tmp_path / "unbroken", tmp_path / "cache", tables)
    _, err = unbroken.communicate(timeout=300)
    assert unbroken.returncode == 0, err.decode()[-3000:]
    killed = _torchrun(tmp_path / "killed", tmp_path / "cache", tables)
    checkpoints = tmp_path / "killed" / "checkpoints"
    deadline = time.monotonic() + 120
    try:
        while len(list(checkpoints.glob("step-*.pt"))) < 2:
            assert killed.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        _kill_group(killed.pid)
        killed.communicate()
    state = checkpoint.load(sorted(checkpoints.glob("step-*.pt"))[-1])
    assert state["optimizer"].keys() == {"tables", "dense"}  # the lazy Adam's moments saved
    assert not (tmp_path / "killed" / "manifest.json").exists()

    resumed = _torchrun(tmp_path / "killed", tmp_path / "cache", tables)
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err.decode()[-3000:]
    after, before = Manifest.read(tmp_path / "killed"), Manifest.read(tmp_path / "unbroken")
    assert (after.training["world_size"], after.training["sparse_tables"]) == (2, True)
    assert not checkpoints.exists()
    assert after.metrics["rmse"] == pytest.approx(before.metrics["rmse"], rel=1e-4)
    assert after.training["best_epoch"] == before.training["best_epoch"]


def test_a_corrupt_checkpoint_is_refused_and_the_previous_one_used(tmp_path: Path) -> None:
    directory = tmp_path / "checkpoints"
    good = {"model": {}, "optimizer": {}, "epoch": 2, "step": 5, "config": {}}
    checkpoint.save(directory, good, step=10)
    checkpoint.save(directory, {**good, "step": 9}, step=20)
    newest = directory / "step-0000000020.pt"
    newest.write_bytes(newest.read_bytes()[:100])  # cut short, as a kill mid-write would leave it
    with pytest.raises(CheckpointError, match="step-0000000020.pt: unreadable"):
        checkpoint.load(newest)
    assert checkpoint.latest(directory)["step"] == 5  # type: ignore[index]
    torch.save({"model": {}}, newest)
    with pytest.raises(CheckpointError, match="not a training checkpoint"):
        checkpoint.load(newest)


def test_only_the_newest_checkpoints_are_kept(tmp_path: Path) -> None:
    for step in range(1, 6):
        state = {"model": {}, "optimizer": {}, "epoch": 1, "step": step, "config": {}}
        checkpoint.save(tmp_path, state, step)
    kept = [p.name for p in sorted(tmp_path.glob("step-*.pt"))]
    assert kept == ["step-0000000004.pt", "step-0000000005.pt"]
    assert not list(tmp_path.glob(".*"))


@pytest.mark.slow
def test_a_checkpoint_of_another_config_is_not_resumed(tmp_path: Path) -> None:
    _kill_after_checkpoints(tmp_path / "run", tmp_path / "cache", 1)
    with pytest.raises(CheckpointError, match="sections .*model.*differ.*--fresh"):
        train_bundle("synthetic-afm.toml", tmp_path / "run",
                     [*_overrides(tmp_path / "cache"), "model.embed_dim=8"])


def _state(config: dict[str, object]) -> TrainingState:
    """A state after a few steps of a small AFM, with Adam's moments and a history."""
    torch.manual_seed(0)
    model = AFM(ModelConfig(kind="afm", num_features=20, num_fields=3, embed_dim=4))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    indices = torch.randint(1, 20, (8, 3, 1))
    for _ in range(3):
        optimizer.zero_grad()
        model(indices, torch.ones(8, 3, 1)).square().mean().backward()
        optimizer.step()
    stopping = EarlyStopping("regression", patience=3, smoothing=0.5)
    stopping.update(1, 0.7)
    return TrainingState(
        model=model.state_dict(), optimizer=optimizer.state_dict(), epoch=2,
        progress=EpochProgress(step=3, loss_sum=1.5, seen=24), stopping=stopping,
        best_model={k: v.clone() for k, v in model.state_dict().items()}, best_metrics={"rmse": 0.7},
        history=[{"epoch": 1, "train_loss": 0.9, "validation_rmse": 0.7}], rng=torch.get_rng_state(),
        config=config, world_size=1,
    )


def test_a_training_state_restores_what_it_saved(tmp_path: Path) -> None:
    state = _state({"model": {"kind": "afm"}})
    state.save(tmp_path, steps_per_epoch=10)
    assert [p.name for p in tmp_path.glob("step-*.pt")] == ["step-0000000013.pt"]  # (2 - 1) * 10 + 3
    restored = TrainingState.latest(tmp_path, {"model": {"kind": "afm"}})
    assert restored is not None
    for name in ("epoch", "progress", "stopping", "best_metrics", "history", "config", "world_size"):
        assert getattr(restored, name) == getattr(state, name), name
    for name in ("model", "best_model"):
        assert getattr(restored, name).keys() == getattr(state, name).keys()
        for key, value in getattr(state, name).items():
            assert torch.equal(getattr(restored, name)[key], value), (name, key)
    assert torch.equal(restored.rng, state.rng)
    adam, saved_adam = restored.optimizer["state"], state.optimizer["state"]
    assert adam.keys() == saved_adam.keys()
    assert all(torch.equal(adam[k]["exp_avg_sq"], saved_adam[k]["exp_avg_sq"]) for k in adam)
    assert restored.optimizer["param_groups"] == state.optimizer["param_groups"]


def test_a_training_state_of_another_config_or_layout_is_refused(tmp_path: Path) -> None:
    _state({"model": {"kind": "afm"}, "seed": 1}).save(tmp_path, steps_per_epoch=10)
    with pytest.raises(CheckpointError, match="sections seed differ.*--fresh"):
        TrainingState.latest(tmp_path, {"model": {"kind": "afm"}, "seed": 2})
    old = {"model": {}, "optimizer": {}, "epoch": 3, "step": 0, "config": {}, "progress": {}}
    checkpoint.save(tmp_path, old, step=100)  # the untyped dict earlier versions wrote
    with pytest.raises(CheckpointError, match="another version of afm-train.*--fresh"):
        TrainingState.latest(tmp_path, {})
    assert TrainingState.latest(tmp_path / "none", {}) is None

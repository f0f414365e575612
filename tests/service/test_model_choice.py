"""The model choice shared by worker processes."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client import CollectorRegistry

from service.core.runtime import Runtime
from service.ops.metrics import Metrics
from service.ops.model_choice import CHOICE_FILE, Choice, SharedChoice
from tests.helpers import SettingsFactory


def test_a_published_choice_is_seen_once_by_each_reader(tmp_path: Path) -> None:
    writer, reader = SharedChoice(tmp_path), SharedChoice(tmp_path)
    assert reader.read() is None and reader.poll() is None
    choice = Choice(tmp_path / "v2", "ab" * 32)
    writer.publish(choice)
    assert writer.poll() is None  # the writer knows its own choice
    assert reader.poll() == choice
    assert reader.poll() is None
    writer.publish(Choice(tmp_path / "v3", "cd" * 32))
    assert reader.poll() == Choice(tmp_path / "v3", "cd" * 32)


def test_a_damaged_choice_is_ignored(tmp_path: Path) -> None:
    (tmp_path / CHOICE_FILE).write_text("{not json")
    assert SharedChoice(tmp_path).read() is None


def test_a_worker_starts_on_the_shared_choice(make_settings: SettingsFactory,
                                              models_root: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    settings = make_settings(model_dir=models_root / "v1", run_dir=run_dir)
    SharedChoice(run_dir).publish(Choice(models_root / "v2", "0" * 64))
    runtime = Runtime(settings, Metrics(CollectorRegistry()), SharedChoice(run_dir))
    asyncio.run(runtime.start())
    assert runtime.model.ref.version == "2"


def test_a_worker_whose_shared_choice_fails_starts_from_its_settings(
    make_settings: SettingsFactory, models_root: Path, tmp_path: Path
) -> None:
    settings = make_settings(model_dir=models_root / "v1", run_dir=tmp_path)
    SharedChoice(tmp_path).publish(Choice(tmp_path / "gone", "0" * 64))
    runtime = Runtime(settings, Metrics(CollectorRegistry()), SharedChoice(tmp_path))
    asyncio.run(runtime.start())
    assert runtime.model.ref.version == "1"

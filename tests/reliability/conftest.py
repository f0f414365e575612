"""Reliability fixtures: the real `afm-serve` process on 127.0.0.1 over a models root.

Servers come from `tests.helpers.servers`, which waits for readiness and always stops the
whole process group. Durations and example counts have CI defaults and are raised by
`scripts/reliability.sh` through RELIABILITY_* variables (`tests.helpers.servers.knob`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.servers import Server, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, bundle_dir: Path) -> Iterator[Server]:
    with start_server(tmp_path_factory.mktemp("reliability"), bundle_dir) as started:
        yield started

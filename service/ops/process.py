"""Process-wide policy, set once where a server process starts: by `afm-serve` and by each
worker (`service.app.app_from_env`), never inside the objects a test builds many of.

Each setting and why it pays is in docs/BENCHMARKS.md ("Process-wide settings").
"""

from __future__ import annotations

import gc
import logging

from prometheus_client import disable_created_metrics

from service.ops.logs import configure_logging
from service.ops.settings import Settings

# Objects of a large response live until it is written; a higher young-generation
# threshold keeps the cyclic GC from scanning them several times.
GC_YOUNG_THRESHOLD = 20_000


def configure_process(settings: Settings) -> None:
    configure_logging(settings.log_level, settings.log_format)
    # The logging HOWTO's optimisations: no caller lookup, thread or process names a record.
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    disable_created_metrics()  # `_created` series only clutter scrapes
    gc.set_threshold(GC_YOUNG_THRESHOLD)


def freeze_startup_objects() -> None:
    """Once the model is loaded: startup objects (onnxruntime, numpy, pydantic, the model)
    never die, and keeping them out of the cyclic GC's scans makes large responses cheaper."""
    gc.freeze()

"""The model's tensors as the Open Inference Protocol carries them, free of any transport:
inputs as JSON lists (REST), typed contents (gRPC) or raw little-endian bytes (REST's
binary tensor data extension, gRPC's raw_input_contents), and the outputs. Each transport
checks names, datatypes, declared sizes and limits here, so all of them refuse the same
inputs alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, TypeVar

import numpy as np

from model.bundle import Scores
from model.manifest import INPUT_NAMES, OUTPUT_NAMES
from service.codecs import metadata
from service.core.errors import InvalidInput, TooLarge

# Wire byte order is little-endian whatever the host's (the extension's specification).
WIRE_DTYPES: dict[str, np.dtype] = {"INT64": np.dtype("<i8"), "FP32": np.dtype("<f4")}
MAX_DIMS = 8
# The response parameter naming the request id an infer's instances were logged under.
LOGGED_AS = "request_id"
T = TypeVar("T")


def gather(named: Iterable[tuple[str, T]], decode: Callable[[T], np.ndarray]
           ) -> tuple[np.ndarray, np.ndarray]:
    """(indices, weights) from (name, tensor) pairs, each decoded in turn once its name is
    known; unknown, repeated or missing names refused."""
    given: dict[str, np.ndarray] = {}
    for name, tensor in named:
        if name not in metadata.DATATYPES:
            raise InvalidInput(f"unknown input {name[:64]!r}: the model takes {list(INPUT_NAMES)}")
        if name in given:
            raise InvalidInput(f"input {name!r} given twice")
        given[name] = decode(tensor)
    missing = [name for name in INPUT_NAMES if name not in given]
    if missing:
        raise InvalidInput(f"missing input(s) {missing}")
    return given["indices"], given["weights"]


def declared_size(name: str, datatype: str, shape: Sequence[int], limit: int) -> int:
    """Elements a tensor declares, once its datatype is the input's and its shape is sane."""
    expected = metadata.DATATYPES[name]
    if datatype != expected:
        raise InvalidInput(f"input {name!r} must be {expected}, got {datatype[:32]!r}")
    if len(shape) > MAX_DIMS or any(d < 0 for d in shape):
        raise InvalidInput(f"input {name!r}: shape {list(shape)[:MAX_DIMS + 1]} is not a shape "
                           f"(at most {MAX_DIMS} dimensions, none negative)")
    size = math.prod(shape)
    if size > limit:
        raise TooLarge(f"input {name!r} of shape {list(shape)} is over the limit")
    return size


def from_bytes(name: str, datatype: str, shape: Sequence[int], raw: bytes | memoryview,
               limit: int) -> np.ndarray:
    """Raw row-major little-endian bytes -> the typed array of that shape (a copy, aligned)."""
    size = declared_size(name, datatype, shape, limit)
    dtype = WIRE_DTYPES[datatype]
    if len(raw) != size * dtype.itemsize:
        raise InvalidInput(
            f"input {name!r}: shape {list(shape)} of {datatype} takes {size * dtype.itemsize} "
            f"bytes, got {len(raw)}"
        )
    return np.frombuffer(raw, dtype).astype(dtype.newbyteorder("=")).reshape(shape)


def from_values(name: str, datatype: str, shape: Sequence[int], values: Sequence[float],
                limit: int) -> np.ndarray:
    """Typed values already of the datatype (gRPC's int64_contents, fp32_contents)."""
    size = declared_size(name, datatype, shape, limit)
    if len(values) != size:
        raise InvalidInput(
            f"input {name!r}: shape {list(shape)} holds {size} values, data has {len(values)}"
        )
    dtype = np.int64 if datatype == "INT64" else np.float32
    return np.fromiter(values, dtype, count=size).reshape(shape)


def from_json(name: str, datatype: str, shape: Sequence[int], data: list[Any] | None,
              limit: int) -> np.ndarray:
    """JSON values, flat or nested (REST): checked as numbers of the datatype, then typed."""
    size = declared_size(name, datatype, shape, limit)
    if data is None:
        raise InvalidInput(f"input {name!r} has no data (give data, or binary_data_size "
                           f"with the binary tensor data extension)")
    try:
        array = np.asarray(data)
    except (ValueError, TypeError, OverflowError) as e:
        raise InvalidInput(f"input {name!r}: data is not a regular array of numbers") from e
    if array.dtype.kind not in ("iu" if datatype == "INT64" else "iuf"):
        what = "integers" if datatype == "INT64" else "numbers"
        raise InvalidInput(f"input {name!r}: {datatype} data must be {what}")
    if array.size != size:
        raise InvalidInput(f"input {name!r}: shape {list(shape)} holds {size} values, "
                           f"data has {array.size}")
    dtype: type[np.generic] = np.int64 if datatype == "INT64" else np.float32
    casting: Literal["same_kind", "safe"] = "same_kind" if datatype == "FP32" else "safe"
    try:  # out-of-range floats become inf here, which the runtime refuses as not finite
        with np.errstate(over="ignore"):
            return array.reshape(shape).astype(dtype, casting=casting)
    except TypeError as e:
        raise InvalidInput(f"input {name!r}: values do not fit {datatype}") from e


def output(scores: Scores, name: str) -> np.ndarray:
    """One output (FP32) as the wire carries it: contiguous, little-endian."""
    return np.ascontiguousarray(getattr(scores, name), "<f4")


def outputs_wanted(names: Sequence[str]) -> list[str]:
    """The outputs asked for, in order and once each; none asked: all of them."""
    if not names:
        return list(OUTPUT_NAMES)
    unknown = [name[:64] for name in names if name not in OUTPUT_NAMES]
    if unknown:
        raise InvalidInput(f"unknown output(s) {unknown}: the model gives {list(OUTPUT_NAMES)}")
    return list(dict.fromkeys(names))

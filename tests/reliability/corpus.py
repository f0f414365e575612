"""Crafted bad requests, each with the exact status it must get and a phrase its JSON
error must contain. Kinds group them for the report; `raw` cases are sent over a bare
socket because no well-behaved client sends them (a 50 MB body or a 64 MB header the
server must refuse before reading it)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from tests.helpers import INSTANCE

JSON = {"content-type": "application/json"}
MB = 1 << 20
OIP = "/v2/models/synthetic-afm/infer"


@dataclass(frozen=True)
class Case:
    kind: str
    name: str
    body: bytes | Callable[[], bytes] | None
    status: int
    phrase: str
    method: str = "POST"
    path: str = "/predict"
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON))
    raw: Literal["length", "chunked", "plain", "stream"] | None = None
    """Sent over a bare socket: `length` declares len(body) and sends 64 KB of it;
    `chunked` streams it until the server answers; `plain` sends it whole (for request
    lines longer than clients allow); `stream` sends `body` as the whole request, head
    included, until the server answers."""

    @property
    def id(self) -> str:
        return f"{self.kind}: {self.name}"

    def payload(self) -> bytes | None:
        """The body, built on demand (some are tens of megabytes)."""
        return self.body() if callable(self.body) else self.body


def predict(instances: list[Any], **extra: Any) -> bytes:
    return json.dumps({"instances": instances, **extra}).encode()


def tensor(name: str, shape: list[int], datatype: str, data: Any) -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


def infer(*inputs: dict[str, Any]) -> bytes:
    return json.dumps({"inputs": list(inputs)}).encode()


INDICES = tensor("indices", [1, 6, 1], "INT64", [1, 2, 3, 4, 5, 6])
WEIGHTS = tensor("weights", [1, 6, 1], "FP32", [1.0] * 6)


def huge_head(url: int = 0, header: int = 0) -> Callable[[], bytes]:
    """A GET whose URL or one header holds that many bytes (built when sent)."""
    return lambda: (b"GET /explain?f0=" + b"x" * url + b" HTTP/1.1\r\nhost: 127.0.0.1\r\n"
                    + (b"x-big: " + b"x" * header + b"\r\n" if header else b"") + b"\r\n")


def nested(depth: int) -> bytes:
    return ('{"instances": [{"f0": ' + '{"a": ' * depth + "1" + "}" * depth + "}]}").encode()


CORPUS: list[Case] = [
    # --- malformed JSON ---------------------------------------------------------------
    Case("invalid json", "truncated", b'{"instances": [{"f0": "v1"}', 400, "malformed JSON"),
    Case("invalid json", "not json", b"{bad json", 400, "malformed JSON"),
    Case("invalid json", "single quotes", b"{'instances': [{}]}", 400, "malformed JSON"),
    Case("invalid json", "trailing garbage", b'{"instances": [{}]} xyz', 400, "malformed JSON"),
    Case("invalid json", "trailing comma", b'{"instances": [{"f0": "v1"},]}', 400, "malformed JSON"),
    Case("invalid json", "invalid utf-8", b'{"instances": [{"f0": "\xff\xfe"}]}', 400,
         "malformed JSON"),
    Case("invalid json", "lone surrogate", b'{"instances": [{"f0": "\\ud800"}]}', 400,
         "malformed JSON"),
    Case("invalid json", "truncated oip", infer(INDICES)[:-7], 400, "malformed JSON", path=OIP),
    # --- content type and empty bodies --------------------------------------------------
    Case("content type", "text/plain", predict([INSTANCE]), 415, "application/json",
         headers={"content-type": "text/plain"}),
    Case("content type", "form", b"instances=1", 415, "application/json",
         headers={"content-type": "application/x-www-form-urlencoded"}),
    Case("content type", "multipart", b"--x--", 415, "application/json",
         headers={"content-type": "multipart/form-data; boundary=x"}),
    Case("content type", "xml on oip", b"<inputs/>", 415, "application/json", path=OIP,
         headers={"content-type": "application/xml"}),
    Case("empty body", "empty json", b"", 400, "malformed JSON"),
    Case("empty body", "no body, no type", None, 400, "malformed JSON", headers={}),
    Case("empty body", "empty oip", b"", 400, "malformed JSON", path=OIP),
    Case("empty body", "empty object", b"{}", 400, "instances"),
    Case("empty body", "no instances", b'{"instances": []}', 400, "instances"),
    # --- nesting and size ---------------------------------------------------------------
    Case("deep nesting", "10k nested arrays", b"[" * 10_000 + b"]" * 10_000, 400, "malformed JSON"),
    Case("deep nesting", "5k nested objects in a value", nested(5000), 400, "malformed JSON"),
    Case("deep nesting", "nested lists in a value",
         predict([{"f0": [[[[["v1"]]]]]}]), 400, "'f0'"),
    Case("size", "50 MB declared", lambda: b" " * (50 * MB), 413, "larger than", raw="length"),
    Case("size", "50 MB chunked", lambda: b" " * (50 * MB), 413, "larger than", raw="chunked"),
    Case("size", "100,000 instances", lambda: predict([INSTANCE] * 100_000), 413, "larger than"),
    Case("size", "100,000 empty instances", lambda: predict([{}] * 100_000), 413, "at most 1024 instances"),
    Case("size", "1025 instances", predict([INSTANCE] * 1025), 413, "at most 1024 instances"),
    Case("size", "1 MB string value", lambda: predict([{"f0": "x" * MB}]), 413, "larger than"),
    Case("size", "1 MB field name", lambda: predict([{"x" * (MB - 64): "v1"}]), 400, "unknown field"),
    Case("size", "1 MB string under the limit", lambda: predict([{"f0": "x" * (MB - 64)}]), 400,
         "longer than 1024 characters"),
    Case("size", "600 KB of oip data for a shape of 1",
         lambda: infer(tensor("indices", [1], "INT64", [0] * 200_000)), 400, "holds 1 values",
         path=OIP),
    # --- NaN and infinity (JSON extensions) ---------------------------------------------
    Case("non-finite", "NaN", b'{"instances": [{"f0": NaN}]}', 400, "NaN and infinities"),
    Case("non-finite", "Infinity", b'{"instances": [{"f0": Infinity}]}', 400, "NaN and infinities"),
    Case("non-finite", "-Infinity", b'{"instances": [{"f0": -Infinity}]}', 400, "NaN and infinities"),
    Case("non-finite", "NaN top_k", b'{"instances": [{}], "explain": {"top_k": NaN}}', 400,
         "NaN and infinities"),
    Case("non-finite", "NaN oip weights", infer(INDICES, tensor(
        "weights", [1, 6, 1], "FP32", [1.0] * 5 + [0.0])).replace(b"0.0]", b"NaN]"), 400, "finite",
         path=OIP),
    # --- wrong types --------------------------------------------------------------------
    Case("wrong type", "bool value", predict([{"f0": True}]), 400, "got bool"),
    Case("wrong type", "float for a categorical", predict([{"f0": 1.5}]), 400, "got float"),
    Case("wrong type", "object value", predict([{"f0": {"a": 1}}]), 400, "'f0'"),
    Case("wrong type", "list for a categorical", predict([{"f0": ["v1"]}]), 400, "'f0'"),
    Case("wrong type", "instances an object", b'{"instances": {"f0": "v1"}}', 400, "instances"),
    Case("wrong type", "instances a string", b'{"instances": "f0=v1"}', 400, "instances"),
    Case("wrong type", "instance a number", predict([3]), 400, "instances.0"),
    Case("wrong type", "body a list", b"[]", 400, "object"),
    Case("wrong type", "explain a string", predict([{}], explain="yes"), 400, "explain"),
    Case("wrong type", "explain a number", predict([{}], explain=1), 400, "explain"),
    Case("wrong type", "top_k a string", predict([{}], explain={"top_k": "3"}), 400, "top_k"),
    # --- unknown fields and duplicated keys ---------------------------------------------
    Case("unknown field", "top-level key", predict([{}], extra=1), 400, "extra"),
    Case("unknown field", "model field", predict([{"nope": "v1"}]), 400, "unknown field 'nope'"),
    Case("unknown field", "explain option", predict([{}], explain={"top_k": 1, "k": 2}), 400, "k"),
    Case("unknown field", "oip input", infer(INDICES, WEIGHTS, tensor("mask", [1], "INT64", [1])),
         400, "unknown input 'mask'", path=OIP),
    # JSON leaves duplicates to the parser; ours keeps the last, so the last one decides.
    Case("duplicated key", "instances twice", b'{"instances": [{}], "instances": 7}', 400,
         "instances"),
    Case("duplicated key", "explain twice", b'{"instances": [{}], "explain": true, "explain": "x"}',
         400, "explain"),
    Case("duplicated key", "oip input twice", infer(INDICES, WEIGHTS, WEIGHTS), 400, "given twice",
         path=OIP),
    # --- top_k --------------------------------------------------------------------------
    Case("top_k", "zero", predict([{}], explain={"top_k": 0}), 400, "top_k"),
    Case("top_k", "negative", predict([{}], explain={"top_k": -1}), 400, "top_k"),
    Case("top_k", "huge", predict([{}], explain={"top_k": 10**30}), 400, "top_k"),
    Case("top_k", "fractional", predict([{}], explain={"top_k": 1.5}), 400, "top_k"),
    # --- malformed Open Inference Protocol tensors --------------------------------------
    Case("oip tensor", "shape and data disagree",
         infer(tensor("indices", [1, 6, 1], "INT64", [1, 2, 3]), WEIGHTS), 400, "holds 6 values",
         path=OIP),
    Case("oip tensor", "wrong datatype",
         infer(tensor("indices", [1, 6, 1], "FP32", [1.0] * 6), WEIGHTS), 400, "must be INT64",
         path=OIP),
    Case("oip tensor", "floats as INT64",
         infer(tensor("indices", [1, 6, 1], "INT64", [1.5] * 6), WEIGHTS), 400, "integers",
         path=OIP),
    Case("oip tensor", "index out of range",
         infer(tensor("indices", [1, 6, 1], "INT64", [10**6] * 6), WEIGHTS), 400, "must lie in",
         path=OIP),
    Case("oip tensor", "negative index",
         infer(tensor("indices", [1, 6, 1], "INT64", [-1] * 6), WEIGHTS), 400, "must lie in",
         path=OIP),
    Case("oip tensor", "index over int64",
         infer(tensor("indices", [1, 6, 1], "INT64", [2**70] * 6), WEIGHTS), 400, "indices",
         path=OIP),
    Case("oip tensor", "ragged data",
         infer(tensor("indices", [1, 6, 1], "INT64", [[1, 2], [3]]), WEIGHTS), 400, "indices",
         path=OIP),
    Case("oip tensor", "negative shape",
         infer(tensor("indices", [-1, 6, 1], "INT64", [1] * 6), WEIGHTS), 400, "shape", path=OIP),
    Case("oip tensor", "huge shape",
         infer(tensor("indices", [10**9, 6, 1], "INT64", [1] * 6), WEIGHTS), 413, "over the limit",
         path=OIP),
    Case("oip tensor", "missing weights", infer(INDICES), 400, "missing input", path=OIP),
    Case("oip tensor", "unknown model", infer(INDICES, WEIGHTS), 404, "not served",
         path="/v2/models/other/infer"),
    # --- unicode and control characters -------------------------------------------------
    Case("unicode", "NUL in a field name", predict([{"f0\u0000": "v1"}]), 400, "unknown field"),
    Case("unicode", "RTL override in a field name", predict([{"\u202ef0": "v1"}]), 400,
         "unknown field"),
    Case("unicode", "emoji field name", predict([{"\U0001f600": "v1"}]), 400, "unknown field"),
    Case("unicode", "NUL in a value", predict([{"f0": "v1\u0000"}]), 400, "control characters"),
    Case("unicode", "escape sequence in a value", predict([{"f0": "\u001b[31mred"}]), 400,
         "control characters"),
    Case("unicode", "newline in a value (log injection)", predict([{"f0": "v1\n{\"level\": 1}"}]),
         400, "control characters"),
    Case("unicode", "control characters in a query value", None, 400, "control characters",
         method="GET", path="/explain?f0=v1%0d%0aX-Injected:%201", headers={}),
    Case("unicode", "BOM before the body", b"\xef\xbb\xbf" + predict([{}]), 400, "malformed JSON"),
    # --- query strings on GET /explain --------------------------------------------------
    # Over AFM_MAX_URL_BYTES (8 KB): 414 from the protocol, the URL never read whole.
    Case("query", "9 KB query", None, 414, "URL longer than 8192 bytes", method="GET",
         path="/explain?f0=" + "x" * 9000, headers={}),
    Case("query", "60 KB of parameters", None, 414, "URL longer than 8192 bytes", method="GET",
         path="/explain?" + "&".join(["f0=v1"] * 10_000), headers={}, raw="plain"),
    Case("query", "100 KB query", None, 414, "URL longer than 8192 bytes", method="GET",
         path="/explain?f0=" + "x" * 100_000, headers={}, raw="plain"),
    Case("query", "100 KB of parameters", None, 414, "URL longer than 8192 bytes", method="GET",
         path="/explain?" + "&".join(["f0=v1"] * 17_000), headers={}, raw="plain"),
    Case("query", "64 MB query", huge_head(url=64 * MB), 414, "URL longer than 8192 bytes",
         method="GET", path="/explain", headers={}, raw="stream"),
    Case("query", "unknown field", None, 400, "unknown field 'nope'", method="GET",
         path="/explain?nope=1", headers={}),
    Case("query", "field twice", None, 400, "more than once", method="GET",
         path="/explain?f0=v1&f0=v2", headers={}),
    Case("query", "control characters in a name", None, 400, "unknown field", method="GET",
         path="/explain?f0%00%1b=v1", headers={}),
    # --- request heads (AFM_MAX_HEADER_BYTES, 16 KB) -------------------------------------
    Case("request head", "20 KB header", None, 431, "request headers larger than 16384 bytes",
         method="GET", path="/explain", headers={"x-big": "x" * 20_000}),
    Case("request head", "2,000 small headers", None, 431, "request headers larger than",
         method="GET", path="/explain", headers={f"x-h{i}": "0123456789" for i in range(2000)},
         raw="plain"),
    Case("request head", "64 MB header", huge_head(header=64 * MB), 431,
         "request headers larger than", method="GET", path="/explain", headers={}, raw="stream"),
    Case("request head", "control character in the method", None, 400,
         "malformed HTTP request: Invalid method", method="GE\x01T", path="/explain",
         headers={}, raw="plain"),
    # --- methods and routes -------------------------------------------------------------
    Case("route", "DELETE /predict", None, 405, "Method Not Allowed", method="DELETE", headers={}),
    Case("route", "unknown route", None, 404, "Not Found", method="GET", path="/nope", headers={}),
    Case("route", "unknown model version", None, 404, "not served", method="GET",
         path="/v2/models/synthetic-afm/versions/99", headers={}),
]


# Odd but valid: each is answered (200), the unknown value echoed back intact.
ODD_BUT_VALID: list[tuple[str, str]] = [
    ("emoji", "\U0001f600\U0001f4a5"),
    ("right-to-left override", "\u202ev1"),
    ("combining marks", "v\u0301\u0301\u0301"),
    ("CJK", "\u4f60\u597d"),
    ("zero-width joiner", "a\u200db"),
    ("1024 characters", "y" * 1024),
]

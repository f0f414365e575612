"""pydantic validation errors as one line in the user's terms (torch-free, shared).

`describe` turns `ValidationError.errors()` (or FastAPI's, which has the same shape) into
`explain.top_k must be at least 1, got -1`: a dotted path the user wrote, what the value
must be, and what it was. pydantic's internal names stay out: the tags it puts in a
path for each member of a union (`explain.ExplainOptions.top_k`, `explain.bool`) are
dropped, and the members' complaints about one value are joined with "or".
"""

from __future__ import annotations

import difflib
import json
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

Loc = tuple[int | str, ...]
MAX_INPUT_CHARS = 60
# Tags pydantic gives union members that are not models (models are tagged by class name).
_PRIMITIVE_TAGS = {"bool", "int", "float", "str", "bytes", "list", "dict", "none", "tuple", "set"}
_BOUNDS = {
    "greater_than_equal": ("ge", "at least"), "less_than_equal": ("le", "at most"),
    "greater_than": ("gt", "greater than"), "less_than": ("lt", "less than"),
}


def describe(errors: Sequence[Mapping[str, Any]], model: type[BaseModel] | None = None,
             root: str = "input") -> str:
    """The most specific problem as one line, with "(and N more)" when there are others.
    `model`, when given, lets an unknown key suggest the closest known one; `root` names
    the whole input when the problem is with it rather than with a part."""
    if not errors:
        return f"invalid {root}"
    located = [(_user_loc(e), e) for e in errors]
    # The deepest is the most specific; of equals, an unknown key (a typo explains the
    # missing key that comes with it).
    loc, first = max(located, key=lambda pair: (len(pair[0]), pair[1].get("type") == "extra_forbidden"))
    if first.get("type") == "json_invalid":
        return f"malformed JSON: {first.get('ctx', {}).get('error', first.get('msg'))}"
    where = _dotted(loc) or root
    same = [e for other, e in located if other == loc]
    message = _message(where, first, [e for e in same if e is not first], model, loc)
    others = {other for other, _ in located if other != loc and other != loc[: len(other)]}
    return f"{message} (and {len(others)} more)" if others else message


def describe_error(error: ValidationError, model: type[BaseModel] | None = None,
                   root: str = "input") -> str:
    """A raised ValidationError as one line (`describe` of its errors, without doc URLs)."""
    return describe(error.errors(include_url=False), model, root)


def _user_loc(error: Mapping[str, Any]) -> Loc:
    loc: Loc = tuple(error.get("loc", ()))
    last = len(loc) - 1
    return tuple(
        part for i, part in enumerate(loc)
        if i == 0 or not _is_tag(part) or (i == last and error.get("type") == "extra_forbidden")
    )


def _is_tag(part: int | str) -> bool:
    if not isinstance(part, str):
        return False
    return (part in _PRIMITIVE_TAGS or "[" in part
            or (part[:1].isupper() and part.isidentifier()))


def _dotted(loc: Loc) -> str:
    return ".".join(str(part) for part in loc)


def _message(where: str, error: Mapping[str, Any], alternatives: Iterable[Mapping[str, Any]],
             model: type[BaseModel] | None, loc: Loc) -> str:
    kind, ctx = error.get("type", ""), error.get("ctx") or {}
    if kind == "missing":
        return f"{where} is required"
    if kind == "extra_forbidden":
        return f"unknown key {where!r}{_suggestion(model, loc)}"
    if kind == "value_error":  # a validator's own message, which names the value
        return f"{where}: {_wanted(error)}"
    got = f", got {_shown(error.get('input'))}" if "input" in error else ""
    if kind in _BOUNDS:
        key, words = _BOUNDS[kind]
        return f"{where} must be {words} {ctx.get(key)}{got}"
    if kind in ("too_short", "too_long"):
        words, bound = ("at least", ctx.get("min_length")) if kind == "too_short" else (
            "at most", ctx.get("max_length"))
        return f"{where} must hold {words} {bound} item{'s' if bound != 1 else ''}{got}"
    if kind == "finite_number":
        return f"{where} must be a finite number: NaN and infinities are not allowed{got}"
    wanted = [_wanted(error)] + [_wanted(e) for e in alternatives]
    return f"{where} must be {' or '.join(dict.fromkeys(wanted))}{got}"


def _wanted(error: Mapping[str, Any]) -> str:
    """pydantic's "Input should be a valid integer" -> "a valid integer"."""
    text = str(error.get("msg", "valid"))
    for prefix in ("Input should be ", "Value should be ", "Value error, "):
        if text.startswith(prefix):
            return text[len(prefix):]
    return text


def _shown(value: Any) -> str:
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return f"an array of {len(value)}"
    try:
        text = json.dumps(value, allow_nan=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= MAX_INPUT_CHARS else text[:MAX_INPUT_CHARS] + "..."


def _suggestion(model: type[BaseModel] | None, loc: Loc) -> str:
    """' (did you mean 'train.epochs'?)' for an unknown key close to a known one."""
    section = model
    for part in loc[:-1]:
        section = _submodel(section, part)
    if section is None or not isinstance(loc[-1], str):
        return ""
    close = difflib.get_close_matches(loc[-1], list(section.model_fields), n=1)
    return f" (did you mean {_dotted((*loc[:-1], close[0]))!r}?)" if close else ""


def _submodel(model: type[BaseModel] | None, name: int | str) -> type[BaseModel] | None:
    field = model.model_fields.get(str(name)) if model is not None else None
    if field is None:
        return None
    for candidate in (field.annotation, *typing.get_args(field.annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None

"""The service's layers: only the HTTP layer knows the web framework.

The HTTP layer is the folder service/http/ (routes, middleware, body reader, responses,
the HTTP reading of errors, the bounded httptools protocol) and the app factory that
assembles it, listed here. Everything else in service/ (runtime, errors, explainer, batcher,
metrics, settings, ...) must not import fastapi or starlette, directly or by `from` import.
"""

from __future__ import annotations

import ast
from pathlib import Path

SERVICE = Path(__file__).resolve().parents[2] / "service"
HTTP_LAYER = {"app.py", "http/"}
FRAMEWORKS = ("fastapi", "starlette")


def imported(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def in_http_layer(path: Path) -> bool:
    relative = path.relative_to(SERVICE).as_posix()
    return relative in HTTP_LAYER or any(
        relative.startswith(folder) for folder in HTTP_LAYER if folder.endswith("/"))


def test_only_the_http_layer_imports_the_web_framework() -> None:
    modules = sorted(SERVICE.rglob("*.py"))
    assert any(p.name == "runtime.py" for p in modules)
    offenders = {
        path.relative_to(SERVICE).as_posix(): sorted(
            name for name in imported(path) if name.split(".")[0] in FRAMEWORKS)
        for path in modules if not in_http_layer(path)
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_http_layer_list_names_real_modules() -> None:
    for entry in HTTP_LAYER:
        assert (SERVICE / entry).exists(), entry


def test_routes_see_only_the_runtimes_public_values() -> None:
    """Routes translate what the runtime returns; they never reach into a loaded model."""
    for path in sorted((SERVICE / "http" / "routes").glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        reached = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
        named = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
        assert not reached & {"bundle", "explainer", "features"}, path.name
        assert "LoadedModel" not in named | imported(path), path.name


ROUTING_CALLS = {"add_api_route", "api_route", "add_route", "include_router", "mount",
                 "get", "post", "put", "patch", "delete"}


def test_routes_are_declared_only_in_the_route_table() -> None:
    """service/http/routes/__init__.py lists every route; nothing else routes (no decorators,
    no add_api_route or mounts elsewhere)."""
    table = SERVICE / "http" / "routes" / "__init__.py"
    offenders = []
    for path in sorted(SERVICE.rglob("*.py")):
        if path == table:
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            called = node.func if isinstance(node, ast.Call) else None
            if isinstance(called, ast.Attribute) and called.attr in ROUTING_CALLS and (
                    isinstance(called.value, ast.Name) and called.value.id in {"app", "router"}):
                offenders.append(f"{path.relative_to(SERVICE)}:{called.lineno}")
    assert offenders == []

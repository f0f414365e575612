"""The service's layers and the directions they may import each other in.

Every module of service/ belongs to exactly one layer (by its path); a module may import
only the layers its layer's row of `MAY_IMPORT` names. Data flows transports -> codecs ->
core, and everything stands on ops:

    ops       settings, metrics, logs, process policy, the shared model choice
    core      lifecycle, runtime, explanations, batcher, checks, errors: no wire form
    codecs    one decoder and encoder per wire form, the protocol's schemas
    http      the FastAPI transport;   grpc   the gRPC transport
    startup   the server object, the app factories, the CLI (assemble everything)
    client    the typed HTTP client (speaks the protocol, knows nothing else)

Third-party frameworks stay in their place: only the HTTP layer and the app factory import
fastapi or starlette, only the gRPC layer grpcio, and the core no pydantic.
"""

from __future__ import annotations

import ast
from pathlib import Path

SERVICE = Path(__file__).resolve().parents[2] / "service"
LAYERS = {
    "ops": ("ops/",),
    "core": ("core/",),
    "codecs": ("codecs/",),
    "http": ("http/",),
    "grpc": ("grpc/",),
    "startup": ("__init__.py", "server.py", "app.py", "cli.py"),
    "client": ("client.py",),
}
MAY_IMPORT = {
    "ops": {"ops"},
    "core": {"core", "ops"},
    "codecs": {"codecs", "core"},
    "http": {"http", "codecs", "core", "ops"},
    "grpc": {"grpc", "codecs", "core", "ops"},
    "startup": set(LAYERS),
    "client": {"client", "codecs"},
}
# Third-party packages only some layers (or modules) may import.
CONFINED = {
    "fastapi": {"http", "app.py"},
    "starlette": {"http", "app.py"},
    "uvicorn": {"http", "cli.py"},
    "grpc": {"grpc"},
    "grpc_health": {"grpc"},
    "httpx": {"client"},
    "pydantic": {"ops", "codecs", "http", "startup", "client"},  # the core deals in dataclasses
    "pydantic_settings": {"ops"},
    # the impression log's writer alone; the runtime imports it only when the log is on
    "pyarrow": {"ops/impressions.py", "ops/impression_rows.py", "ops/impression_files.py"},
}


def modules() -> list[Path]:
    found = sorted(SERVICE.rglob("*.py"))
    assert any(p.name == "runtime.py" for p in found)
    return found


def relative(path: Path) -> str:
    return path.relative_to(SERVICE).as_posix()


def layer_of(path: Path) -> str | None:
    name = relative(path)
    owners = [layer for layer, entries in LAYERS.items()
              if any(name == entry or (entry.endswith("/") and name.startswith(entry))
                     for entry in entries)]
    assert len(owners) <= 1, (name, owners)
    return owners[0] if owners else None


def imported(path: Path) -> set[str]:
    """Absolute module names `path` imports (a `from package import name` names both)."""
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{relative(path)}: relative import"
            assert node.module is not None
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def service_file(module: str) -> Path | None:
    """The file of a `service.*` module name, or None (a name imported from a module)."""
    parts = module.split(".")[1:]
    for candidate in (SERVICE.joinpath(*parts).with_suffix(".py"),
                      SERVICE.joinpath(*parts, "__init__.py")):
        if parts and candidate.is_file():
            return candidate
    return None


def test_every_module_is_in_one_layer() -> None:
    assert [relative(p) for p in modules() if layer_of(p) is None] == []


def test_the_layer_list_names_real_modules() -> None:
    for entries in LAYERS.values():
        for entry in entries:
            assert (SERVICE / entry).exists(), entry


def wrong_directions(path: Path, names: set[str]) -> list[str]:
    """The `service.*` modules among `names` that the layer of `path` may not import."""
    layer = layer_of(path)
    assert layer is not None
    found = []
    for name in sorted(names):
        target = service_file(name) if name.startswith("service.") else None
        to = layer_of(target) if target is not None else None
        if to is not None and to not in MAY_IMPORT[layer]:
            found.append(f"{relative(path)} ({layer}) imports {name} ({to})")
    return found


def test_layers_import_only_in_the_allowed_directions() -> None:
    assert [line for path in modules() for line in wrong_directions(path, imported(path))] == []


def test_the_matrix_forbids_what_the_layering_needs_forbidden() -> None:
    """The directions themselves: the core sees no wire form and no transport, the codecs
    no transport, neither transport the other."""
    assert MAY_IMPORT["core"].isdisjoint({"codecs", "http", "grpc", "startup", "client"})
    assert MAY_IMPORT["codecs"].isdisjoint({"http", "grpc", "startup", "client"})
    assert "grpc" not in MAY_IMPORT["http"] and "http" not in MAY_IMPORT["grpc"]
    assert MAY_IMPORT["ops"] == {"ops"}
    assert set(MAY_IMPORT) == set(LAYERS)


def test_the_direction_check_can_fail() -> None:
    runtime = SERVICE / "core" / "runtime.py"
    assert wrong_directions(runtime, {"service.codecs.schemas", "service.codecs.schemas.Tensor"})
    assert wrong_directions(runtime, {"service.http.errors"})
    assert wrong_directions(runtime, {"service.ops.metrics", "service.core.errors"}) == []
    assert wrong_directions(SERVICE / "grpc" / "servicer.py", {"service.http.body"})


def test_only_the_http_layer_imports_the_web_framework() -> None:
    """And the other confined packages (`CONFINED`) only where the table allows them."""
    offenders = {}
    for path in modules():
        allowed_here = {layer_of(path), relative(path)}
        found = sorted(name for name in imported(path)
                       if name.split(".")[0] in CONFINED
                       and not allowed_here & CONFINED[name.split(".")[0]])
        if found:
            offenders[relative(path)] = found
    assert offenders == {}


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
    for path in modules():
        if path == table:
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            called = node.func if isinstance(node, ast.Call) else None
            if isinstance(called, ast.Attribute) and called.attr in ROUTING_CALLS and (
                    isinstance(called.value, ast.Name) and called.value.id in {"app", "router"}):
                offenders.append(f"{relative(path)}:{called.lineno}")
    assert offenders == []

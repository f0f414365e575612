"""The images' pinned requirements (deploy/requirements/<extra>.txt, written by
deploy/lock.sh) agree with pyproject.toml: every direct dependency of an extra, and what its
own extras bring, is pinned to a version the project's specifier allows. A dependency
changed by hand in either file fails here until deploy/lock.sh is rerun."""

from __future__ import annotations

import tomllib
from importlib.metadata import PackageNotFoundError, requires

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.helpers import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
LOCKED_EXTRAS = ("serve", "train")  # deploy/lock.sh's
LEFT_OUT = {"torch"}  # the trainer image installs the pinned CPU build itself (deploy/lock.sh)


def direct(extra: str) -> list[Requirement]:
    """The project's own dependencies and the extra's, as pyproject.toml states them."""
    named = [*PYPROJECT["dependencies"], *PYPROJECT["optional-dependencies"][extra]]
    return [r for r in map(Requirement, named) if canonicalize_name(r.name) not in LEFT_OUT]


def lock(extra: str) -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for line in (REPO / "deploy" / "requirements" / f"{extra}.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, pinned = line.partition("==")
            assert pinned, f"{extra}.txt: {line!r} is not pinned with =="
            assert canonicalize_name(name) not in pins, f"{extra}.txt pins {name} twice"
            pins[canonicalize_name(name)] = Version(pinned)
    return pins


def brought_by_extras(requirement: Requirement) -> list[Requirement]:
    """What `requirement`'s extras (uvicorn[standard]) add, from the installed package's
    metadata, for this platform and Python."""
    try:
        declared = requires(requirement.name) or []
    except PackageNotFoundError:
        pytest.skip(f"{requirement.name} is not installed (bash scripts/setup.sh installs every extra)")
    wanted = [Requirement(text) for text in declared]
    return [r for r in wanted if r.marker is not None and any(
        r.marker.evaluate({"extra": extra}) and not r.marker.evaluate({"extra": ""})
        for extra in requirement.extras)]


@pytest.mark.parametrize("extra", LOCKED_EXTRAS)
def test_every_direct_dependency_is_pinned_within_its_specifier(extra: str) -> None:
    pins = lock(extra)
    missing = [str(r) for r in direct(extra) if canonicalize_name(r.name) not in pins]
    assert not missing, f"{extra}.txt lacks {missing}: rerun deploy/lock.sh"
    outside = [f"{r.name}=={pins[canonicalize_name(r.name)]} (pyproject: {r})" for r in direct(extra)
               if not r.specifier.contains(pins[canonicalize_name(r.name)], prereleases=True)]
    assert not outside, f"{extra}.txt pins outside pyproject.toml: {outside}; rerun deploy/lock.sh"


@pytest.mark.parametrize("extra", LOCKED_EXTRAS)
def test_what_a_dependencys_extras_bring_is_pinned_too(extra: str) -> None:
    pins = lock(extra)
    wanted = [r for d in direct(extra) if d.extras for r in brought_by_extras(d)]
    assert wanted or extra != "serve"  # uvicorn[standard] brings httptools, which the server needs
    missing = [str(r) for r in wanted if canonicalize_name(r.name) not in pins]
    assert not missing, f"{extra}.txt lacks {missing}: rerun deploy/lock.sh"


@pytest.mark.parametrize("extra", LOCKED_EXTRAS)
def test_the_lock_holds_neither_the_project_nor_what_it_leaves_out(extra: str) -> None:
    assert not {canonicalize_name("afm-serving"), *LEFT_OUT} & set(lock(extra))

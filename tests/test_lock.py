"""The locks: requirements.lock pins the development and test environment with hashes, satisfies every
range pyproject.toml declares (so a range edited without `make lock` fails here), and is what .venv
holds; the tritonclient venv has a lock of its own."""

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO

LOCK = REPO / "requirements.lock"
TRITON_LOCK = REPO / "clients" / "oip" / "tritonclient.lock"
PIN = re.compile(r"^(?P<name>[A-Za-z0-9._-]+)==(?P<version>\S+)\s*(?:;\s*(?P<marker>[^\\]+?))?\s*\\?$")


def parse_lock(path: Path) -> dict[str, dict]:
    """name -> {version, marker, hashes}, from a pip requirements file written by `uv pip compile`."""
    pins, current = {}, None
    for line in path.read_text().splitlines():
        if match := PIN.match(line):
            current = {"version": match["version"], "marker": match["marker"], "hashes": []}
            pins[canonicalize_name(match["name"])] = current
        elif current is not None and (found := re.match(r"^\s+--hash=sha256:([0-9a-f]{64})", line)):
            current["hashes"].append(found[1])
    return pins


def declared_requirements() -> list[Requirement]:
    """The package's requirements, every extra's, and the build's (.venv builds the project from the lock)."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    project = pyproject["project"]
    lines = project["dependencies"] + [line for extra in project["optional-dependencies"].values() for line in extra]
    lines += pyproject["build-system"]["requires"]
    return [Requirement(line) for line in lines if canonicalize_name(Requirement(line).name) != "staa-serve"]


@pytest.mark.parametrize("lock", [LOCK, TRITON_LOCK], ids=["project", "tritonclient"])
def test_every_pin_is_exact_and_hashed(lock):
    pins = parse_lock(lock)
    assert len(pins) > 5
    assert {name: pin["version"] for name, pin in pins.items() if not pin["hashes"]} == {}
    # A line the parser did not read as a pin would be installed unchecked by nobody: none may exist.
    unread = [line for line in lock.read_text().splitlines()
              if line and not line.startswith((" ", "#")) and not PIN.match(line)]
    assert unread == []


def test_the_lock_satisfies_every_range_pyproject_declares():
    pins = parse_lock(LOCK)
    unmet = []
    for requirement in declared_requirements():
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        pin = pins.get(canonicalize_name(requirement.name))
        if pin is None or not requirement.specifier.contains(pin["version"], prereleases=True):
            unmet.append(f"{requirement} (lock: {pin and pin['version']})")
    assert unmet == [], "pyproject.toml changed without `make lock`"


def test_the_lock_pins_the_makefiles_torch():
    torch_pin = re.search(r"^TORCH_PIN \?= torch==(\S+)$", (REPO / "Makefile").read_text(), re.M)[1]
    assert parse_lock(LOCK)["torch"]["version"] == torch_pin


def test_the_locked_venv_holds_exactly_the_lock():
    if Path(sys.prefix).resolve() != (REPO / ".venv").resolve():
        pytest.skip(f"not the locked .venv ({sys.prefix}): the canary's venv holds the newest versions instead")
    different = {}
    for name, pin in parse_lock(LOCK).items():
        if pin["marker"] and not Requirement(f"{name}; {pin['marker']}").marker.evaluate():
            continue
        installed = metadata.version(name)
        if installed != pin["version"]:
            different[name] = (pin["version"], installed)
    assert different == {}


def test_the_wheels_grpcio_and_protobuf_floors_are_what_its_stubs_demand():
    """The stubs a wheel ships refuse, at import, a grpcio older than the grpcio-tools that made them and
    a protobuf older than its protoc: those are the floors pyproject.toml declares."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    (tools,) = [Requirement(line) for line in pyproject["build-system"]["requires"] if line.startswith("grpcio-tools")]
    (built_with,) = [spec.version for spec in tools.specifier if spec.operator == "=="]
    if metadata.version("grpcio-tools") != built_with:
        pytest.skip(f"the stubs here were made by grpcio-tools {metadata.version('grpcio-tools')}, "
                    f"the wheel's by {built_with}")
    stubs = REPO / "proto" / "staa" / "v1"
    grpc_demand = re.search(r"GRPC_GENERATED_VERSION = '([\d.]+)'", (stubs / "explainer_pb2_grpc.py").read_text())[1]
    protobuf_demand = ".".join(re.search(r"Domain\.PUBLIC,\s*(\d+),\s*(\d+),\s*(\d+),",
                                         (stubs / "explainer_pb2.py").read_text()).groups())
    floors = {Requirement(line).name: [spec.version for spec in Requirement(line).specifier if spec.operator == ">="]
              for line in pyproject["project"]["dependencies"]}
    assert floors["grpcio"] == [grpc_demand] and floors["protobuf"] == [protobuf_demand]

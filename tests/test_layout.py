"""No folder of the repository hides an installed package, whatever the working directory.

``python -m ...`` and ``python -c ...`` put the working directory first on ``sys.path``, and pytest
puts ``tests/`` and the folders of test files there too. A folder holding ``__init__.py`` in one of
those places is a regular package and wins over any installed package of the same name (transformers
5.25 imports Hugging Face's ``kernels``, and got our ``kernels/``). A folder without one is a namespace
portion, which Python uses only when no regular package or module of that name is found anywhere on
the path. So the repo's top-level folders, and every folder under ``tests/``, hold no ``__init__.py``;
the installed names (``staa_serve.*``, ``staa``) are mapped onto them by setup.py."""

import json
import subprocess
import sys
from importlib import metadata, util
from pathlib import Path

import pytest

from tests.conftest import REPO

# The folders that can stand first on sys.path: the repo root (the working directory) and, under pytest,
# tests/ and every folder below it.
PATH_ROOTS = [REPO, REPO / "tests", *(path for path in (REPO / "tests").rglob("*") if path.is_dir()
                                      and path.name != "__pycache__")]


def shadowing_folders() -> list[str]:
    return sorted(str(child.relative_to(REPO)) for root in PATH_ROOTS for child in root.iterdir()
                  if child.is_dir() and (child / "__init__.py").exists())


def test_no_folder_that_can_stand_first_on_sys_path_is_a_regular_package():
    assert shadowing_folders() == []


def imported_from(names: list[str], site: Path) -> dict:
    """Imports each name in a fresh interpreter started in the repo root with ``site`` on PYTHONPATH
    (after the working directory, as an installed package is); returns where each came from."""
    code = ("import importlib, json, sys; print(json.dumps({name: getattr(importlib.import_module(name), 'ORIGIN', "
            "'the repo') for name in sys.argv[1:]}))")
    done = subprocess.run([sys.executable, "-c", code, *names], cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_an_installed_package_named_like_any_repo_folder_wins_from_the_repo_root(tmp_path):
    names = sorted({child.name for root in (REPO, REPO / "tests") for child in root.iterdir()
                    if child.is_dir() and child.name.isidentifier()})
    assert {"kernels", "models", "server", "clients", "benchmarks", "proto", "tests"} <= set(names)
    for name in names:
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("ORIGIN = 'installed'\n")
    assert imported_from(names, tmp_path) == {name: "installed" for name in names}


def test_the_same_check_sees_a_folder_that_would_shadow(tmp_path):
    """A regular package in the working directory does win: the check above can fail."""
    (tmp_path / "installed" / "kernels").mkdir(parents=True)
    (tmp_path / "installed" / "kernels" / "__init__.py").write_text("ORIGIN = 'installed'\n")
    work = tmp_path / "work"
    (work / "kernels").mkdir(parents=True)
    (work / "kernels" / "__init__.py").write_text("")
    done = subprocess.run([sys.executable, "-c", "import kernels; print(getattr(kernels, 'ORIGIN', 'work'))"],
                          cwd=work, capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(tmp_path / "installed"), "PATH": "/usr/bin:/bin"})
    assert done.stdout.strip() == "work"


def test_hugging_face_kernels_and_our_kernels_both_import_from_the_repo_root():
    if util.find_spec("kernels") is None:
        pytest.skip("Hugging Face's kernels is not installed in this environment")
    code = ("import kernels, transformers.modeling_utils, staa_serve.kernels.threshold_focus as ours; "
            "print(kernels.__file__); print(ours.__file__)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    theirs, ours = map(Path, done.stdout.split())
    assert Path(metadata.distribution("kernels").locate_file("kernels/__init__.py")).resolve() == theirs.resolve()
    assert ours == REPO / "kernels" / "threshold_focus.py"

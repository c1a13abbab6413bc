"""Build hook and package layout (metadata lives in pyproject.toml).

The repository keeps its top-level folders (models/, server/, clients/, kernels/, benchmarks/); the
installed package puts them under one ``staa_serve`` namespace, so nothing generic lands in
site-packages. The generated stubs stay the ``staa`` package (the .proto package name, which the
generated code imports by). Stubs are generated from proto/ before packaging."""

import sys
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
FOLDERS = ("models", "kernels", "server", "clients", "benchmarks")


class BuildPyWithStubs(build_py):
    def run(self):
        sys.path.insert(0, str(ROOT / "proto"))
        from staa.stubs import generate_stubs

        for package in ("v1", "oip"):
            generate_stubs(ROOT / "proto" / "staa" / package)
        super().run()


packages = ["staa", *(f"staa.{name}" for name in find_packages(ROOT / "proto" / "staa"))]
package_dir = {"staa": "proto/staa"}
for folder in FOLDERS:
    packages += [f"staa_serve.{folder}", *(f"staa_serve.{folder}.{name}" for name in find_packages(ROOT / folder))]
    package_dir[f"staa_serve.{folder}"] = folder

setup(cmdclass={"build_py": BuildPyWithStubs}, packages=packages, package_dir=package_dir)

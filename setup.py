"""Build hook: generate the gRPC stubs from proto/ before packaging (metadata lives in pyproject.toml)."""

import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithStubs(build_py):
    def run(self):
        sys.path.insert(0, str(Path(__file__).resolve().parent / "proto"))
        from staa.stubs import generate_stubs

        for package in ("v1", "oip"):
            generate_stubs(Path(__file__).resolve().parent / "proto" / "staa" / package)
        super().run()


setup(cmdclass={"build_py": BuildPyWithStubs})

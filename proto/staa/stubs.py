"""Generate Python stubs from ``proto/staa/v1/*.proto`` when they are missing or stale."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent.parent  # the repo's proto/ directory
STAMP_NAME = ".stubs.sha256"


def _proto_files(package_dir: Path) -> list[Path]:
    return sorted(package_dir.glob("*.proto"))


def _digest(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def stubs_are_fresh(package_dir: Path) -> bool:
    stamp = package_dir / STAMP_NAME
    files = _proto_files(package_dir)
    if not files:  # installed without sources: trust the shipped stubs
        return True
    return stamp.exists() and stamp.read_text().strip() == _digest(files)


def generate_stubs(package_dir: Path) -> None:
    """Run protoc (from grpcio-tools) on every .proto in ``package_dir``.

    Raises:
        RuntimeError: protoc failed; its exit status is in the message.
    """
    from grpc_tools import protoc  # imported here: only needed when generating

    files = _proto_files(package_dir)
    include = str(PROTO_ROOT)
    well_known = str(Path(protoc.__file__).parent / "_proto")
    args = [
        "grpc_tools.protoc",
        f"-I{include}",
        f"-I{well_known}",
        f"--python_out={include}",
        f"--pyi_out={include}",
        f"--grpc_python_out={include}",
        *[str(path) for path in files],
    ]
    status = protoc.main(args)
    if status != 0:
        raise RuntimeError(f"protoc exited with status {status} for {package_dir}")
    # Write the stamp last and atomically: a crash mid-way leaves stubs "stale".
    tmp = package_dir / f"{STAMP_NAME}.{os.getpid()}"
    tmp.write_text(_digest(files) + "\n")
    tmp.replace(package_dir / STAMP_NAME)


def ensure_stubs(package_dir: Path) -> None:
    if not stubs_are_fresh(package_dir):
        generate_stubs(package_dir)

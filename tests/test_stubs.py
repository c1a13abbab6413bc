"""Generated stubs are never stale: a changed .proto makes them stale and regeneration refreshes them."""

import shutil

from staa.stubs import generate_stubs, stubs_are_fresh, PROTO_ROOT


def test_shipped_stubs_match_the_proto():
    assert stubs_are_fresh(PROTO_ROOT / "staa" / "v1")


def test_editing_a_proto_makes_stubs_stale_until_regenerated(tmp_path, monkeypatch):
    copy = tmp_path / "staa" / "v1"
    shutil.copytree(PROTO_ROOT / "staa" / "v1", copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr("staa.stubs.PROTO_ROOT", tmp_path)
    assert stubs_are_fresh(copy)
    proto = copy / "explainer.proto"
    proto.write_text(proto.read_text() + "\nmessage Verbosity {\n  bool verbose = 1;\n}\n")
    assert not stubs_are_fresh(copy)
    generate_stubs(copy)
    assert stubs_are_fresh(copy)
    assert "verbose" in (copy / "explainer_pb2.pyi").read_text()

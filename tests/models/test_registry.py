"""Loading goes through one function: shipped default, local directories, cached hub ids, never the network."""

import json

import pytest

from staa_serve.models.errors import UnsupportedModel
from staa_serve.models.registry import DEFAULT_MODEL_NAME, load_model, weights_sha256


def test_default_model_is_the_shipped_safetensors_checkpoint():
    loaded = load_model()
    assert loaded.model_id == DEFAULT_MODEL_NAME and not loaded.random_weights
    assert load_model("staa-tiny-random").random_weights  # the plumbing model ships beside it
    assert (loaded.source_dir / "model.safetensors").is_file()
    assert loaded.weights_sha256 == weights_sha256(loaded.source_dir)
    assert not loaded.model.training


def test_hub_id_not_in_the_local_cache_fails_clearly_without_network(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UnsupportedModel, match="nor a hub id in the local cache"):
        load_model("facebook/timesformer-base-finetuned-k400")


def test_directory_without_safetensors_is_refused(tiny_model_dir, tmp_path):
    copy = tmp_path / "pickled"
    copy.mkdir()
    for name in ("config.json", "preprocessor_config.json"):
        (copy / name).write_text((tiny_model_dir / name).read_text())
    with pytest.raises(UnsupportedModel, match="no .safetensors"):
        load_model(str(copy))


def test_non_divided_attention_is_refused(tiny_model_dir, tmp_path):
    import shutil

    copy = tmp_path / "joint"
    shutil.copytree(tiny_model_dir, copy)
    config = json.loads((copy / "config.json").read_text())
    config["attention_type"] = "joint_space_time"
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedModel, match="divided space-time"):
        load_model(str(copy))


def test_the_command_line_never_overwrites_the_shipped_trained_model(capsys):
    from staa_serve.models.random_weights import main
    from staa_serve.models.registry import DEFAULT_MODEL_NAME, WEIGHTS_DIR

    weights = WEIGHTS_DIR / DEFAULT_MODEL_NAME / "model.safetensors"
    before = weights.stat().st_mtime_ns
    for argv in ([], [str(WEIGHTS_DIR / DEFAULT_MODEL_NAME)], [str(WEIGHTS_DIR / DEFAULT_MODEL_NAME / "." ), "--size", "base"]):
        with pytest.raises(SystemExit) as stopped:
            main(argv)
        assert stopped.value.code == 2
    assert "holds the shipped trained default model" in capsys.readouterr().err
    assert weights.stat().st_mtime_ns == before

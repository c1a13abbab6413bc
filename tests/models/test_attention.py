"""The attention tap on every supported architecture: the fused path's rows and maps against the
eager oracle, the eager oracle against the attention HF's own, untouched model returns.

Random-weight tiny configs with odd grids (5x5 patches), odd frame counts and batch 2. Tolerance:
the fused attention sums the same products in another order, and each layer's small differences
reach the next layer's input, so maps agree to float32 rounding, rtol 1e-5 (the acceptance bound).
"""

import pytest
import torch

from staa_serve.models.attention import IMPLEMENTATIONS
from staa_serve.models.errors import UnsupportedModel
from staa_serve.models.pipeline import Staa
from staa_serve.models.random_weights import random_config, save_random_model
from staa_serve.models.registry import ARCHITECTURES, load_model
from staa_serve.models.staa import StaaParams
from tests.conftest import TEST_DEVICE

ODD = {  # 40 / 8 -> a 5 x 5 grid; 3 frames, or 6 frames in 3 tubelet slots
    "timesformer": dict(image_size=40, patch_size=8, num_frames=3, num_hidden_layers=3, num_labels=5),
    "videomae": dict(image_size=40, patch_size=8, num_frames=6, num_hidden_layers=3, num_labels=5),
    "vivit": dict(image_size=40, patch_size=8, num_frames=6, num_hidden_layers=3, num_labels=5),
}


@pytest.fixture(scope="module", params=sorted(ODD))
def saved(request, tmp_path_factory):
    architecture = request.param
    directory = save_random_model(tmp_path_factory.mktemp(architecture), random_config(architecture, **ODD[architecture]), seed=11)
    return architecture, directory


@pytest.fixture(scope="module")
def clips(saved):
    architecture, _ = saved
    clips = torch.randn(2, ODD[architecture]["num_frames"], 3, 40, 40, generator=torch.Generator().manual_seed(4))
    return clips.to(TEST_DEVICE)


def hf_model(saved):
    """The same checkpoint through ``transformers`` alone: no adapter, its own eager attention."""
    architecture, directory = saved
    return ARCHITECTURES[architecture].from_pretrained(directory, attn_implementation="eager").to(TEST_DEVICE).eval()


def test_fused_maps_equal_the_eager_oracle(saved, clips):
    loaded = load_model(str(saved[1]), device=TEST_DEVICE)
    assert loaded.adapter.implementation == "fused"
    fused = Staa(loaded).attribute(clips)
    with loaded.adapter.using("eager"):
        eager = Staa(loaded).attribute(clips)
    assert fused.spatial.shape == (2, clips.shape[1], 5, 5) and fused.temporal.shape == (2, clips.shape[1])
    torch.testing.assert_close(fused.spatial, eager.spatial, rtol=1e-5, atol=0)
    torch.testing.assert_close(fused.temporal, eager.temporal, rtol=1e-5, atol=0)
    torch.testing.assert_close(fused.logits, eager.logits, rtol=1e-4, atol=1e-5)


def test_class_sensitive_maps_equal_the_eager_oracle_and_follow_the_class(saved, clips):
    loaded = load_model(str(saved[1]), device=TEST_DEVICE)
    staa_class = Staa(loaded, StaaParams(method="staa_class"))
    fused = staa_class.attribute(clips, target=0)
    with loaded.adapter.using("eager"):
        eager = staa_class.attribute(clips, target=0)
    assert fused.spatial.shape == (2, clips.shape[1], 5, 5)
    torch.testing.assert_close(fused.spatial, eager.spatial, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(fused.temporal, eager.temporal, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(fused.spatial.sum(dim=(-2, -1)), torch.ones_like(fused.temporal), rtol=1e-5, atol=1e-6)
    other = staa_class.attribute(clips, target=3)
    assert (other.spatial - fused.spatial).abs().amax() > 1e-3  # another class, another map
    paper = Staa(loaded).attribute(clips)
    assert torch.equal(Staa(loaded).attribute(clips, target=3).spatial, paper.spatial)  # STAA ignores the class
    predicted = staa_class.attribute(clips)  # default: each window's predicted class
    for row, label in enumerate(predicted.logits.argmax(-1).tolist()):
        torch.testing.assert_close(predicted.spatial[row], staa_class.attribute(clips[row:row + 1], target=label).spatial[0],
                                   rtol=1e-4, atol=1e-6)


def test_routed_model_computes_what_transformers_computes(saved, clips):
    reference = hf_model(saved)
    loaded = load_model(str(saved[1]), device=TEST_DEVICE)
    assert set(loaded.model.state_dict()) == set(reference.state_dict())  # routing renamed no parameter
    with torch.inference_mode():
        expected = reference(pixel_values=clips).logits
        for implementation in IMPLEMENTATIONS:
            with loaded.adapter.using(implementation):
                torch.testing.assert_close(loaded.adapter.forward(clips), expected, rtol=1e-4, atol=1e-5)


def test_gradients_through_fused_attention_equal_the_eager_ones(saved, clips):
    """Attacks and gradient baselines differentiate the served model: every path must stay differentiable."""
    loaded = load_model(str(saved[1]), device=TEST_DEVICE)
    gradients = {}
    for implementation in IMPLEMENTATIONS:
        pixels = clips.clone().requires_grad_(True)
        with loaded.adapter.using(implementation):
            loaded.adapter.forward(pixels)[:, 0].sum().backward()
        gradients[implementation] = pixels.grad
    torch.testing.assert_close(gradients["fused"], gradients["eager"], rtol=1e-4, atol=1e-6)


def hf_rows(saved, clips):
    """The rows STAA reads, taken from the probabilities HF's untouched eager model computes: per layer
    (spatial, temporal) as ``[B, T', N]`` and ``[B, N, T']``."""
    architecture, _ = saved
    model = hf_model(saved)
    batch, frames = clips.shape[:2]
    with torch.inference_mode():
        if architecture == "timesformer":
            temporal = []
            hooks = [layer.temporal_attention.attention.attn_drop.register_forward_hook(lambda m, i, out: temporal.append(out))
                     for layer in model.timesformer.encoder.layer]
            spatial = model(pixel_values=clips, output_attentions=True).attentions  # L x [B*T, H, 1+N, 1+N]
            for hook in hooks:
                hook.remove()
            return [(probs[:, :, 0, 1:].sum(dim=1).reshape(batch, frames, 25),
                     received.sum(dim=(1, 2)).reshape(batch, 25, frames)) for probs, received in zip(spatial, temporal)]
        attentions = model(pixel_values=clips, output_attentions=True).attentions  # L x [B, H, S, S]
    rows = [probs[:, :, 0, 1:].sum(dim=1) if architecture == "vivit" else probs.sum(dim=(1, 2)) for probs in attentions]
    return [(row.reshape(batch, frames // 2, 25), row.reshape(batch, frames // 2, 25).transpose(1, 2)) for row in rows]


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_captured_rows_are_the_rows_of_transformers_attention(saved, clips, implementation):
    loaded = load_model(str(saved[1]), device=TEST_DEVICE, attention=implementation)
    with torch.inference_mode():
        _, rows, _ = loaded.adapter.read(clips)
    expected = hf_rows(saved, clips)
    assert rows.spatial.shape[0] == rows.temporal.shape[0] == len(expected) == 3
    for layer, (spatial, temporal) in enumerate(expected):
        torch.testing.assert_close(rows.spatial[layer], spatial, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(rows.temporal[layer], temporal, rtol=1e-5, atol=1e-6)


def test_a_capture_keeping_probabilities_keeps_every_layer(saved, clips):
    architecture, _ = saved
    loaded = load_model(str(saved[1]), device=TEST_DEVICE)
    with torch.inference_mode(), loaded.adapter.capture(keep_probabilities=True) as capture:
        loaded.adapter.forward(clips)
    roles = {"timesformer": {"spatial": (6, 4, 26, 26), "temporal": (50, 4, 3, 3)}}.get(architecture)
    roles = roles or {"joint": (2, 4, 75 + (architecture == "vivit"), 75 + (architecture == "vivit"))}
    assert {role: [tuple(probs.shape) for probs in kept] for role, kept in capture.probabilities.items()} == \
        {role: [shape] * 3 for role, shape in roles.items()}


def test_captures_do_not_nest_and_end_even_when_the_forward_fails(saved, clips):
    loaded = load_model(str(saved[1]), device=TEST_DEVICE)
    adapter = loaded.adapter
    with pytest.raises((RuntimeError, ValueError)), torch.inference_mode(), adapter.capture():
        adapter.forward(clips[:, :, :2])  # two channels: the patch embedding refuses it
    assert adapter.taps.current is None
    with adapter.capture(), pytest.raises(RuntimeError, match="already in progress"):
        with adapter.capture():
            pass


def test_an_unknown_implementation_is_refused_by_name(tiny_model_dir):
    with pytest.raises(ValueError, match=r"attention implementation must be one of \('fused', 'eager'\), got 'flash'"):
        load_model(str(tiny_model_dir), attention="flash")


def test_vivit_with_non_square_patches_is_refused(tmp_path):
    config = random_config("vivit", image_size=32, tubelet_size=[2, 8, 4], num_hidden_layers=1)
    with pytest.raises(UnsupportedModel, match="non-square"):
        load_model(str(save_random_model(tmp_path / "vivit", config)))

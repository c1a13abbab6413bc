"""Write a model directory's README.md (model card) from its training_log.json and evaluation.json
(and training_notes.md, when the directory has one).

    python -m staa_serve.models.synthetic.model_card models/weights/staa-synthkinetics
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from staa_serve.models.synthetic.actions import ACTIONS
from staa_serve.models.synthetic.train import recipe_flags


def _percent(value) -> str:
    return "n/a" if value is None or value != value else f"{100 * value:.1f} %"


def localisation_table(summary: list[dict]) -> list[str]:
    lines = ["| STAA variant | spatial pointing | (random) | spatial mass | (random) | temporal pointing | temporal mass | (random) |",
             "|---|---|---|---|---|---|---|---|"]
    for row in summary:
        lines.append(f"| {row['variant']} | {_percent(row['pointing_spatial'])} | {_percent(row['floor_pointing_spatial'])} | "
                     f"{_percent(row['mass_spatial'])} | {_percent(row['floor_mass_spatial'])} | "
                     f"{_percent(row['pointing_temporal'])} | {_percent(row['mass_temporal'])} | {_percent(row['floor_temporal'])} |")
    return lines


def render(model_dir: Path) -> str:
    training = json.loads((model_dir / "training_log.json").read_text())
    evaluation = json.loads((model_dir / "evaluation.json").read_text())
    config = json.loads((model_dir / "config.json").read_text())
    arguments, history = training["arguments"], training["history"]
    summary = evaluation["summary"]
    lines = [
        f"# {model_dir.name}: a TimeSformer trained on SynthKinetics", "",
        "STAA Serve's default model. A small divided space-time TimeSformer "
        f"({config['num_hidden_layers']} layers, hidden {config['hidden_size']}, {config['num_attention_heads']} heads, "
        f"{config['num_frames']} frames of {config['image_size']}x{config['image_size']}, "
        f"{config['image_size'] // config['patch_size']}x{config['image_size'] // config['patch_size']} patch grid), "
        "trained from scratch on CPU by `models/synthetic/train.py` on procedurally generated action clips "
        "whose ground truth (where and when the action happens) is known. It exists so that the server's "
        "explanations mean something out of the box and can be checked against that ground truth. "
        "It is not a Kinetics-400 model: real checkpoints load with `--model`.", "",
        "## Data",
        f"SynthKinetics (`models/synthetic/`): an articulated stick figure performs one of {len(ACTIONS)} actions "
        f"({', '.join(action.name for action in ACTIONS)}) inside a sub-interval of a 32-frame, 16 fps, 128x128 clip "
        "and stands idle outside it. Colours, sizes, positions, backgrounds, distractors, camera jitter and lighting "
        "are drawn independently of the action, so only the motion tells the class. Windows: 8 frames at stride 4, "
        "resized and cropped by the same code the server uses.", "",
        "## Training",
        f"One command, `{' '.join(['python -m staa_serve.models.synthetic.train --out', str(model_dir), *recipe_flags(arguments)])}` "
        f"(scale {arguments.get('scale')}), batch {arguments['batch']}, AdamW peak lr {arguments['lr']} with "
        f"{arguments['warmup']} warm-up steps and cosine decay, left-right flips"
        + (", colour/contrast/zoom/shift augmentation per window" if arguments.get("augment") else "")
        + (f", a moving average of the weights (decay {arguments['ema']}, kept when it validates better)"
           if arguments.get("ema") else "")
        + ". Curriculum (the model sat at chance without it; see the training notes below):", "",
        "| stage | clips | steps | clutter (difficulty) | colour variation (palette) | placement | action |",
        "|---|---|---|---|---|---|---|",
    ]
    for stage in arguments["stages"]:
        action = "fills the clip" if stage["action_length"] else "sub-interval of 12-20 frames"
        palette = stage.get("palette", (1.0, 1.0))
        lines.append(f"| {stage['name']} | {stage['clips']} | {stage['steps']} | {stage['difficulty'][0]}-{stage['difficulty'][1]} "
                     f"| {palette[0]}-{palette[1]} | {'centred' if stage['placement'] == 0 else stage['placement']} | {action} |")
    lines += ["", f"Wall time {history[-1]['minutes']:.1f} min on this project's 2-core CPU machine. "
              "Held-out validation accuracy (512 clips, full difficulty, raw frames) during training:", "",
              "| step | stage | val accuracy |", "|---|---|---|"]
    lines += [f"| {record['step']} | {record['stage']} | {_percent(record['val_accuracy'])} |" for record in history]
    notes = model_dir / "training_notes.md"  # what the logs cannot say (pauses, shared cores, choices)
    if notes.is_file():
        lines += ["", "### Training notes", "", notes.read_text().strip()]
    default = summary[0]
    lines += [
        "", "## Evaluation (held-out)",
        f"{evaluation['count']} clips from seed {evaluation['seed']} (never used in training), full difficulty range, "
        "rendered, encoded to H.264, decoded and windowed exactly as the server does "
        "(`python -m staa_serve.models.synthetic.evaluate`).", "",
        f"**Top-1 accuracy: {_percent(default['accuracy'])}** (chance {_percent(1 / len(ACTIONS))}).", "",
        "Per class: " + ", ".join(f"{label} {_percent(value)}" for label, value in evaluation["per_class_accuracy"].items()), "",
        "STAA localisation against the ground truth, each beside the expected score of a uniformly random map "
        "(spatial: acting-limb token mask; temporal: the sampled frames inside the action interval):", "",
        *localisation_table(summary), "",
        "## Limits",
        "- Trained only on stick figures: it knows nothing of real video; use it to see and test STAA, not to classify people.",
        "- Weights are random-initialised and trained on CPU from the seeds in `models/synthetic/train.py`; the run is "
        "deterministic up to PyTorch's CPU kernels.",
        f"- weights sha256: `{evaluation['weights_sha256']}`",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    directory = Path(sys.argv[1])
    (directory / "README.md").write_text(render(directory))
    print(f"wrote {directory / 'README.md'}")

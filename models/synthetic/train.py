"""Train the SynthKinetics TimeSformer on CPU: pre-generated windows, a clean-to-cluttered curriculum,
warm-up + cosine learning rate. Saves a checkpoint that loads through ``models.registry.load_model``.

    python -m staa_serve.models.synthetic.train --out models/weights/staa-synthkinetics [--steps 3000]

Seeds: training clips use seeds from SeedSequence([TRAIN_SEED, i]); evaluation uses other seeds.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from transformers import TimesformerForVideoClassification

from staa_serve.models.preprocess import ProcessorSettings
from staa_serve.models.random_weights import processor_config_for, random_config
from staa_serve.models.synthetic.actions import ACTIONS
from staa_serve.models.synthetic.augment import augment_windows
from staa_serve.models.synthetic.dataset import WindowSet, build_windows

TRAIN_SEED, VALIDATION_SEED = 1000, 2000
FRAMES, STRIDE, IMAGE_SIZE, PATCH = 8, 4, 96, 12
DISTIL_WEIGHT = 0.7  # of the distillation term, when teachers' logits are given


def seeds(root: int, count: int, start: int = 0) -> list[int]:
    return [int(np.random.SeedSequence([root, index]).generate_state(1)[0]) for index in range(start, start + count)]


def model_config(hidden: int, layers: int, heads: int, mlp_ratio: int = 2, dropout: float = 0.0,
                 image_size: int = IMAGE_SIZE, patch: int = PATCH):
    config = random_config("timesformer", image_size=image_size, patch_size=patch, num_frames=FRAMES, hidden_size=hidden,
                                     num_hidden_layers=layers, num_attention_heads=heads,
                                     intermediate_size=mlp_ratio * hidden, hidden_dropout_prob=dropout,
                                     num_labels=len(ACTIONS))  # drop-path stays 0: this HF config types it int
    config.id2label = {index: action.name for index, action in enumerate(ACTIONS)}
    config.label2id = {name: index for index, name in config.id2label.items()}
    config.staa_frame_stride = STRIDE
    return config


def learning_rate(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


@torch.no_grad()
def accuracy(model, windows: WindowSet, settings: ProcessorSettings, batch: int = 64) -> float:
    model.eval()
    correct, device = 0, next(model.parameters()).device
    for start in range(0, len(windows), batch):
        pixels, labels = windows.batch(np.arange(start, min(start + batch, len(windows))), settings)
        correct += (model(pixel_values=pixels.to(device)).logits.argmax(-1) == labels.to(device)).sum().item()
    model.train()
    return correct / len(windows)


@torch.no_grad()
def ensemble_logits(teachers: list, windows: WindowSet, settings: ProcessorSettings, batch: int = 128,
                    progress=None) -> torch.Tensor:
    """The teachers' mean logits ``[K, C]`` for every window (as rendered: no flip, no augmentation)."""
    device = windows.pixels.device
    for teacher in teachers:
        teacher.eval()
    found = []
    for start in range(0, len(windows), batch):
        pixels, _ = windows.batch(np.arange(start, min(start + batch, len(windows))), settings)
        found.append(torch.stack([teacher(pixel_values=pixels).logits.float() for teacher in teachers]).mean(0))
        if progress is not None:
            progress.update(len(pixels))
    return torch.cat(found).to(device)  # [K, C]


def distillation_loss(logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) at ``temperature``, scaled by T^2 so its gradients match cross-entropy's."""
    return torch.nn.functional.kl_div(torch.log_softmax(logits / temperature, -1),
                                      torch.log_softmax(teacher_logits / temperature, -1),
                                      log_target=True, reduction="batchmean") * temperature ** 2


def train(model, stages: list[tuple[WindowSet, int]], validation: WindowSet, settings: ProcessorSettings,
          peak_lr: float, warmup: int, batch: int, evaluate_every: int, seed: int = 0, log=print,
          checkpoint=None, compile: bool = False, ema_decay: float = 0.0, augment: bool = False,
          label_smoothing: float = 0.0, soft_targets: list | None = None, distil_weight: float = DISTIL_WEIGHT,
          temperature: float = 2.0) -> tuple[torch.nn.Module, list[dict]]:
    """Run the curriculum ``stages`` ([(windows, steps)]) with one LR schedule.

    Returns the weights to keep and the history. With ``ema_decay`` an exponential moving average
    of the weights is kept beside them; at each evaluation the one with the better validation
    accuracy is the one to keep (and the history records both). ``compile`` runs the training
    forward and backward through ``torch.compile`` (about 1.4x faster per step on the 2-core CPU
    machine, after about a minute of compiling). ``augment`` applies ``augment_windows`` (colour,
    contrast, zoom/shift per window) to every training batch. ``soft_targets`` (per stage: teacher logits
    ``[K, C]`` from ``ensemble_logits``, or None) mixes a distillation term into the loss with weight
    ``distil_weight``. ``checkpoint(weights, history)``, when given, runs after every evaluation, so a
    long run can be saved (and committed) before it finishes.
    """
    generator = np.random.default_rng(seed)
    device = next(model.parameters()).device
    forward = torch.compile(model) if compile else model
    average = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(ema_decay)) if ema_decay else None
    keep = model
    optimizer = torch.optim.AdamW(model.parameters(), lr=peak_lr, weight_decay=0.05)
    total = sum(steps for _, steps in stages)
    history, step, started = [], 0, time.perf_counter()
    model.train()
    progress = tqdm(total=total, desc="train")
    for stage, (windows, steps) in enumerate(stages):
        for _ in range(steps):
            indices = generator.integers(0, len(windows), batch)
            pixels, labels = windows.batch(indices, settings, flip=generator.random(batch) < 0.5,
                                           augment=(lambda raw: augment_windows(raw, generator)) if augment else None)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, total, peak_lr, warmup)
            logits = forward(pixel_values=pixels.to(device)).logits
            loss = torch.nn.functional.cross_entropy(logits, labels.to(device), label_smoothing=label_smoothing)
            if soft_targets is not None and soft_targets[stage] is not None:
                teacher = soft_targets[stage][torch.as_tensor(indices, device=soft_targets[stage].device)]
                loss = (1 - distil_weight) * loss + distil_weight * distillation_loss(logits, teacher.to(device),
                                                                                      temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            if average is not None:
                average.update_parameters(model)
            step += 1
            progress.update(1)
            progress.set_postfix(stage=stage, loss=f"{loss.item():.3f}")
            if step % evaluate_every == 0 or step == total:
                seen = windows.head(256)
                record = {"step": step, "stage": stage, "loss": round(loss.item(), 4),
                          "stage_accuracy": round(accuracy(model, seen, settings), 4),
                          "val_accuracy": round(accuracy(model, validation, settings), 4),
                          "minutes": round((time.perf_counter() - started) / 60, 2)}
                keep = model
                if average is not None:
                    record["val_accuracy_ema"] = round(accuracy(average.module, validation, settings), 4)
                    keep = average.module if record["val_accuracy_ema"] > record["val_accuracy"] else model
                history.append(record)
                log(json.dumps(record))
                if checkpoint is not None:
                    checkpoint(keep, history)
    progress.close()
    return keep, history


def save(model, out: Path, history: list[dict], arguments: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model.config.staa_random_weights = False
    model.save_pretrained(out, safe_serialization=True)
    (out / "preprocessor_config.json").write_text(json.dumps(processor_config_for(model.config.image_size), indent=2)
                                                  + "\n")
    (out / "training_log.json").write_text(json.dumps({"arguments": arguments, "history": history}, indent=1) + "\n")


@dataclass(frozen=True)
class Stage:
    """One curriculum stage: which windows to render and how many steps to train on them."""

    name: str
    clips: int
    steps: int
    difficulty: tuple[float, float]
    placement: float
    action_length: tuple[int, int] | None  # None: the generator's sub-interval
    palette: tuple[float, float] = (1.0, 1.0)  # colour variation drawn per clip in this range (1: random colours)


def curriculum(scale: float = 1.0, final_steps: int | None = None, final_clips: int | None = None,
               final_difficulty: tuple[float, float] = (0.0, 1.0)) -> list[Stage]:
    """White figure centred on grey, action all clip long -> random colours, anywhere, cluttered, sub-interval.

    Colour is the hard nuisance: from random colours the model sits at chance for 1000+ steps even
    on centred, uncluttered clips, while with fixed colours it reaches 99 % in 400 steps; so colours
    widen gradually and every stage keeps some easy clips.
    """
    return [
        Stage("white-on-grey-centred", int(1500 * scale), int(500 * scale), (0.0, 0.1), 0.0, (32, 32), (0.0, 0.0)),
        Stage("some-colour-placed", int(2500 * scale), int(800 * scale), (0.0, 0.4), 0.5, None, (0.0, 0.5)),
        Stage("more-colour-cluttered", int(4000 * scale), int(1500 * scale), (0.0, 0.8), 1.0, None, (0.0, 1.0)),
        Stage("full", final_clips or int(12000 * scale), final_steps or int(6000 * scale), final_difficulty, 1.0, None,
              (1.0, 1.0)),
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m staa_serve.models.synthetic.train")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--scale", type=float, default=2.0, help="multiply every stage's clips and steps")
    parser.add_argument("--validation-clips", type=int, default=512)
    parser.add_argument("--final-steps", type=int, default=None,
                        help="steps of the last (full-difficulty) stage; default 6000 x scale")
    parser.add_argument("--final-clips", type=int, default=None,
                        help="distinct clips of the last stage; default 12000 x scale")
    parser.add_argument("--final-difficulty", type=float, nargs=2, default=(0.0, 1.0), metavar=("LOW", "HIGH"),
                        help="range the last stage draws clip difficulty from (held-out clips: 0 to 1)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--mlp-ratio", type=int, default=2, help="MLP width as a multiple of --hidden")
    parser.add_argument("--image-size", type=int, default=IMAGE_SIZE, help="input side in pixels of a new model")
    parser.add_argument("--patch", type=int, default=PATCH, help="patch side in pixels (image size / patch: the token grid)")
    parser.add_argument("--dropout", type=float, default=0.0, help="hidden dropout of a new model")
    parser.add_argument("--label-smoothing", type=float, default=0.0)
    parser.add_argument("--augment", action="store_true",
                        help="colour, contrast and zoom/shift per training window (models/synthetic/augment.py)")
    parser.add_argument("--distil-from", default=None,
                        help="comma-separated checkpoints whose mean logits the model also learns from")
    parser.add_argument("--distil-weight", type=float, default=DISTIL_WEIGHT, help="weight of the distillation term")
    parser.add_argument("--temperature", type=float, default=2.0, help="softmax temperature of distillation")
    parser.add_argument("--ema", type=float, default=0.0,
                        help="also keep an exponential moving average of the weights with this decay (e.g. 0.998)")
    parser.add_argument("--compile", action="store_true", help="train through torch.compile (faster after warm-up)")
    parser.add_argument("--evaluate-every", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="processes rendering the training windows")
    parser.add_argument("--device", default="cpu", help="torch device to train on (the shipped run used cpu)")
    parser.add_argument("--init", type=Path, default=None,
                        help="continue from this checkpoint's weights (e.g. the shipped model) instead of random ones")
    parser.add_argument("--cache", type=Path, default=None,
                        help="keep rendered windows here and reuse them (runs that differ only in training settings)")
    parser.add_argument("--render-only", action="store_true", help="render (into --cache) and stop")
    parser.add_argument("--stages", default="all", help="comma-separated stage names to run (default: all)")
    return parser


def recipe_flags(arguments: dict) -> list[str]:
    """The flags of a logged run that change what it learns (not --out, threads, workers, cache...), where
    they differ from today's defaults: ``python -m staa_serve.models.synthetic.train --out DIR`` plus these repeats it."""
    parser, flags = build_parser(), []
    for action in parser._actions:
        name = action.dest
        if name in ("help", "out", "threads", "workers", "device", "cache", "render_only", "evaluate_every"):
            continue
        value, default = arguments.get(name, action.default), action.default
        if name == "stages":
            value = "all" if not isinstance(value, str) else value  # logged as the stage list itself
        if isinstance(value, list):  # nargs options come back from JSON as lists
            value = tuple(value)
        if value != default:
            shown = " ".join(f"{item:g}" for item in value) if isinstance(value, tuple) else value
            flags.append(action.option_strings[0] if isinstance(action, argparse._StoreTrueAction)
                         else f"{action.option_strings[0]} {shown}")
    return flags


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    settings = ProcessorSettings.from_dict(processor_config_for(args.image_size))
    args.final_difficulty = tuple(args.final_difficulty)
    stages = curriculum(args.scale, args.final_steps, args.final_clips, args.final_difficulty)
    start, built = 0, []
    chosen = [stage for stage in stages if args.stages == "all" or stage.name in args.stages.split(",")]

    def rendered(name: str, seed_list: list[int], **options) -> WindowSet:
        """Render these windows, or read them from --cache, where a run with the same seeds left them.

        The file name carries the difficulty range, the one stage option a flag can change (the others
        are fixed by the stage's name)."""
        low, high = options["difficulty"]
        path = (args.cache / f"{name}-{seed_list[0]}-{len(seed_list)}-{args.image_size}px-d{low:g}-{high:g}.npz"
                if args.cache else None)
        if path is not None and path.exists():
            progress.update(len(seed_list))
            return WindowSet.load(path)
        windows = build_windows(seed_list, num_frames=FRAMES, stride=STRIDE, settings=settings, workers=args.workers,
                                progress=progress, **options)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            windows.save(path)
        return windows

    with tqdm(total=sum(stage.clips for stage in chosen) + args.validation_clips, desc="render windows") as progress:
        for stage in stages:
            if stage in chosen:  # a skipped stage still uses its seed range, so seeds stay aligned
                windows = rendered(stage.name, seeds(TRAIN_SEED, stage.clips, start=start), difficulty=stage.difficulty,
                                   action_length=stage.action_length, placement=stage.placement, palette=stage.palette)
                built.append((windows.to(args.device), stage.steps))
            start += stage.clips
        validation = rendered("validation", seeds(VALIDATION_SEED, args.validation_clips),
                              difficulty=(0.0, 1.0)).to(args.device)
    if args.render_only:
        return
    if args.init is not None:
        model = TimesformerForVideoClassification.from_pretrained(args.init, local_files_only=True, use_safetensors=True)
    else:
        model = TimesformerForVideoClassification(model_config(args.hidden, args.layers, args.heads, args.mlp_ratio,
                                                                       args.dropout, args.image_size, args.patch))
    if model.config.image_size != args.image_size:
        raise SystemExit(f"--image-size {args.image_size} but the model takes {model.config.image_size}")
    model.to(args.device)
    soft_targets = None
    if args.distil_from:
        teachers = [TimesformerForVideoClassification.from_pretrained(path, local_files_only=True,
                                                                      use_safetensors=True).to(args.device)
                    for path in args.distil_from.split(",")]
        with tqdm(total=sum(len(windows) for windows, _ in built), desc="teacher logits") as progress:
            soft_targets = [ensemble_logits(teachers, windows, settings, progress=progress) for windows, _ in built]
        for name, teacher in zip(args.distil_from.split(","), teachers):
            tqdm.write(json.dumps({"teacher": name, "val_accuracy": round(accuracy(teacher, validation, settings), 4)}))
        del teachers
    arguments = vars(args) | {"out": str(args.out), "init": str(args.init) if args.init else None,
                              "cache": str(args.cache) if args.cache else None,
                              "stages": [asdict(stage) for stage in chosen]}
    model, history = train(model, built, validation, settings, args.lr, args.warmup, args.batch, args.evaluate_every,
                           log=lambda line: tqdm.write(line), compile=args.compile, ema_decay=args.ema,
                           augment=args.augment, label_smoothing=args.label_smoothing, soft_targets=soft_targets,
                           distil_weight=args.distil_weight, temperature=args.temperature,
                           checkpoint=lambda model, history: save(model, args.out, history, arguments))
    save(model, args.out, history, arguments)
    print(f"saved {args.out}; final validation accuracy {history[-1]['val_accuracy']:.3f}")


if __name__ == "__main__":
    main()

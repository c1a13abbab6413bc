"""SynthKinetics: procedurally generated human-action clips with ground truth for where and when.

An articulated stick figure performs one of ``ACTIONS`` inside a sub-interval of the clip and
stands idle outside it, over textured backgrounds with moving distractors, camera jitter and
lighting drift. Everything except the motion is drawn independently of the class, so only the
motion tells which action it is. Deterministic from a seed.

    python -m staa_serve.models.synthetic generate --seed S --count N --out DIR
"""

from staa_serve.models.synthetic.actions import ACTIONS
from staa_serve.models.synthetic.generate import ClipSpec, SyntheticClip, render_clip, sample_clip_spec

__all__ = ["ACTIONS", "ClipSpec", "SyntheticClip", "render_clip", "sample_clip_spec"]

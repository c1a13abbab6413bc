"""How a heatmap is drawn on a frame: one colormap and one blending rule for every renderer.

The uint8 grid (patch resolution) is upsampled bilinearly to the crop box it covers in the
source frame, coloured with a colormap (``COLORMAPS``; ``jet`` by default) and blended with
per-pixel opacity ``alpha * value / 255``, so cold cells leave the frame untouched. The browser
viewer (clients/viewer) receives these very lookup tables and applies the same rule. Below the frame a strip
shows the window's frame importance, the current frame highlighted.
"""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np

COLORMAPS = {"jet": cv2.COLORMAP_JET, "inferno": cv2.COLORMAP_INFERNO, "viridis": cv2.COLORMAP_VIRIDIS,
             "turbo": cv2.COLORMAP_TURBO}
DEFAULT_COLORMAP = "jet"
DEFAULT_ALPHA = 0.6
STRIP_HEIGHT = 28


def colormap_lut(name: str = DEFAULT_COLORMAP) -> np.ndarray:
    """RGB uint8 ``[256, 3]``: the colour of each heat value (exported for other renderers)."""
    bgr = cv2.applyColorMap(np.arange(256, dtype=np.uint8).reshape(256, 1), COLORMAPS[name])  # [256, 1, 3]
    return bgr[:, 0, ::-1].copy()


def blend_pixels(region: np.ndarray, heat: np.ndarray, alpha: float, colormap: str = DEFAULT_COLORMAP) -> np.ndarray:
    """The blending rule: RGB uint8 ``[..., 3]`` + heat uint8 ``[...]`` -> RGB uint8 (viewer.js mirrors it)."""
    colour = colormap_lut(colormap)[heat].astype(np.float32)
    opacity = (alpha * heat.astype(np.float32) / 255.0)[..., None]
    return np.clip(region.astype(np.float32) * (1 - opacity) + colour * opacity, 0, 255).astype(np.uint8)


def blend_heatmap(frame: np.ndarray, grid: np.ndarray, crop: list[float], alpha: float = DEFAULT_ALPHA,
                  colormap: str = DEFAULT_COLORMAP) -> np.ndarray:
    """Frame RGB uint8 ``[H, W, 3]`` + grid uint8 ``[h, w]`` covering ``crop`` -> blended ``[H, W, 3]``."""
    x0, y0, x1, y1 = (int(round(value)) for value in crop)
    height, width = frame.shape[:2]
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
    heat = cv2.resize(grid, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)  # [h, w] -> [y1-y0, x1-x0]
    out = frame.copy()
    out[y0:y1, x0:x1] = blend_pixels(out[y0:y1, x0:x1], heat, alpha, colormap)
    cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), (255, 255, 255), 1)
    return out


def importance_strip(temporal: list[float], current: int, width: int) -> np.ndarray:
    """RGB uint8 ``[STRIP_HEIGHT, width, 3]``: one bar per frame, height ~ importance."""
    strip = np.full((STRIP_HEIGHT, width, 3), 24, np.uint8)
    peak = max(max(temporal), 1e-9)
    slot = width / len(temporal)
    for index, value in enumerate(temporal):
        bar = int(round((STRIP_HEIGHT - 4) * value / peak))
        colour = (255, 200, 0) if index == current else (120, 160, 255)
        left, right = int(index * slot) + 1, int((index + 1) * slot) - 1
        cv2.rectangle(strip, (left, STRIP_HEIGHT - 2 - bar), (right, STRIP_HEIGHT - 2), colour, -1)
    return strip


def render_window(frames: list[np.ndarray], window: dict, alpha: float = DEFAULT_ALPHA) -> list[np.ndarray]:
    """The T overlay images of one window (a dict in the explanations.json schema)."""
    grids = np.asarray(window["spatial"], np.uint8)  # [T, h, w]
    top = window["topk"][0]
    images = []
    for step, (frame, grid) in enumerate(zip(frames, grids)):
        image = blend_heatmap(frame, grid, window["crop"], alpha)
        caption = f"w{window['index']} f{window['frames'][step]}  {top['label']} {top['prob']:.2f}"
        (text_w, text_h), _ = cv2.getTextSize(caption, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
        cv2.rectangle(image, (0, 0), (text_w + 8, text_h + 8), (0, 0, 0), -1)
        cv2.putText(image, caption, (4, text_h + 3), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        images.append(np.vstack([image, importance_strip(window["temporal"], step, image.shape[1])]))
    return images


def write_overlay_video(path: str | Path, frames_by_index: dict[int, np.ndarray], windows: list[dict],
                        fps: float = 8.0) -> int:
    """Write every window's overlay frames to ``path`` (H.264 where available); returns frames written."""
    images = [image for window in windows
              for image in render_window([frames_by_index[index] for index in window["frames"]], window)]
    if not images:
        return 0
    height, width = images[0].shape[:2]
    even_h, even_w = height + height % 2, width + width % 2  # yuv420p needs even sizes
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=int(round(fps)))
        stream.width, stream.height, stream.pix_fmt = even_w, even_h, "yuv420p"
        for image in images:
            padded = np.zeros((even_h, even_w, 3), np.uint8)
            padded[:height, :width] = image
            for packet in stream.encode(av.VideoFrame.from_ndarray(padded, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return len(images)

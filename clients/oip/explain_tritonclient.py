"""STAA Serve through the Open Inference Protocol with NVIDIA's own client (tritonclient[grpc]), in its
own environment: tritonclient pins protobuf < 7, STAA Serve's stub generator needs protobuf >= 7.35.

    python explain_tritonclient.py --server 127.0.0.1:50051 --clip clip.mp4 [--model staa-synthkinetics]

Prints one JSON document: live, ready, the model's metadata, and per window its heatmaps (base64 of
the UINT8 [T, h, w] grid), top class and source frames.
"""

import argparse
import base64
import json
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient

MESSAGE_BYTES = 64 * 1024 * 1024  # the server's transport limit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", required=True)
    parser.add_argument("--clip", type=Path, required=True)
    parser.add_argument("--model", default="staa-synthkinetics")
    args = parser.parse_args()
    options = [("grpc.max_send_message_length", MESSAGE_BYTES), ("grpc.max_receive_message_length", MESSAGE_BYTES)]
    client = grpcclient.InferenceServerClient(args.server, channel_args=options)
    metadata = client.get_model_metadata(args.model, as_json=True)
    video = grpcclient.InferInput("VIDEO", [1], "BYTES")
    video.set_data_from_numpy(np.array([args.clip.read_bytes()], dtype=np.object_))
    outputs = [grpcclient.InferRequestedOutput(name) for name in ("HEATMAPS", "TOPK_IDS", "SOURCE_FRAMES", "ALIGNED_TO_END")]
    result = client.infer(args.model, [video], outputs=outputs, parameters={"top_k": 3})
    heatmaps = result.as_numpy("HEATMAPS")  # [W, T, h, w] uint8
    print(json.dumps({
        "live": client.is_server_live(), "ready": client.is_server_ready(), "model_ready": client.is_model_ready(args.model),
        "metadata": {"name": metadata["name"], "inputs": [tensor["name"] for tensor in metadata["inputs"]],
                     "outputs": [tensor["name"] for tensor in metadata["outputs"]]},
        "heatmaps_shape": list(heatmaps.shape),
        "windows": [{"heatmaps": base64.b64encode(window.tobytes()).decode(), "top": int(top[0]),
                     "source_frames": frames.tolist(), "aligned_to_end": bool(aligned)}
                    for window, top, frames, aligned in zip(heatmaps, result.as_numpy("TOPK_IDS"),
                                                            result.as_numpy("SOURCE_FRAMES"), result.as_numpy("ALIGNED_TO_END"))],
    }))
    client.close()


if __name__ == "__main__":
    main()

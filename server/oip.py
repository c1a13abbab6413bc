"""The Open Inference Protocol (OIP v2, ``inference.GRPCInferenceService``) on the server's own port.

Any OIP client (tritonclient, perf_analyzer, KServe's tooling) can explain a clip without the
staa.v1 contract. The servicer is thin: ``ModelInfer`` turns its tensors and parameters into one
``staa.v1.ClipRequest`` and runs it through ExplainClip's path (``VideoExplainerServicer.admitted_clip``),
so admission, the memory reservation before the body is read, limits, budgets and errors are exactly
ExplainClip's; the windows come back as tensors (``explanation_tensors``). Requests are registered
like staa.v1's (server/wire.py): protobuf that does not parse is INVALID_ARGUMENT. Robustness and
streaming stay staa.v1-only.

Models: every served model, by its served name or model id (server/model_set.py); ``staa`` or an empty
name is the default model. Each takes and gives:
  inputs, exactly one:  VIDEO   BYTES [1]            one encoded clip (mp4 / mkv / avi / webm / mov)
                        FRAMES  UINT8 [F, H, W, 3]   raw RGB frames (parameter ``fps``, default 30)
  parameters (request): stride, hop, top_k, target_class (int64); kappa, gamma (double);
                        method ("staa", "staa_class"), decoder ("pyav", "decord") (string)
  outputs, per window W of T frames on the h x w patch grid:
    HEATMAPS UINT8 [W, T, h, w]   TEMPORAL FP32 [W, T]   TOPK_IDS INT32 [W, k]   TOPK_PROBS FP32 [W, k]
    CROP FP32 [W, 4] (x0, y0, x1, y1 in source pixels)   SOURCE_FRAMES INT32 [W, T]
    ALIGNED_TO_END BOOL [W] (the tail window)
"""

from __future__ import annotations

import asyncio
import math
import struct

import grpc
import numpy as np

from staa_serve.models.errors import InvalidInput
from staa import quoted
from staa_serve.server.config import ServerConfig
from staa_serve.server.convert import method_value
from staa_serve.server.session import check_clip_frames
from staa_serve.server.wire import add_servicer, parse_counted, parsed
from staa.oip import grpc_predict_v2_pb2 as oip
from staa.oip import grpc_predict_v2_pb2_grpc as oip_grpc
from staa.v1 import explainer_pb2 as pb

INFERENCE_SERVICE = oip.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name  # "inference.GRPCInferenceService"
VERSION = "1"
DEFAULT_ALIAS = "staa"  # an OIP model name for the default model, whatever it is
PLATFORM = "staa-serve"
INT_PARAMETERS = ("stride", "hop", "top_k", "target_class")
PARAMETERS = (*INT_PARAMETERS, "kappa", "gamma", "method", "decoder", "fps")
# datatype -> numpy dtype, for the tensors this model reads and writes
DTYPES = {"UINT8": np.uint8, "INT32": np.int32, "FP32": np.float32, "BOOL": np.bool_}


def bytes_elements(raw: bytes | memoryview) -> list[bytes | memoryview]:
    """A BYTES tensor's raw contents -> its elements (each a 4-byte little-endian length, then the bytes);
    slices of a memoryview are views, not copies."""
    elements, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise InvalidInput("BYTES tensor contents end inside an element's length prefix")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise InvalidInput(f"BYTES tensor element of {length} bytes runs past the contents ({len(raw) - offset} left)")
        elements.append(raw[offset:offset + length])
        offset += length
    return elements


# What each parameter may be: its kinds (InferParameter's oneof) and its range; the staa.v1 field it
# fills checks the rest (a stride against max_stride, a class against the model's labels).
UINT32 = (0, (1 << 32) - 1)
PARAMETER_TYPES = {name: (("int64_param", "uint64_param"), UINT32) for name in INT_PARAMETERS} | {
    name: (("double_param", "int64_param", "uint64_param"), (-1e30, 1e30)) for name in ("kappa", "gamma", "fps")} | {
    name: (("string_param",), None) for name in ("method", "decoder")}


def _parameter(name: str, value: oip.InferParameter):
    """A request parameter's value, of a kind and in a range ``PARAMETER_TYPES`` allows (InvalidInput
    naming it otherwise)."""
    kinds, bounds = PARAMETER_TYPES[name]
    kind = value.WhichOneof("parameter_choice")
    if kind not in kinds:
        raise InvalidInput(f"ModelInfer parameter {name} must be {' or '.join(kinds)}, got {kind or 'no value'}")
    given = getattr(value, kind)
    if bounds is not None and not (math.isfinite(given) and bounds[0] <= given <= bounds[1]):
        low, high = (f"{bound:g}" if isinstance(bound, float) else bound for bound in bounds)
        raise InvalidInput(f"ModelInfer parameter {name}={given} is out of range [{low}, {high}]")  # a number: short
    return given


def clip_request(request: oip.ModelInferRequest, model: str,
                 config: ServerConfig) -> tuple[pb.ClipRequest, bytes | memoryview | None]:
    """The staa.v1 ClipRequest an OIP ModelInfer request asks of served model ``model``, and for a VIDEO
    input the clip apart from it (a view into the request's bytes: every copy of a 47 MiB clip holds
    the GIL for tens of milliseconds). InvalidInput when it cannot be one. Declared sizes are checked
    against the server's limits before any element is read."""
    if len(request.inputs) != 1:
        raise InvalidInput(f"ModelInfer takes exactly one input (VIDEO or FRAMES), got {len(request.inputs)}")
    tensor = request.inputs[0]
    if len(request.raw_input_contents) > 1:
        raise InvalidInput(f"ModelInfer has {len(request.raw_input_contents)} raw_input_contents for its one input")
    raw = request.raw_input_contents[0] if request.raw_input_contents else None
    # Counted before any is read: a request may carry a million names.
    if len(request.parameters) > len(PARAMETERS):
        raise InvalidInput(f"ModelInfer has {len(request.parameters)} parameters; it knows {len(PARAMETERS)}: "
                           f"{', '.join(PARAMETERS)}")
    unknown = set(request.parameters) - set(PARAMETERS)
    if unknown:
        raise InvalidInput(f"unknown ModelInfer parameters: {', '.join(quoted(name) for name in sorted(unknown))}; "
                           f"known: {', '.join(PARAMETERS)}")
    parameters = {name: _parameter(name, value) for name, value in request.parameters.items()}
    clip = pb.ClipRequest(model=model, decoder=parameters.get("decoder", ""),
                          window=pb.WindowSpec(stride=parameters.get("stride", 0), hop=parameters.get("hop", 0)))
    staa = clip.staa
    staa.top_k = parameters.get("top_k", 0)
    if "method" in parameters:
        staa.method = method_value(parameters["method"])
    for name in ("kappa", "gamma"):
        if name in parameters:
            setattr(staa, name, float(parameters[name]))
    if "target_class" in parameters:
        staa.target_class = parameters["target_class"]
    if tensor.name == "VIDEO":
        if tensor.datatype != "BYTES" or len(tensor.shape) != 1 or tensor.shape[0] != 1:
            raise InvalidInput(f"input VIDEO must be BYTES [1] (one encoded clip), got {quoted(tensor.datatype)} "
                               f"{quoted(tensor.shape)}")
        elements = bytes_elements(memoryview(raw)) if raw is not None else list(tensor.contents.bytes_contents)
        if len(elements) != 1:
            raise InvalidInput(f"input VIDEO holds {len(elements)} elements; one clip per request")
        return clip, elements[0]
    elif tensor.name == "FRAMES":
        if tensor.datatype != "UINT8" or len(tensor.shape) != 4 or tensor.shape[3] != 3 or min(tensor.shape) < 1:
            raise InvalidInput(f"input FRAMES must be UINT8 [F, H, W, 3], got {quoted(tensor.datatype)} "
                               f"{quoted(tensor.shape)}")
        shape = list(tensor.shape)
        count, height, width = shape[:3]
        check_clip_frames(count, config, "input FRAMES")
        if width > config.max_frame_width or height > config.max_frame_height:
            raise InvalidInput(f"input FRAMES are {width}x{height}; the limit is "
                               f"{config.max_frame_width}x{config.max_frame_height}")
        needed = count * height * width * 3
        given = len(raw) if raw is not None else len(tensor.contents.uint_contents)
        if given != needed:
            raise InvalidInput(f"input FRAMES has {given} bytes, its shape {shape} needs {needed}")
        data = raw if raw is not None else _uint8_contents(tensor.contents.uint_contents)
        frame_bytes = height * width * 3
        clip.frames.fps = float(parameters.get("fps", 0.0))
        clip.frames.frames.extend(pb.Frame(rgb24=data[index * frame_bytes:(index + 1) * frame_bytes], width=width,
                                           height=height, sequence=index) for index in range(count))
    else:
        raise InvalidInput(f"unknown input {quoted(tensor.name)}: VIDEO (BYTES [1]) or FRAMES (UINT8 [F, H, W, 3])")
    return clip, None


def _uint8_contents(values) -> bytes:
    """UINT8 elements sent as ``uint_contents`` (uint32 on the wire): each must fit a byte."""
    array = np.array(values, dtype=np.uint32)
    if array.size and int(array.max()) > 255:
        raise InvalidInput(f"input FRAMES uint_contents holds {int(array.max())}; UINT8 elements are 0..255")
    return array.astype(np.uint8).tobytes()


def explanation_tensors(windows: list[pb.Explanation]) -> list[tuple[str, np.ndarray]]:
    """Explanations -> the output tensors, windows along the first axis."""
    if not windows:
        raise InvalidInput("the clip gave no window to explain")
    grid = windows[0].spatial
    return [
        ("HEATMAPS", np.stack([np.frombuffer(window.spatial.data, np.uint8).reshape(grid.frames, grid.height, grid.width)
                               for window in windows])),
        ("TEMPORAL", np.array([list(window.temporal) for window in windows], np.float32)),
        ("TOPK_IDS", np.array([[score.class_id for score in window.topk] for window in windows], np.int32)),
        ("TOPK_PROBS", np.array([[score.probability for score in window.topk] for window in windows], np.float32)),
        ("CROP", np.array([[window.crop.x0, window.crop.y0, window.crop.x1, window.crop.y1] for window in windows], np.float32)),
        ("SOURCE_FRAMES", np.array([list(window.source_frames) for window in windows], np.int32)),
        ("ALIGNED_TO_END", np.array([window.aligned_to_end for window in windows], np.bool_)),
    ]


DATATYPE_OF = {np.dtype(dtype): name for name, dtype in DTYPES.items()}
OUTPUTS = [("HEATMAPS", "UINT8", [-1, -1, -1, -1]), ("TEMPORAL", "FP32", [-1, -1]), ("TOPK_IDS", "INT32", [-1, -1]),
           ("TOPK_PROBS", "FP32", [-1, -1]), ("CROP", "FP32", [-1, 4]), ("SOURCE_FRAMES", "INT32", [-1, -1]),
           ("ALIGNED_TO_END", "BOOL", [-1])]


class InferenceServicer(oip_grpc.GRPCInferenceServiceServicer):
    """OIP v2 over the staa.v1 servicer (``explainer``: server.servicer.VideoExplainerServicer)."""

    def __init__(self, explainer, version: str):
        self.explainer, self.version = explainer, version

    def _model(self, name: str) -> str:
        """The served name an OIP model name selects (``staa`` is the default model's alias);
        UNAVAILABLE while loading or draining, NOT_FOUND for a model not served here."""
        self.explainer._ready()
        return self.explainer.models.resolve("" if name == DEFAULT_ALIAS else name)[0]

    # Every request arrives through server/wire.py's lenient parser: one that is not valid protobuf
    # is INVALID_ARGUMENT (``parsed``), as in staa.v1.
    async def ServerLive(self, request, context):
        return await self._answer(context, request, lambda: oip.ServerLiveResponse(live=True))

    async def ServerReady(self, request, context):
        return await self._answer(context, request, lambda: oip.ServerReadyResponse(
            ready=self.explainer.loaded_all and not self.explainer.draining.is_set()))

    async def ModelReady(self, request, context):
        def ready() -> bool:
            try:
                self._model(request.name)
            except Exception:  # loading, draining or not served: not ready
                return False
            return True

        return await self._answer(context, request, lambda: oip.ModelReadyResponse(ready=ready()))

    async def ServerMetadata(self, request, context):
        return await self._answer(context, request, lambda: oip.ServerMetadataResponse(
            name="staa-serve", version=self.version, extensions=[]))

    async def ModelMetadata(self, request, context):
        def metadata() -> oip.ModelMetadataResponse:
            model = self._model(request.name)
            tensor = oip.ModelMetadataResponse.TensorMetadata
            return oip.ModelMetadataResponse(
                name=model, versions=[VERSION], platform=PLATFORM,
                inputs=[tensor(name="VIDEO", datatype="BYTES", shape=[1]),
                        tensor(name="FRAMES", datatype="UINT8", shape=[-1, -1, -1, 3])],
                outputs=[tensor(name=name, datatype=datatype, shape=shape) for name, datatype, shape in OUTPUTS])

        return await self._answer(context, request, metadata)

    async def _answer(self, context, request, reply):
        """``reply()`` for a request that parsed; the status of whatever it raised otherwise."""
        try:
            parsed(request)
            return reply()
        except Exception as error:
            await self.explainer._abort(context, error)

    async def ModelInfer(self, requests, context):
        """Registered request-streaming like ExplainClip (server/wire.py): the request is read inside
        ExplainClip's admission and memory reservation, then made into its ClipRequest off the loop."""
        asked = {}  # the request's id and the outputs it names, for the response

        async def read() -> tuple[pb.ClipRequest, int, bytes | memoryview | None]:
            data = await self.explainer.only_request(aiter(requests), "ModelInfer", "ModelInferRequest")
            size = len(data)
            request = await asyncio.to_thread(parse_counted, data, oip.ModelInferRequest, {})
            del data
            model = self._model(request.model_name)
            asked.update(model=model, id=request.id, outputs={output.name for output in request.outputs})
            return *await asyncio.to_thread(clip_request, request, model, self.explainer.config), size

        windows = [response.explanation async for response in self.explainer.admitted_clip(context, read)
                   if response.WhichOneof("event") == "explanation"]
        try:
            tensors = explanation_tensors(windows)
        except InvalidInput as error:
            await self.explainer._abort(context, error)
        response = oip.ModelInferResponse(model_name=asked["model"], model_version=VERSION, id=asked["id"])
        for name, values in tensors:
            if asked["outputs"] and name not in asked["outputs"]:
                continue
            response.outputs.add(name=name, datatype=DATATYPE_OF[values.dtype], shape=list(values.shape))
            response.raw_output_contents.append(np.ascontiguousarray(values).tobytes())
        return response


def add_inference_service(explainer, server: grpc.aio.Server, version: str) -> None:
    add_servicer(InferenceServicer(explainer, version), server, oip.DESCRIPTOR.services_by_name["GRPCInferenceService"], oip)

"""OIP (inference.GRPCInferenceService) under hostile input on a real server on 127.0.0.1: every
parameter and datatype checked by kind and range, protobuf that does not parse, and a seeded fuzz.
Each gets a clear client status (never INTERNAL or UNKNOWN) and no traceback in the server's log."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest

from staa_serve.server.app import BackgroundServer
from staa.oip import grpc_predict_v2_pb2 as oip
from staa.oip import grpc_predict_v2_pb2_grpc as oip_grpc
from tests.conftest import clip_path, served_config

CLIENT_CODES = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                grpc.StatusCode.RESOURCE_EXHAUSTED}
FUZZ_CASES = 600
INFER = "/inference.GRPCInferenceService/ModelInfer"


@pytest.fixture(scope="module")
def oip_server(tiny_model_dir):
    config = served_config(port=0, model=str(tiny_model_dir), max_clip_bytes=1 << 20, max_message_bytes=2 << 20,
                           max_frame_width=512, max_frame_height=512, max_clip_frames=300, max_clip_requests=16)
    with BackgroundServer(config) as running:
        yield running


@pytest.fixture()
def channel(oip_server):
    with grpc.insecure_channel(oip_server.target) as opened:
        yield opened


def frames_request(**parameters) -> oip.ModelInferRequest:
    request = oip.ModelInferRequest(model_name="staa")
    request.inputs.add(name="FRAMES", datatype="UINT8", shape=[4, 8, 8, 3])
    request.raw_input_contents.append(bytes(4 * 8 * 8 * 3))
    for name, (kind, value) in parameters.items():
        setattr(request.parameters[name], kind, value)
    return request


def status(call, request) -> tuple[grpc.StatusCode, str]:
    try:
        call(request, timeout=60)
        return grpc.StatusCode.OK, ""
    except grpc.RpcError as error:
        return error.code(), error.details() or ""


def server_errors(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]


def uint_contents(value: int) -> oip.ModelInferRequest:
    request = frames_request()
    del request.raw_input_contents[:]
    request.inputs[0].contents.uint_contents.extend([value] * (4 * 8 * 8 * 3))
    return request


@pytest.mark.parametrize("request_, message", [
    (uint_contents(300), "uint_contents holds 300; UINT8 elements are 0..255"),
    (frames_request(stride=("string_param", "4")), "parameter stride must be int64_param or uint64_param, got string_param"),
    (frames_request(fps=("string_param", "25")), "parameter fps must be double_param"),
    (frames_request(hop=("double_param", 1e30)), "parameter hop must be int64_param or uint64_param, got double_param"),
    (frames_request(top_k=("int64_param", 2 ** 62)), "parameter top_k=4611686018427387904 is out of range"),
    (frames_request(target_class=("int64_param", -1)), "parameter target_class=-1 is out of range"),
    (frames_request(kappa=("double_param", float("nan"))), "parameter kappa=nan is out of range"),
    (frames_request(gamma=("bool_param", True)), "parameter gamma must be double_param"),
    (frames_request(method=("int64_param", 1)), "parameter method must be string_param"),
    (frames_request(fps=("double_param", 1e9)), "RawFrames.fps must be a number in [0, 1000]"),
    (frames_request(stride=("int64_param", 10 ** 6)), "stride"),
])
def test_each_parameter_is_checked_by_kind_and_range(channel, caplog, request_, message):
    code, details = status(oip_grpc.GRPCInferenceServiceStub(channel).ModelInfer, request_)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and message in details, details
    assert server_errors(caplog) == []


@pytest.mark.parametrize("method", ["ModelInfer", "ModelMetadata", "ModelReady", "ServerLive", "ServerReady",
                                    "ServerMetadata"])
def test_protobuf_that_does_not_parse_is_invalid_argument(channel, caplog, method):
    raw = channel.unary_unary(f"/inference.GRPCInferenceService/{method}", request_serializer=None,
                              response_deserializer=None)
    code, details = status(raw, b"\x0a\xff\xff\xff\xff\x0f")  # a length running far past the end
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "not a valid inference." in details, (code, details)
    assert server_errors(caplog) == []


def test_good_requests_still_pass_the_checks(channel):
    request = frames_request(stride=("uint64_param", 2), top_k=("int64_param", 3), fps=("int64_param", 25),
                             kappa=("double_param", 1.0), method=("string_param", "staa"))
    reply = oip_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=60)
    assert [output.name for output in reply.outputs][:1] == ["HEATMAPS"]
    assert len(np.frombuffer(reply.raw_output_contents[3], np.float32)) == 3  # TOPK_PROBS, k = 3


class OipFuzzer:
    """Seeded ModelInfer requests, absurd in every field, and bytes that claim to be one."""

    KINDS = ("bool_param", "int64_param", "string_param", "double_param", "uint64_param")
    NAMES = ("stride", "hop", "top_k", "target_class", "kappa", "gamma", "method", "decoder", "fps", "colour", "")

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.video = clip_path("edge/unordered.mov").read_bytes()

    def pick(self, options):
        return options[int(self.rng.integers(0, len(options)))]

    def value(self, kind: str):
        return {"bool_param": lambda: bool(self.rng.random() < 0.5),
                "int64_param": lambda: int(self.pick([0, 1, 3, -1, 255, 2 ** 31, 2 ** 62, -(2 ** 63)])),
                "uint64_param": lambda: int(self.pick([0, 1, 4, 2 ** 32, 2 ** 64 - 1])),
                "double_param": lambda: float(self.pick([0.0, 0.5, 1.0, -1.0, 25.0, 1e30, float("nan"), float("inf")])),
                "string_param": lambda: str(self.pick(["", "staa", "staa_class", "pyav", "decord", "x" * 5000, "\n"]))}[kind]()

    def tensor(self, request: oip.ModelInferRequest) -> None:
        name = self.pick(["VIDEO", "FRAMES", "FRAMES", "AUDIO", ""])
        datatype = self.pick(["BYTES", "UINT8", "FP32", "INT64", ""])
        shape = self.pick([[1], [4, 8, 8, 3], [2, 8, 8, 3], [-1, 8, 8, 3], [0], [1, 1], [10 ** 9, 8, 8, 3],
                           [4, 8, 8, 4], [1] * 64])
        tensor = request.inputs.add(name=name, datatype=datatype, shape=shape)
        choice = self.rng.integers(0, 5)
        if choice == 0:
            request.raw_input_contents.append(len(self.video).to_bytes(4, "little") + self.video)
        elif choice == 1:
            request.raw_input_contents.append(self.rng.integers(0, 256, int(self.rng.integers(0, 2000)), np.uint8).tobytes())
        elif choice == 2:
            tensor.contents.uint_contents.extend(self.rng.integers(0, 300, 4 * 8 * 8 * 3).tolist())
        elif choice == 3:
            tensor.contents.bytes_contents.append(self.video[: int(self.rng.integers(0, len(self.video)))])
        else:
            request.raw_input_contents.append(bytes(4 * 8 * 8 * 3))

    def case(self) -> oip.ModelInferRequest | bytes:
        if self.rng.random() < 0.1:
            return self.rng.integers(0, 256, int(self.rng.integers(1, 300)), np.uint8).tobytes()
        request = oip.ModelInferRequest(model_name=self.pick(["", "staa", "tiny", "resnet"]))
        for _ in range(int(self.pick([1, 1, 1, 0, 2]))):
            self.tensor(request)
        for _ in range(int(self.rng.integers(0, 4))):
            kind = self.pick(self.KINDS)
            setattr(request.parameters[self.pick(self.NAMES)], kind, self.value(kind))
        return request


def test_a_seeded_fuzz_over_oip_gets_client_statuses_only_and_the_server_keeps_serving(oip_server, caplog):
    fuzzer = OipFuzzer(seed=20261208)
    cases = [fuzzer.case() for _ in range(FUZZ_CASES)]
    with grpc.insecure_channel(oip_server.target) as channel:
        raw = channel.unary_unary(INFER, request_serializer=None, response_deserializer=None)
        send = lambda case: status(raw, case if isinstance(case, bytes) else case.SerializeToString())  # noqa: E731
        with ThreadPoolExecutor(4) as pool:
            outcomes = list(pool.map(send, cases))
        codes = {}
        for code, details in outcomes:
            codes[code.name] = codes.get(code.name, 0) + 1
            assert code in CLIENT_CODES, (code, details)
            assert code == grpc.StatusCode.OK or (details and "internal error" not in details), (code, details)
            assert len(details.encode()) < 4096
        print("OIP fuzz outcomes:", codes)
        assert codes.get("INVALID_ARGUMENT", 0) > FUZZ_CASES // 2
        assert server_errors(caplog) == []
        code, _ = status(oip_grpc.GRPCInferenceServiceStub(channel).ModelInfer, frames_request())
        assert code == grpc.StatusCode.OK

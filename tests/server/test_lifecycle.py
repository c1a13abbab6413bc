"""Server lifecycle: NOT_SERVING until warm, any model directory served through the same path."""

import asyncio

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from staa_serve.server.app import BackgroundServer, load_and_warm, start_server
from staa_serve.server.config import ServerConfig
from staa.v1 import explainer_pb2 as pb
from staa.v1 import explainer_pb2_grpc as pb_grpc
from tests.conftest import REPO, clip_path, served_config


def test_health_is_not_serving_until_the_model_is_warm():
    async def scenario():
        config = served_config(port=0)
        running = await start_server(config)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
                health = health_pb2_grpc.HealthStub(channel)
                before = await health.Check(health_pb2.HealthCheckRequest(service=""))
                with pytest.raises(grpc.aio.AioRpcError) as early:
                    await pb_grpc.VideoExplainerStub(channel).GetModelInfo(pb.ModelInfoRequest())
                await load_and_warm(running, config)
                after = await health.Check(health_pb2.HealthCheckRequest(service=""))
            return before.status, early.value, after.status
        finally:
            await running.stop(grace=0)

    before, early, after = asyncio.run(scenario())
    assert before == health_pb2.HealthCheckResponse.NOT_SERVING
    assert early.code() == grpc.StatusCode.UNAVAILABLE and "still loading" in early.details()
    assert after == health_pb2.HealthCheckResponse.SERVING


def test_a_tiny_random_model_directory_is_served_with_its_own_geometry(tiny_model_dir):
    from staa_serve.clients.client import ExplainerClient

    with BackgroundServer(served_config(port=0, model=str(tiny_model_dir))) as running:
        with ExplainerClient(running.target) as client:
            info = client.model_info()
            assert (info.num_frames, info.grid_height, info.grid_width, len(info.labels)) == (4, 4, 4, 5)
            windows = list(client.explain_clip(clip_path("ucf101_apply_eye_makeup.avi")))
    span = 3 * 4 + 1  # 4 frames at the default stride 4
    assert len(windows) == (164 - span) // span + 1 + 1  # and the tail window: 164 is not on the grid
    assert windows[0].spatial.frames == 4 and len(windows[0].spatial.data) == 4 * 4 * 4


def test_server_config_rejects_bad_values_by_name():
    with pytest.raises(ValueError, match=r"ServerConfig.max_streams must be in \[1, 10000\], got 0"):
        ServerConfig(max_streams=0)
    with pytest.raises(ValueError, match="max_clip_bytes=.* must be below max_message_bytes"):
        ServerConfig(max_clip_bytes=1 << 20, max_message_bytes=1 << 20)
    assert ServerConfig(max_batch=64).max_batch == 64
    with pytest.raises(ValueError, match=r"ServerConfig.max_batch must be in \[1, 64\], got 65"):
        ServerConfig(max_batch=65)


@pytest.mark.parametrize("setting, value", [("stream_idle_seconds", "nan"), ("max_batch_wait_ms", "inf"),
                                            ("grace", "nan"), ("grace", "-inf"), ("max_message_bytes", "3000000000"),
                                            ("max_batch_wait_ms", "1e309"), ("stream_idle_seconds", "0")])
def test_every_number_is_finite_and_in_range_from_a_flag_the_environment_or_a_file(setting, value, monkeypatch,
                                                                                      tmp_path, capsys):
    from staa_serve.server.app import parse_args

    field = {"grace": "grace_seconds"}.get(setting, setting)
    flag = setting.replace("_", "-")
    path = tmp_path / "staa.toml"
    path.write_text(f"{flag} = {value if value[-1].isdigit() else repr(value)}\n")
    for argv, environment in (([f"--{flag}={value}"], {}), ([], {f"STAA_{setting.upper()}": value}),
                              (["--config", str(path)], {})):
        for name, text in environment.items():
            monkeypatch.setenv(name, text)
        with pytest.raises(SystemExit):
            parse_args(argv)
        error = capsys.readouterr().err
        assert f"ServerConfig.{field} must be" in error and "Traceback" not in error, (argv, environment, error)
        for name in environment:
            monkeypatch.delenv(name)


def test_every_number_the_config_takes_has_a_documented_range():
    from dataclasses import fields

    from staa_serve.server.config import RANGES

    numbers = {item.name for item in fields(ServerConfig) if item.type.removesuffix(" | None") in ("int", "float")}
    assert numbers == set(RANGES)
    readme = (REPO / "README.md").read_text()
    assert all(f"`{name}`" in readme for name in RANGES), [name for name in RANGES if f"`{name}`" not in readme]


@pytest.mark.parametrize("flag", ["--host", "--port", "--metrics-port"])
def test_a_setting_that_cannot_bind_ends_the_server_with_one_line_naming_it(flag):
    import socket
    import subprocess
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = str(taken.getsockname()[1])
        flags = {"--host": ["--port", "0", "--host", "256.1.1.1"], "--port": ["--port", busy],
                 "--metrics-port": ["--port", "0", "--metrics-port", busy]}[flag]
        done = subprocess.run([sys.executable, "-m", "staa_serve.server.app", *flags], cwd=REPO,
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    # Ours is the last line (gRPC's own log may say what it tried before it).
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("staa-serve: error:") and flag in line


def test_binds_loopback_by_default():
    assert ServerConfig().host == "127.0.0.1"


def test_every_server_flag_reads_a_staa_environment_variable_and_the_flag_wins(monkeypatch):
    from staa_serve.server.app import parse_args

    monkeypatch.setenv("STAA_MAX_BATCH", "16")
    monkeypatch.setenv("STAA_ALLOW_DECORD", "true")
    monkeypatch.setenv("STAA_MAX_BATCH_WAIT_MS", "5.5")
    config = parse_args([])
    assert (config.max_batch, config.allow_decord, config.max_batch_wait_ms) == (16, True, 5.5)
    assert parse_args(["--max-batch", "4"]).max_batch == 4  # the command line wins
    monkeypatch.setenv("STAA_DTYPE", "int3")
    with pytest.raises(SystemExit):
        parse_args([])


def test_a_config_file_sets_every_flag_under_the_environment_and_the_command_line(monkeypatch, tmp_path, capsys):
    from staa_serve.server.app import parse_args
    from staa_serve.server.model_set import ModelSpec

    path = tmp_path / "staa.toml"
    path.write_text('max-batch = 16\nmax_batch_wait_ms = 5\nallow-decord = true\nlog-level = "debug"\n'
                    'model = ["default", "tiny=/models/tiny"]\n')
    config = parse_args(["--config", str(path)])
    assert (config.max_batch, config.max_batch_wait_ms, config.allow_decord, config.log_level) == (16, 5.0, True, "DEBUG")
    assert config.model_specs() == [ModelSpec("default"), ModelSpec("/models/tiny", "tiny")]
    monkeypatch.setenv("STAA_CONFIG", str(path))  # the file named by the environment
    monkeypatch.setenv("STAA_MAX_BATCH", "12")  # the environment over the file
    assert parse_args([]).max_batch == 12 and parse_args([]).allow_decord
    assert parse_args(["--max-batch", "4", "--model", "x"]).model_specs() == [ModelSpec("x")]  # the command line over both
    assert parse_args(["--max-batch", "4"]).max_batch == 4
    monkeypatch.delenv("STAA_CONFIG")
    for text, message in (("max-batsh = 3\n", "unknown setting 'max-batsh'"),
                          ("max-batch = \"many\"\n", "max-batch='many' is not a valid --max-batch value"),
                          ("allow-decord = 2\n", "allow-decord=2 is not a boolean"),
                          ("dtype = \"int3\"\n", "dtype='int3' is not one of"),
                          ("max-batch = [", "--config")):
        path.write_text(text)
        with pytest.raises(SystemExit):
            parse_args(["--config", str(path)])
        assert message in capsys.readouterr().err


@pytest.mark.parametrize("command", ["staa-serve", "staa-client", "staa-viewer", "staa-bench"])
def test_every_command_prints_its_version(command):
    import subprocess
    import sys
    from pathlib import Path

    from staa import package_version

    run = subprocess.run([str(Path(sys.executable).parent / command), "--version"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == f"{command} {package_version()}", (run.stdout, run.stderr)

"""The viewer serves its own page only: a WebSocket from a foreign origin or to a foreign Host (DNS
rebinding) is refused before any frame is sent; bad messages and an unreachable server end cleanly."""

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import clip_path, served_config, wait_for

BIN = Path(sys.executable).parent


def start_viewer(server_target: str, *extra: str, log=None) -> tuple[subprocess.Popen, str]:
    """``log``: a file its stderr (the viewer's log) goes to."""
    process = subprocess.Popen([str(BIN / "staa-viewer"), str(clip_path("flipping_pancake.mkv")), "--server",
                                server_target, "--port", "0", *extra], stdout=subprocess.PIPE, stderr=log, text=True)
    line = process.stdout.readline()
    assert "viewer on http://127.0.0.1:" in line, line
    return process, line.split("viewer on ")[1].split()[0]


@pytest.fixture(scope="module")
def viewer(server):
    process, url = start_viewer(server.target, "--allow-origin", "https://dash.example")
    yield url
    process.terminate()
    process.wait(timeout=30)


async def websocket(url: str, origin: str | None, host: str | None = None, query: str = ""):
    """(HTTP status, first message or None) of a WebSocket opened to ``url`` with these headers."""
    address = url.rstrip("/").replace("http://", "")
    headers = {key: value for key, value in (("Origin", origin), ("Host", host)) if value is not None}
    async with aiohttp.ClientSession() as session:
        try:
            async with session.ws_connect(f"ws://{address}/ws{query}", headers=headers) as socket:
                message = await socket.receive(timeout=30)
                return 101, json.loads(message.data)
        except aiohttp.WSServerHandshakeError as error:
            return error.status, None


def test_the_viewers_own_page_gets_the_websocket(viewer):
    status, hello = asyncio.run(websocket(viewer, viewer.rstrip("/")))
    assert status == 101 and hello["type"] == "hello"


@pytest.mark.parametrize("origin,host", [
    ("http://evil.example", None),  # a page on another site
    (None, None),  # no Origin at all (not a browser page of ours)
    ("http://evil.example", "evil.example:80"),  # DNS rebinding: the foreign name resolves to 127.0.0.1
])
def test_a_foreign_origin_or_host_is_refused_before_anything_is_sent(viewer, origin, host):
    status, message = asyncio.run(websocket(viewer, origin, host))
    assert (status, message) == (403, None)


def test_a_foreign_host_cannot_load_the_page_either(viewer):
    async def fetch():
        async with aiohttp.ClientSession() as session:
            async with session.get(viewer, headers={"Host": "evil.example:80"}) as response:
                return response.status, await response.text()

    status, text = asyncio.run(fetch())
    assert status == 403 and "not this viewer's address" in text


def test_an_allowed_origin_is_accepted(viewer):
    status, hello = asyncio.run(websocket(viewer, "https://dash.example"))
    assert status == 101 and hello["type"] == "hello"


def test_a_bad_message_gets_an_error_and_the_socket_stays_open(viewer):
    async def talk():
        address = viewer.rstrip("/").replace("http://", "")
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"ws://{address}/ws", headers={"Origin": viewer.rstrip("/")}) as socket:
                await socket.send_str("{not json")
                while (message := json.loads((await socket.receive(timeout=30)).data))["type"] != "error":
                    pass
                await socket.send_str(json.dumps([1, 2]))
                while (second := json.loads((await socket.receive(timeout=30)).data))["type"] != "error":
                    pass
                return message["message"], second["message"], socket.closed

    first, second, closed = asyncio.run(talk())
    assert first.startswith("bad message ignored") and "not a JSON object" in second and not closed


def test_a_page_token_is_required_when_set(server, tmp_path):
    token_file = tmp_path / "page-token"
    token_file.write_text("s3cret\n")
    log = tmp_path / "viewer.log"
    with log.open("w") as written:
        process, url = start_viewer(server.target, "--page-token-file", str(token_file), log=written)
    try:
        assert url.endswith("/?token=s3cret")
        base = url.split("?")[0].rstrip("/")
        refused, _ = asyncio.run(websocket(base, base))
        # Not ASCII, or not UTF-8 at all: refused like any wrong token (compare_digest raised on these: 500).
        odd = [asyncio.run(websocket(base, base, query=f"?token={token}"))[0] for token in ("%C3%A9", "%FF", "s3cr%C3%A9t")]
        accepted, hello = asyncio.run(websocket(base, base, query="?token=s3cret"))
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert refused == 403 and odd == [403, 403, 403] and accepted == 101 and hello["type"] == "hello"
    assert "Traceback" not in log.read_text()


def test_a_request_cannot_forge_a_line_in_the_viewers_log(server, tmp_path):
    log = tmp_path / "viewer.log"
    with log.open("w") as written:
        process, url = start_viewer(server.target, log=written)

    async def send():
        async with aiohttp.ClientSession() as session:
            statuses = []
            for host in (None, "evil.example:80"):  # served (404, the access line) and refused (403, the warning)
                headers = {"Host": host} if host else {}
                async with session.get(f"{url.rstrip('/')}/%0A2026-01-01 staa-viewer INFO forged%0D", headers=headers) as answer:
                    statuses.append(answer.status)
            return statuses

    marked = lambda: sum("%0A2026-01-01" in line for line in log.read_text().splitlines())  # noqa: E731
    try:
        statuses = asyncio.run(send())
        # aiohttp writes a request's access line once its response is sent: the client may be first.
        wait_for(lambda: marked() >= 3)
    finally:
        process.terminate()
        process.wait(timeout=30)
    lines = log.read_text().splitlines()
    assert statuses == [404, 403]
    assert [line for line in lines if "forged" in line and not line.startswith("20")] == []
    assert [line for line in lines if line.startswith("2026-01-01")] == []
    assert sum("%0A2026-01-01" in line for line in lines) == 3, lines  # two access lines, one refusal


def test_an_unreachable_server_ends_the_viewer_with_one_line():
    result = subprocess.run([str(BIN / "staa-viewer"), str(clip_path("flipping_pancake.mkv")), "--server",
                             "127.0.0.1:1", "--port", "0"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "staa-viewer: error: cannot use STAA Serve at 127.0.0.1:1: UNAVAILABLE" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_viewer_reaches_a_server_that_needs_a_bearer_token(tmp_path):
    from staa_serve.server.app import BackgroundServer

    token_file = tmp_path / "token"
    token_file.write_text("viewer-secret\n")

    async def first_explanation(url: str) -> dict:
        address = url.rstrip("/").replace("http://", "")
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"ws://{address}/ws", headers={"Origin": url.rstrip("/")}) as socket:
                while (message := json.loads((await socket.receive(timeout=120)).data))["type"] not in (
                        "explanation", "error"):
                    pass
                return message

    with BackgroundServer(served_config(port=0, auth_token="viewer-secret")) as server:
        process, url = start_viewer(server.target, "--token-file", str(token_file))
        try:
            message = asyncio.run(first_explanation(url))
        finally:
            process.terminate()
            process.wait(timeout=30)
    assert message["type"] == "explanation" and message["topk"], message

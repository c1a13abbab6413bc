"""The asyncio client against the real server: same results as the blocking one."""

import asyncio

from staa_serve.clients.client import AsyncExplainerClient
from staa_serve.models.video import decode_clip
from tests.conftest import clip_path, served_config


def test_async_client_clip_and_live_match(server):
    path = clip_path("ucf101_apply_eye_makeup.avi")
    decoded = decode_clip(path)

    async def scenario():
        async with AsyncExplainerClient(server.target, timeout=120) as client:
            info = await client.model_info()
            clip = [explanation async for explanation in client.explain_clip(path)]
            live = [event.explanation async for event in client.explain_frames(list(decoded.frames), decoded.fps, speed=0)
                    if event.HasField("explanation")]
        return info, clip, live

    info, clip, live = asyncio.run(scenario())
    assert info.model_id == "staa-synthkinetics"
    assert len(clip) == len(live) == 6  # 164 frames: 5 windows on the grid and the tail window
    assert clip[-1].aligned_to_end and live[-1].aligned_to_end
    assert [window.spatial.data for window in clip] == [window.spatial.data for window in live]


def test_async_client_waits_until_the_server_is_serving(tiny_model_dir):
    from staa_serve.server.app import BackgroundServer

    with BackgroundServer(served_config(port=0, model=str(tiny_model_dir)), wait_ready=False) as server:
        async def scenario():
            async with AsyncExplainerClient(server.target, timeout=60) as client:
                await client.wait_ready(timeout=300)
                return await client.model_info()

        info = asyncio.run(scenario())
    assert info.num_frames == 4  # answered only once the model was loaded

"""How a drain ends the calls still running when its grace period is over (server/admission.py): a call
busy in our code is cancelled there; a call whose response gRPC is sending is not cancelled (inside gRPC's
send its task would end with no status at all) but ends with the drain's error when gRPC asks for more."""

import asyncio

import pytest

from staa_serve.server.admission import CallTracker, sent
from staa_serve.server.errors import Draining


async def handler(tracker: CallTracker, work: asyncio.Event, outcome: dict, sending: asyncio.Event,
                  delivered: asyncio.Event):
    """A servicer-shaped call: our work (``work``), then responses that a stand-in for gRPC's send
    holds until ``delivered`` is set; ``outcome`` records how it ended."""
    async def responses():
        await work.wait()  # our code: a forward, a decode
        for index in range(3):
            yield index

    with tracker.track() as call:
        try:
            async for response in sent(call, responses()):
                outcome.setdefault("sent", []).append(response)
                sending.set()
                await delivered.wait()  # gRPC sending the response
                delivered.clear()
        except asyncio.CancelledError:
            outcome["ended"] = ("cancelled in our code", tracker.ended_by_drain())
        except Draining as error:
            outcome["ended"] = ("drain error on resume", error)


def test_a_call_busy_in_our_code_is_cancelled_there():
    async def scenario():
        tracker, outcome = CallTracker(), {}
        task = asyncio.create_task(handler(tracker, asyncio.Event(), outcome, asyncio.Event(), asyncio.Event()))
        await asyncio.sleep(0)  # the call is waiting on its work
        assert len(tracker.calls) == 1
        tracker.end_all(0.1)
        await task
        assert await tracker.wait_idle(5) and not tracker.calls
        return outcome

    how, error = asyncio.run(scenario())["ended"]
    assert how == "cancelled in our code" and "grace period (0.1 s) ended" in str(error)


def test_a_call_whose_response_is_being_sent_ends_with_the_drain_error_when_it_resumes():
    async def scenario():
        tracker, outcome = CallTracker(), {}
        work, sending, delivered = asyncio.Event(), asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(handler(tracker, work, outcome, sending, delivered))
        work.set()
        await sending.wait()  # response 0 is with gRPC
        tracker.end_all(0.1)
        await asyncio.sleep(0)
        assert not task.cancelled() and not task.done()  # not cancelled inside the send
        delivered.set()  # the send completes; gRPC asks for the next response
        await task
        return outcome

    outcome = asyncio.run(scenario())
    how, error = outcome["ended"]
    assert outcome["sent"] == [0] and how == "drain error on resume"
    assert "draining" in str(error) and "grace period (0.1 s) ended" in str(error)


def test_calls_end_normally_without_a_drain():
    async def scenario():
        tracker, outcome = CallTracker(), {}
        work, sending, delivered = asyncio.Event(), asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(handler(tracker, work, outcome, sending, delivered))
        work.set()
        while not task.done():
            await sending.wait()
            sending.clear()
            delivered.set()
            await asyncio.sleep(0)
        return outcome, await tracker.wait_idle(5)

    outcome, idle = asyncio.run(scenario())
    assert outcome == {"sent": [0, 1, 2]} and idle


@pytest.mark.parametrize("grace", [0.0, 2.5])
def test_the_drain_error_names_the_grace_period(grace):
    tracker = CallTracker()
    assert tracker.ended_by_drain() is None
    tracker.end_all(grace)
    assert f"grace period ({grace:g} s) ended before this call finished" in str(tracker.ended_by_drain())

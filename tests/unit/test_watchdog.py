"""The event-loop watchdog logs a stall with the task (session and command) that held the loop, and nothing else."""

from __future__ import annotations

import asyncio
import logging
import time

from mailserver.watchdog import Watchdog, activity


def _busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_a_stall_is_logged_with_the_command_that_caused_it(caplog):
    caplog.set_level(logging.WARNING, logger="postroom.watchdog")

    async def main() -> Watchdog:
        dog = Watchdog(threshold=0.1).start()
        await asyncio.sleep(0.05)

        async def session() -> None:
            with activity("imap session=ab12 command=LIST"):
                _busy(0.3)  # a command computing on the loop

        await asyncio.create_task(session())
        for _ in range(1500):  # until the watchdog thread has seen the loop come back (30 s: only a hang)
            if dog.stalls:
                break
            await asyncio.sleep(0.02)
        await dog.close()
        return dog

    dog = asyncio.run(main())
    [stall] = list(dog.stalls)
    assert stall.task == "imap session=ab12 command=LIST"
    assert stall.seconds > 0.2
    assert "test_watchdog" not in stall.where  # only our packages' frames are named
    assert "stalled" in caplog.text and "command=LIST" in caplog.text


def test_an_idle_or_busy_but_yielding_loop_is_not_reported():
    async def main() -> Watchdog:
        dog = Watchdog(threshold=0.5).start()  # generous: the machine itself may pause us briefly
        for _ in range(20):
            _busy(0.01)  # short steps, each well under the threshold
            await asyncio.sleep(0)
        await asyncio.sleep(0.2)
        await dog.close()
        return dog

    assert not asyncio.run(main()).stalls


def test_activity_restores_the_task_name():
    async def main() -> tuple[str, str, str]:
        task = asyncio.current_task()
        assert task is not None
        before = task.get_name()
        with activity("smtp session=1 command=DATA"):
            inside = task.get_name()
        return before, inside, task.get_name()

    before, inside, after = asyncio.run(main())
    assert inside == "smtp session=1 command=DATA" and after == before


def test_an_unnamed_task_is_shown_by_its_coroutine():
    async def main() -> Watchdog:
        dog = Watchdog(threshold=0.1).start()
        await asyncio.sleep(0.05)

        async def smtp_like_session() -> None:
            _busy(0.3)

        await asyncio.create_task(smtp_like_session())
        for _ in range(50):
            if dog.stalls:
                break
            await asyncio.sleep(0.02)
        await dog.close()
        return dog

    [stall] = list(asyncio.run(main()).stalls)
    assert stall.task.startswith("Task-") and "smtp_like_session" in stall.task


"""The event loop stays free while calls run: the waiting happens in Rust."""

from __future__ import annotations

import asyncio
import time

from runtimeuse_client import CommandInterface, RuntimeUseClient

from _support import OutputRecorder, exec_options, query_options


class Ticker:
    """Ticks every `interval` on the event loop and records the longest gap."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.ticks = 0
        self.longest_gap = 0.0
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(self.interval)
            now = time.monotonic()
            self.longest_gap = max(self.longest_gap, now - last)
            self.ticks += 1
            last = now

    def __enter__(self) -> "Ticker":
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc) -> None:
        assert self._task is not None
        self._task.cancel()


async def test_loop_keeps_ticking_during_a_large_streamed_output(client):
    size = 20_000_000
    out = OutputRecorder(keep_text=False)
    started = time.monotonic()
    with Ticker() as ticker:
        result = await client.execute_commands(
            commands=[CommandInterface(command=f"head -c {size} /dev/zero | tr '\\0' 'a'")],
            options=exec_options(on_command_output=out),
        )
    elapsed = time.monotonic() - started
    assert result.results[0].exit_code == 0
    assert out.sizes["stdout"] == size
    # The ticker ran all along (10 ms period; generous bounds for a loaded 2-core CI).
    assert ticker.longest_gap < max(0.5, elapsed / 3), (ticker.longest_gap, elapsed)
    assert ticker.ticks >= elapsed / 0.01 * 0.1, (ticker.ticks, elapsed)


async def test_loop_is_free_while_waiting_for_the_runtime(client):
    with Ticker() as ticker:
        await client.query(prompt="SLOW:3000", options=query_options())
    # A blocked loop would not tick for the whole 3 s call.
    assert ticker.ticks >= 40, ticker.ticks
    assert ticker.longest_gap < 1.0, ticker.longest_gap


async def test_concurrent_calls_run_in_parallel(runtime):
    client = RuntimeUseClient(ws_url=runtime.url)
    started = time.monotonic()
    results = await asyncio.gather(
        *(client.query(prompt="SLOW:800", options=query_options()) for _ in range(10)),
        *(client.execute_commands(commands=[CommandInterface(command="sleep 0.8; echo ok")],
                                  options=exec_options()) for _ in range(5)),
    )
    # One at a time they would take 12 s.
    assert time.monotonic() - started < 8
    assert [r.data.text for r in results[:10]] == ["done"] * 10
    assert [r.results[0].stdout for r in results[10:]] == ["ok\n"] * 5


def test_calls_from_several_threads_and_successive_loops(runtime):
    """Each loop gets its own bridge: loops in parallel threads, and a fresh loop after
    one was closed, all get their results (and a closed loop's bridge goes with it)."""
    import gc
    import threading

    from runtimeuse_client import QueryOptions, RuntimeUseClient
    from runtimeuse_client._loop import _bridges

    options = QueryOptions(system_prompt="", model="echo")
    results: dict[int, list[str]] = {}
    gc.collect()
    bridges_before = len(_bridges)  # those of loops other tests left alive

    def worker(index: int) -> None:
        async def main() -> list[str]:
            client = RuntimeUseClient(ws_url=runtime.url)
            calls = [client.query(f"ECHO:{index}-{i}", options) for i in range(5)]
            return [r.data.text for r in await asyncio.gather(*calls)]

        results[index] = asyncio.run(main())

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == {i: [f"{i}-{n}" for n in range(5)] for i in range(4)}
    worker(9)  # one more loop, in this thread, after the others closed
    assert results[9] == [f"9-{n}" for n in range(5)]
    gc.collect()
    assert len(_bridges) <= bridges_before, "closed loops' bridges were kept"


async def test_many_runtimes_at_once_never_strand_a_result(start_runtime):
    """Results that Tokio threads queue while the loop drains earlier ones always wake it
    again. A missed wake-up once left a fleet of sessions waiting forever, about one run
    in five with 50 runtimes; ten rounds make a regression all but certain to show."""
    from runtimeuse_client import (
        CommandInterface,
        ExecuteCommandsOptions,
        QueryOptions,
        RuntimeUseClient,
    )

    runtimes = [start_runtime() for _ in range(40)]
    options = QueryOptions(system_prompt="", model="echo")

    async def drive(url: str, index: int) -> list[str]:
        client = RuntimeUseClient(ws_url=url)
        async with client.session() as session:
            texts = [
                (await session.query(f"ECHO:{index}.{i}", options)).data.text
                for i in range(10)
            ]
        done = await client.execute_commands(
            [CommandInterface(command="true")], ExecuteCommandsOptions()
        )
        assert done.results[0].exit_code == 0
        return texts

    for _ in range(10):
        calls = asyncio.gather(*(drive(rt.url, i) for i, rt in enumerate(runtimes)))
        # A hang guard only: a round takes well under a second.
        texts = await asyncio.wait_for(calls, 60)
        assert texts == [[f"{index}.{i}" for i in range(10)] for index in range(40)]

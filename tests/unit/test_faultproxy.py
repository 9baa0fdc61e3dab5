"""The fault-injecting proxy used by the multi-site tests does what they rely on."""

import asyncio

import pytest

from tests.faultproxy import FaultProxy


async def _echo_server():
    async def echo(reader, writer):
        while data := await reader.read(4096):
            writer.write(data)
            await writer.drain()
        writer.close()
    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _roundtrip(port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    writer.write_eof()
    data = await reader.read()
    writer.close()
    return data


async def test_bytes_pass_in_order_and_are_counted():
    server, port = await _echo_server()
    async with FaultProxy("127.0.0.1", port, delay=0.01) as proxy:
        payload = bytes(range(256)) * 1000
        assert await _roundtrip(proxy.port, payload) == payload
        assert proxy.counters.bytes_up == len(payload)
        assert proxy.counters.bytes_down == len(payload)
        assert proxy.counters.attempts == 1
    server.close()


async def test_delay_holds_each_direction_back():
    server, port = await _echo_server()
    async with FaultProxy("127.0.0.1", port, delay=0.1) as proxy:
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await _roundtrip(proxy.port, b"ping") == b"ping"
        assert loop.time() - started >= 0.2  # there and back: a lower bound only
    server.close()


@pytest.mark.parametrize("direction", ["up", "down"])
async def test_reset_after_cuts_one_connection_mid_transfer(direction):
    server, port = await _echo_server()
    async with FaultProxy("127.0.0.1", port) as proxy:
        proxy.reset_after(1000, direction=direction)
        payload = b"x" * 100_000
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(payload)
        got = b""
        with pytest.raises(ConnectionError):
            while chunk := await reader.read(4096):
                got += chunk
            raise ConnectionResetError("closed without a reset")  # EOF is not what we asked for
        assert len(got) <= 1000
        await proxy.wait_resets(1)
        # The fault was for one connection only: the next one passes whole.
        assert await _roundtrip(proxy.port, payload) == payload
    server.close()


async def test_offline_resets_new_and_open_connections_and_counts_attempts():
    server, port = await _echo_server()
    async with FaultProxy("127.0.0.1", port) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"hello")
        assert await reader.readexactly(5) == b"hello"
        proxy.set_offline(True)
        with pytest.raises(ConnectionError):
            if not await reader.read(10):
                raise ConnectionResetError("EOF")
        for _ in range(3):
            with pytest.raises(ConnectionError):
                if not await _roundtrip(proxy.port, b"x"):
                    raise ConnectionResetError("EOF")
        await proxy.wait_attempts(4)
        assert proxy.counters.refused == 3
        proxy.set_offline(False)
        assert await _roundtrip(proxy.port, b"back") == b"back"
    server.close()


async def test_reset_when_a_pattern_would_pass_even_split_across_reads():
    server, port = await _echo_server()
    async with FaultProxy("127.0.0.1", port) as proxy:
        proxy.reset_when(b"250 2.0.0", direction="down")
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"354 go ahead\r\n250 2.")
        assert await reader.readexactly(14) == b"354 go ahead\r\n"
        writer.write(b"0.0 OK\r\n")
        got = b""
        with pytest.raises(ConnectionError):
            while chunk := await reader.read(4096):
                got += chunk
            raise ConnectionResetError("closed without a reset")
        assert got == b"250 2."  # the part before the split went through; the pattern never whole
        await proxy.wait_resets(1)
        assert await _roundtrip(proxy.port, b"250 2.0.0 OK") == b"250 2.0.0 OK"
    server.close()

"""Outbound connection reuse and PIPELINING (RFC 2920) against a strict raw peer on loopback.

The peer answers a group only once the whole group has arrived (MAIL, every RCPT, DATA) and
answers a message's final dot only once the next message's MAIL has arrived too (the message
text opens the next group, RFC 2920 §3.1). A client that waits for each reply before sending
the next command would stall there, and the command timeout would fail the test: passing
proves one round trip per message. A peer without PIPELINING gets one command at a time.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from delivery.outbound import Outbound, Request
from delivery.routes import Routes, Target

TIMEOUT = 5.0  # the command timeout: a stall fails the test after this


@dataclass
class StrictPeer:
    expected: int  # messages the test will send: no next MAIL is waited for after the last
    pipelining: bool = True
    connections: int = 0
    received: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    groups: list[list[bytes]] = field(default_factory=list)
    port: int = 0

    async def start(self) -> StrictPeer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.connections += 1
        w.write(b"220 peer.test ESMTP\r\n")
        await r.readline()  # EHLO
        w.write(b"250-peer.test\r\n" + (b"250-PIPELINING\r\n" if self.pipelining else b"") + b"250 SIZE 1000000\r\n")
        line = await r.readline()
        try:
            while line and not line.startswith(b"QUIT"):
                group = [line]
                if self.pipelining:  # read the whole group before answering any of it
                    while not group[-1].startswith(b"DATA"):
                        group.append(await r.readline())
                    w.write(b"250 2.1.0 ok\r\n" * (len(group) - 1) + b"354 go ahead\r\n")
                else:
                    while not group[-1].startswith(b"DATA"):
                        w.write(b"250 2.1.0 ok\r\n")
                        group.append(await r.readline())
                    w.write(b"354 go ahead\r\n")
                self.groups.append(group)
                body = b""
                while not body.endswith(b"\r\n.\r\n"):
                    body += await r.readline()
                mail_from = group[0].decode().split("<", 1)[1].split(">", 1)[0]
                self.received.append((mail_from, [g.decode().split("<")[1].split(">")[0] for g in group[1:-1]], body))
                line = b""
                if self.pipelining and len(self.received) < self.expected:
                    line = await r.readline()  # the next MAIL came with the text: only now the final reply
                w.write(b"250 2.0.0 stored\r\n")
                if not line:
                    line = await r.readline()
            w.write(b"221 bye\r\n")
        except (ConnectionError, IndexError):
            pass
        finally:
            w.close()


async def _send(peer: StrictPeer, n: int, lanes: int):
    out = Outbound(Routes(None), hostname="mail.city.test", timeout=TIMEOUT)  # type: ignore[arg-type]
    target = Target("127.0.0.1", peer.port, "none", "test")
    reqs = [Request("a@city.test", (f"r{i}@district.test", f"s{i}@district.test"),
                    f"Subject: {i}\r\n\r\n.leading dot\r\nmessage {i}\r\n".encode()) for i in range(n)]
    batch = await out.send_batch([target], reqs, lanes=lanes)
    await out.close()
    return batch


async def test_messages_share_one_connection_one_round_trip_each_with_pipelining():
    peer = await StrictPeer(expected=12).start()
    try:
        batch = await _send(peer, 12, lanes=1)
    finally:
        await peer.stop()
    assert peer.connections == 1
    assert [[r.outcome for r in res] for res in batch.results] == [["ok", "ok"]] * 12
    assert [m[1] for m in peer.received] == [[f"r{i}@district.test", f"s{i}@district.test"] for i in range(12)]
    assert peer.received[0][2] == b"Subject: 0\r\n\r\n..leading dot\r\nmessage 0\r\n.\r\n"  # RFC 5321 §4.5.2
    assert all(len(g) == 4 for g in peer.groups)  # MAIL, two RCPT, DATA: one group each
    assert batch.down == {}


async def test_several_connections_share_a_batch_and_a_peer_without_pipelining_gets_one_command_at_a_time():
    peer = await StrictPeer(expected=10, pipelining=False).start()
    try:
        batch = await _send(peer, 10, lanes=3)
    finally:
        await peer.stop()
    assert peer.connections == 3
    assert sorted(int(m[2].split(b"message ")[1][:2]) for m in peer.received) == list(range(10))
    assert all(r.outcome == "ok" for res in batch.results for r in res)


async def test_a_refused_link_is_reported_down_and_every_message_gets_a_temporary_result():
    peer = await StrictPeer(expected=1).start()
    port = peer.port
    await peer.stop()
    out = Outbound(Routes(None), hostname="mail.city.test", timeout=TIMEOUT)  # type: ignore[arg-type]
    batch = await out.send_batch([Target("127.0.0.1", port, "none", "test")],
                                 [Request("a@city.test", ("x@district.test",), b"Subject: x\r\n\r\nx\r\n")] * 3)
    assert list(batch.down) == [f"127.0.0.1:{port}"]
    assert {(r.outcome, r.status) for res in batch.results for r in res} == {("temp", "4.4.1")}

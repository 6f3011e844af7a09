"""A raw-socket SSE reader: one GET on a connection of its own, the chunked body
decoded by hand, each event's arrival timed with ``perf_counter`` the moment its
bytes are read (httpx and its SSE helpers add their own buffering and tasks)."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit


class EventReader:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, chunked: bool) -> None:
        self.reader, self.writer, self.chunked = reader, writer, chunked
        self.buffer = b""

    @classmethod
    async def open(cls, url: str, path: str) -> EventReader:
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAccept: text/event-stream\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        if int(head[9:12]) != 200:
            raise RuntimeError(f"stream answered {head[:200]!r}")
        return cls(reader, writer, b"transfer-encoding: chunked" in head.lower())

    async def _more(self) -> None:
        if not self.chunked:
            data = await self.reader.read(65536)
        else:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            data = (await self.reader.readexactly(size + 2))[:-2]
        if not data:
            raise RuntimeError("the stream ended")
        self.buffer += data.replace(b"\r\n", b"\n")

    async def next_event(self) -> dict[str, str]:
        """The next event's fields (comments and pings skipped), with ``arrived``: the
        ``perf_counter`` at which its last bytes were read."""
        while True:
            while b"\n\n" not in self.buffer:
                await self._more()
            arrived = time.perf_counter()
            block, self.buffer = self.buffer.split(b"\n\n", 1)
            fields = {}
            for line in block.decode().split("\n"):
                name, _, value = line.partition(":")
                if name:  # a line starting with ":" is a comment
                    fields[name] = value.removeprefix(" ")
            if "data" in fields or "event" in fields:
                fields["arrived"] = str(arrived)
                return fields

    async def next_room_event(self) -> dict[str, str]:
        while (event := await self.next_event()).get("event") != "room":
            pass
        return event

    async def until_version(self, version: int) -> float:
        """When the first ``event: room`` with id ≥ ``version`` arrived."""
        while int((event := await self.next_room_event())["id"]) < version:
            pass
        return float(event["arrived"])

    def close(self) -> None:
        self.writer.close()

"""``python -m tests.security.accept_flood SECONDS``: an asyncio server (the plain loop,
whose accept() failures asyncio reports) in a process out of file descriptors, with
the widget's logging, for SECONDS; the log goes to stderr."""

from __future__ import annotations

import asyncio
import resource
import socket
import sys

from widget import logs


async def main(seconds: float) -> None:
    logs.configure("text")
    server = await asyncio.start_server(lambda reader, writer: writer.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
    clients = []
    try:  # connect until no descriptor is left: every accept() then fails with EMFILE
        while True:
            client = socket.socket()
            clients.append(client)
            client.setblocking(False)
            client.connect_ex(("127.0.0.1", port))
    except OSError:
        pass
    await asyncio.sleep(seconds)  # asyncio retries accept() every second
    for client in clients:
        client.close()
    server.close()


if __name__ == "__main__":
    asyncio.run(main(float(sys.argv[1])))

"""A fixed-latency OpenAI-compatible server for the benchmarks: prints its URL, serves until killed.

python bench/server.py LATENCY_MS

One asyncio event loop, HTTP/1.1 with keep-alive: every chat request is answered LATENCY_MS after it arrived, to
within the loop's timer resolution, however many are in flight (a thread per connection, as the test server
auditor.run.serve uses, adds tens of milliseconds per request at hundreds in flight, which no client could win
back). GET /v1/stats counts the chat requests served; GET /v1/models lists the one model.
"""

from __future__ import annotations

import asyncio
import json
import sys

from auditor.run.serve import chat_body

LATENCY = float(sys.argv[1]) / 1000 if len(sys.argv) > 1 else 0.0
REPLY = json.dumps(chat_body("ok", model="bench-model", prompt_tokens=12, completion_tokens=1)).encode()
MODELS = json.dumps({"object": "list", "data": [{"id": "bench-model", "object": "model"}]}).encode()
served = 0


def response(payload: bytes) -> bytes:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    return head.encode() + payload


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    global served
    loop = asyncio.get_running_loop()
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            arrived = loop.time()
            lines = head.split(b"\r\n")
            method, path = lines[0].split(b" ")[:2]
            length = next((int(line[15:]) for line in lines[1:] if line[:15].lower() == b"content-length:"), 0)
            if length:
                await reader.readexactly(length)
            if method == b"POST":
                served += 1
                await asyncio.sleep(max(0.0, arrived + LATENCY - loop.time()))
                payload = REPLY
            elif path.endswith(b"/stats"):
                payload = json.dumps({"requests": served}).encode()
            else:
                payload = MODELS
            writer.write(response(payload))
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def main() -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    print(f"http://127.0.0.1:{port}/v1", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())

"""The daemon's HTTP server under hostile clients, on loopback with raw sockets: trickled
headers, too many connections, unparsable requests; and a failed start."""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from aiohttp import web
from daemonkit import write_config

from detector.web.server import Limits, start_server


async def hello(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def serve(limits: Limits) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_get("/", hello)
    return await start_server(app, "127.0.0.1", 0, limits)


@pytest.fixture
async def server() -> AsyncIterator[int]:
    runner, port = await serve(Limits(header_timeout=0.3, max_connections=1000))
    yield port
    await runner.cleanup()


async def raw(port: int, request: bytes) -> tuple[str, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    await writer.wait_closed()
    head, _, body = answer.partition(b"\r\n\r\n")
    status, *lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return status, {k.lower(): v for k, v in headers.items()}, body


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(1), 0.05) == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True


async def test_trickled_headers_are_cut_off_after_the_header_timeout(server: int) -> None:
    connections = [await asyncio.open_connection("127.0.0.1", server) for _ in range(200)]
    for _, writer in connections:
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
    # Keep trickling a header byte by byte, past the 0.3 s the server allows.
    for step in range(8):
        for _, writer in connections:
            if not writer.is_closing():
                writer.write(b"X-Slow: a\r\n"[step % 11 : step % 11 + 1])
        await asyncio.sleep(0.1)
    closed = sum([await closed_by_server(reader) for reader, _ in connections])
    for _, writer in connections:
        writer.close()
    assert closed >= 190, f"only {closed} of 200 trickling connections were closed"


async def test_a_complete_request_is_still_answered(server: int) -> None:
    status, headers, body = await raw(
        server, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert status == "HTTP/1.1 200 OK"
    assert headers["server"] == "detector"  # no Python or aiohttp version
    assert orjson.loads(body) == {"ok": True}


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"HELLO\r\n\r\n",
        b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nX-Big: " + b"b" * 20_000 + b"\r\n\r\n",
    ],
    ids=["bad request line", "100 KB URL", "20 KB header"],
)
async def test_unparsable_requests_get_a_json_400_and_no_traceback(
    server: int, request_bytes: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    status, headers, body = await raw(server, request_bytes)
    assert status.split()[1] == "400"
    assert headers["content-type"].startswith("application/json")
    assert headers["server"] == "detector"
    error = orjson.loads(body)["error"]
    assert error.startswith("bad request") and "\n" not in error
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]


async def test_connections_over_the_limit_are_closed_at_once() -> None:
    runner, port = await serve(Limits(header_timeout=30, max_connections=5))
    try:
        connections = [await asyncio.open_connection("127.0.0.1", port) for _ in range(10)]
        await asyncio.sleep(0.05)  # let the server accept them all
        closed = [await closed_by_server(reader) for reader, _ in connections]
        assert closed.count(True) == 5 and closed[:5] == [False] * 5
        for _, writer in connections:
            writer.close()
    finally:
        await runner.cleanup()


def test_a_port_in_use_is_one_line_and_nothing_left_open(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(tmp_path, "http://127.0.0.1:9", listen=f"127.0.0.1:{port}")
        env = {"TEST_SANDBOX_USER": "u", "TEST_SANDBOX_PASS": "p", "PATH": "/usr/bin:/bin"}
        done = subprocess.run(
            [sys.executable, "-m", "detector.cli", "run", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if '"level": "info"' not in line]
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith("detector: error:") and str(port) in errors[0]
    assert "Unclosed" not in done.stderr and "Traceback" not in done.stderr

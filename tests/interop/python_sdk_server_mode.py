"""Interoperability test: the official Python MCP SDK against mcp-proxy in server mode.

Usage: python_sdk_server_mode.py PATH/TO/mcp-proxy PATH/TO/mcp-example-server

It starts `mcp-proxy --port 0 -- mcp-example-server` and drives it with the SDK's own
clients and `ClientSession`, so it proves that a real, independent MCP client
implementation can use the proxy, over both transports:

- Streamable HTTP (`/mcp`): initialize (serverInfo and capabilities of the child come
  through unchanged), tools/list, tools/call, progress notifications routed to the
  caller's progress callback, log notifications reaching the logging callback, a
  server-to-client `sampling/createMessage` answered by the client's sampling callback,
  resources, prompts, and a 1 MB tool result delivered intact.
- Legacy HTTP+SSE (`/sse` + `/messages/`): initialize, tools/list, tools/call,
  progress, logging and sampling.
- On each transport, concurrent calls of one session run in parallel through the proxy.
- Two sessions at once (one per transport, then two Streamable HTTP sessions), each
  firing 20 concurrent `echo` calls: every answer reaches the session that asked, and
  only that one.
- The proxy exits 0 on SIGTERM and takes its child with it.

Each check prints one line (PASS/FAIL, its name, its duration); the last line counts
them. The exit status is non-zero if any check failed. Every wait is bounded, and every
process started here is killed at the end. The tail of the proxy's output is printed when
a check fails (or always, with INTEROP_SHOW_OUTPUT=1); INTEROP_PROXY_DEBUG=1 runs the proxy
with --debug.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

from _harness import (
    CHECK_TIMEOUT,
    Callbacks,
    Report,
    WatchedProcess,
    describe,
    kill_group_and_process,
    only_text,
    pid_alive,
)
from mcp import ClientSession, types
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

# Generous bounds: these checks must pass on a loaded 2-core machine.
PROXY_START_TIMEOUT = 20.0
SESSION_CLOSE_TIMEOUT = 20.0
PROXY_STOP_TIMEOUT = 15.0
SDK_READ_TIMEOUT = timedelta(seconds=60)

FIXTURE_NAME = "mcp-example-server"
LARGE_BYTES = 1_000_000
CONCURRENT_CALLS = 20
OVERLAP_CALLS = 10
OVERLAP_SLEEP_MS = 500

LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")
CHILD_PID = re.compile(r"started .* \(pid (\d+)\)")


# ---------------------------------------------------------------------------------------
# The proxy process
# ---------------------------------------------------------------------------------------


class Proxy(WatchedProcess):
    """`mcp-proxy --port 0 -- FIXTURE`, its output (stderr and stdout) kept for diagnostics."""

    def __init__(self, proxy_path: str, fixture_path: str) -> None:
        super().__init__()
        self.command = [proxy_path, "--port", "0"]
        if os.environ.get("INTEROP_PROXY_DEBUG"):
            self.command.append("--debug")
        self.command += ["--", fixture_path]
        self.port: int | None = None
        self.child_pid: int | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        if not await self._start(self.command, PROXY_START_TIMEOUT):
            why = (
                "its output closed" if self.output_closed else f"{PROXY_START_TIMEOUT:.0f} s passed"
            )
            raise RuntimeError(f"no 'listening on' line before {why}")

    def _scan(self, line: str) -> None:
        super()._scan(line)
        if self.port is None and (match := LISTENING.search(line)):
            self.port = int(match.group(1))
            self._listening.set()
        if self.child_pid is None and (match := CHILD_PID.search(line)):
            self.child_pid = int(match.group(1))

    async def terminate(self) -> int | None:
        """SIGTERM, then SIGKILL after a grace period. Returns the exit code."""
        return await self._stop(PROXY_STOP_TIMEOUT, raise_if_unreaped=True)

    def kill_leftovers(self) -> None:
        """Last resort: the proxy and its child must not outlive the test."""
        self.kill()
        if self.child_pid is not None and pid_alive(self.child_pid):
            kill_group_and_process(self.child_pid)

    def print_output(self, last: int = 200) -> None:
        print(f"--- last {last} lines of the proxy's output ---", flush=True)
        for line in self.output_lines[-last:]:
            print(f"    {line}")
        print("--- end of the proxy's output ---", flush=True)


# ---------------------------------------------------------------------------------------
# Client sessions: the SDK's own clients, with the callbacks of _harness.Callbacks
# ---------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def open_session(transport: str, url: str, callbacks: Callbacks):
    """A ClientSession over the SDK's own client for `transport` ("streamable" or "sse")."""
    if transport == "streamable":
        client = streamable_http_client(url)
    else:
        client = sse_client(url, timeout=30, sse_read_timeout=300)
    async with client as streams:
        read_stream, write_stream = streams[0], streams[1]
        async with ClientSession(
            read_stream,
            write_stream,
            read_timeout_seconds=SDK_READ_TIMEOUT,
            sampling_callback=callbacks.sampling,
            logging_callback=callbacks.logging,
            client_info=types.Implementation(name=f"interop-{callbacks.label}", version="1.0"),
        ) as session:
            yield session


# ---------------------------------------------------------------------------------------
# The checks: one function each
# ---------------------------------------------------------------------------------------


async def check_initialize(session: ClientSession) -> None:
    result = await session.initialize()
    assert result.serverInfo.name == FIXTURE_NAME, f"serverInfo.name is {result.serverInfo.name!r}"
    assert result.capabilities.tools is not None, f"no tools capability in {result.capabilities}"
    assert result.protocolVersion in ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"), (
        f"unexpected protocolVersion {result.protocolVersion!r}"
    )


async def check_list_tools(session: ClientSession) -> None:
    result = await session.list_tools()
    names = {tool.name for tool in result.tools}
    assert "echo" in names, f"no echo tool in {sorted(names)}"


async def check_echo(session: ClientSession) -> None:
    message = 'hello from the Python SDK: ünïcödé ✓ "quotes" \\ and\nnewline'
    text = only_text(await session.call_tool("echo", {"message": message}))
    assert text == message, f"echo returned {text!r}"


async def check_progress(session: ClientSession) -> None:
    steps = 5
    received: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        received.append((progress, total, message))

    result = await session.call_tool(
        "progress", {"steps": steps, "interval_ms": 20}, progress_callback=on_progress
    )
    assert only_text(result) == f"done {steps} steps", f"result is {result.content}"
    expected = [(step, steps, f"step {step} of {steps}") for step in range(1, steps + 1)]
    assert received == expected, f"progress callback got {received}, expected {expected}"


async def check_logging(session: ClientSession, callbacks: Callbacks) -> None:
    await session.set_logging_level("debug")
    data = f"log line for {callbacks.label} {time.monotonic_ns()}"
    text = only_text(await session.call_tool("log", {"level": "warning", "message": data}))
    assert text == "logged", f"log tool returned {text!r}"
    message = await callbacks.wait_for_log(data)
    assert message.level == "warning", f"log level is {message.level!r}"
    assert message.logger == FIXTURE_NAME, f"logger is {message.logger!r}"


async def check_sampling(session: ClientSession, callbacks: Callbacks) -> None:
    prompt = f"what is the meaning of {callbacks.label}?"
    text = only_text(await session.call_tool("sample", {"prompt": prompt}))
    assert callbacks.sampling_prompts[-1:] == [prompt], (
        f"sampling callback saw {callbacks.sampling_prompts}, expected the prompt {prompt!r}"
    )
    expected = "sampled: " + callbacks.sampling_answer(prompt)
    assert text == expected, f"sample returned {text!r}, expected {expected!r}"


async def check_resources(session: ClientSession) -> None:
    listed = await session.list_resources()
    uris = {str(resource.uri) for resource in listed.resources}
    assert "example://greeting" in uris, f"example://greeting not in {sorted(uris)}"
    read = await session.read_resource("example://greeting")
    assert len(read.contents) == 1, f"expected one content, got {read.contents}"
    content = read.contents[0]
    assert isinstance(content, types.TextResourceContents), f"expected text, got {content!r}"
    assert content.text == f"Hello from {FIXTURE_NAME}", f"greeting is {content.text!r}"


async def check_prompts(session: ClientSession) -> None:
    listed = await session.list_prompts()
    names = {prompt.name for prompt in listed.prompts}
    assert "greet" in names, f"no greet prompt in {sorted(names)}"
    prompt = await session.get_prompt("greet", {"name": "Ada"})
    assert len(prompt.messages) == 1, f"expected one message, got {prompt.messages}"
    content = prompt.messages[0].content
    assert isinstance(content, types.TextContent), f"expected text, got {content!r}"
    assert content.text == "Say hello to Ada", f"prompt text is {content.text!r}"


async def check_large(session: ClientSession) -> None:
    text = only_text(await session.call_tool("large", {"bytes": LARGE_BYTES}))
    assert len(text) == LARGE_BYTES, f"length {len(text)}, expected {LARGE_BYTES}"
    expected = "0123456789" * (LARGE_BYTES // 10)
    if text != expected:
        first = next(i for i, (a, b) in enumerate(zip(text, expected, strict=True)) if a != b)
        raise AssertionError(
            f"content differs first at offset {first}: {text[first : first + 20]!r}"
        )


async def check_overlap(session: ClientSession) -> None:
    """Calls in flight at once run at once: the proxy does not serialize one session's calls."""
    serial = OVERLAP_CALLS * OVERLAP_SLEEP_MS / 1000
    started = time.monotonic()
    results = await asyncio.gather(
        *(session.call_tool("sleep", {"ms": OVERLAP_SLEEP_MS}) for _ in range(OVERLAP_CALLS))
    )
    elapsed = time.monotonic() - started
    for result in results:
        assert only_text(result) == f"slept {OVERLAP_SLEEP_MS}ms", (
            f"sleep returned {result.content}"
        )
    assert elapsed < serial * 0.6, (
        f"{OVERLAP_CALLS} calls took {elapsed:.2f} s; one after the other: {serial:.1f} s"
    )


async def echo_many(session: ClientSession, label: str) -> None:
    """CONCURRENT_CALLS echo calls at once; each must get its own message back."""
    messages = [f"{label} message {i}" for i in range(CONCURRENT_CALLS)]
    results = await asyncio.gather(*(session.call_tool("echo", {"message": m}) for m in messages))
    answers = [only_text(result) for result in results]
    wrong = [(sent, got) for sent, got in zip(messages, answers, strict=True) if sent != got]
    assert not wrong, (
        f"{label}: {len(wrong)} wrong answers, e.g. sent {wrong[0][0]!r}, got {wrong[0][1]!r}"
    )


# ---------------------------------------------------------------------------------------
# Scenarios: a session per transport, then concurrency, then shutdown
# ---------------------------------------------------------------------------------------


def session_checks(
    transport: str, full: bool
) -> list[tuple[str, Callable[[ClientSession, Callbacks], Awaitable[None]]]]:
    checks: list[tuple[str, Callable[[ClientSession, Callbacks], Awaitable[None]]]] = [
        ("list_tools contains echo", lambda s, c: check_list_tools(s)),
        ("call_tool echo", lambda s, c: check_echo(s)),
        ("progress callback gets every step", lambda s, c: check_progress(s)),
        ("logging callback gets the log tool's message", check_logging),
        ("sampling callback answers the sample tool", check_sampling),
        (f"{OVERLAP_CALLS} concurrent sleep calls run in parallel", lambda s, c: check_overlap(s)),
    ]
    if full:
        checks += [
            ("list_resources / read_resource example://greeting", lambda s, c: check_resources(s)),
            ("list_prompts / get_prompt greet", lambda s, c: check_prompts(s)),
            (f"large tool result of {LARGE_BYTES} bytes intact", lambda s, c: check_large(s)),
        ]
    return [(f"{transport}: {name}", check) for name, check in checks]


async def run_transport(report: Report, transport: str, url: str, full: bool) -> None:
    """Opens one session over `transport` and runs its checks in order, all bounded."""
    callbacks = Callbacks(transport)
    checks = session_checks(transport, full)
    initialize_name = f"{transport}: initialize (serverInfo, tools capability)"
    ran: list[str] = []

    async def scenario() -> None:
        # The SDK's contexts hold anyio task groups: they are entered and left in this one
        # task, while each check runs (bounded) in a task of its own.
        async with open_session(transport, url, callbacks) as session:
            if not await report.check(initialize_name, check_initialize(session)):
                return
            for name, check in checks:
                ran.append(name)
                await report.check(name, check(session, callbacks))

    bound = CHECK_TIMEOUT * (len(checks) + 1) + SESSION_CLOSE_TIMEOUT
    try:
        await asyncio.wait_for(scenario(), bound)
    except Exception as error:  # noqa: BLE001 - the transport itself failed
        reason = (
            describe(error)
            if not isinstance(error, TimeoutError)
            else f"timed out after {bound:.0f} s"
        )
        report.fail(f"{transport}: session opens and closes cleanly", reason)
    report.skip_rest([name for name, _ in checks if name not in ran], "the session was not usable")


async def run_concurrent(
    report: Report, name: str, first: tuple[str, str], second: tuple[str, str]
) -> None:
    """Two sessions at once, each firing CONCURRENT_CALLS echo calls concurrently."""

    async def one(transport: str, url: str, label: str) -> None:
        callbacks = Callbacks(label)
        async with open_session(transport, url, callbacks) as session:
            await check_initialize(session)
            await echo_many(session, label)

    async def both() -> None:
        await asyncio.gather(
            one(first[0], first[1], f"A-{first[0]}"),
            one(second[0], second[1], f"B-{second[0]}"),
        )

    await report.check(name, both(), timeout=CHECK_TIMEOUT * 2)


async def check_shutdown(proxy: Proxy) -> None:
    code = await proxy.terminate()
    assert code == 0, f"proxy exited with {code} on SIGTERM, expected 0"
    if proxy.child_pid is not None:
        deadline = time.monotonic() + 5
        while pid_alive(proxy.child_pid) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert not pid_alive(proxy.child_pid), (
            f"child pid {proxy.child_pid} still alive after the proxy exited"
        )


async def main(proxy_path: str, fixture_path: str) -> int:
    report = Report()
    proxy = Proxy(proxy_path, fixture_path)
    started = time.monotonic()
    try:
        if not await report.check(
            "proxy starts and prints its port", proxy.start(), PROXY_START_TIMEOUT + 5
        ):
            proxy.print_output()
            return 1
        mcp_url, sse_url = f"{proxy.base_url}/mcp", f"{proxy.base_url}/sse"
        await run_transport(report, "streamable", mcp_url, full=True)
        await run_transport(report, "sse", sse_url, full=False)
        await run_concurrent(
            report,
            f"concurrent: streamable + sse sessions, {CONCURRENT_CALLS} echos each, own answers",
            ("streamable", mcp_url),
            ("sse", sse_url),
        )
        await run_concurrent(
            report,
            f"concurrent: two streamable sessions, {CONCURRENT_CALLS} echos each, own answers",
            ("streamable", mcp_url),
            ("streamable", mcp_url),
        )
        await report.check("proxy exits 0 on SIGTERM and stops its child", check_shutdown(proxy))
    finally:
        with contextlib.suppress(Exception):
            await proxy.terminate()
        proxy.kill_leftovers()
    if report.failed or os.environ.get("INTEROP_SHOW_OUTPUT"):
        proxy.print_output()
    return report.finish(started, "python-sdk interop", "python-sdk-interop")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__.splitlines()[2], file=sys.stderr)
        sys.exit(2)
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2])))

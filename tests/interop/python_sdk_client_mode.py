"""Interoperability test: the official Python MCP SDK on both sides of mcp-proxy in client mode.

Usage: python_sdk_client_mode.py PATH/TO/mcp-proxy

    SDK stdio client  <--stdio-->  mcp-proxy URL  <--SSE or Streamable HTTP-->  SDK server

It starts two remote MCP servers written with the SDK's FastMCP (sdk_remote_server.py, next
to this file): one serving the legacy HTTP+SSE transport, one serving Streamable HTTP, each
on 127.0.0.1 on a free port. Then, for each of these legs:

- `--transport streamablehttp` against the Streamable HTTP server's /mcp;
- `--transport sse` against the SSE server's /sse;
- the default transport (auto) against /mcp: Streamable HTTP is used;
- the default transport (auto) against /sse: the POST gets 405, the proxy must fall back to
  SSE (each server speaks one transport only, so a working session proves which was used);

the SDK's `stdio_client` launches `mcp-proxy [--transport X] URL`, and a `ClientSession`
(with sampling, elicitation, roots, logging and message callbacks) checks: initialize
(serverInfo of the remote); the remote receives what the client wrote to the proxy's stdin
in that order (notifications/initialized, a burst of notifications, then a request: the
SDK's own HTTP clients keep that order); the remote sees the client's clientInfo and
capabilities (so the server can ask for sampling and elicitation, which only a transparent
proxy allows); tools/list, echo, add; progress notifications reaching the progress
callback; a log notification reaching the logging callback; a sampling round trip; an
elicitation round trip; concurrent calls each getting their own answer; a 1 MB tool result
intact; resources; prompts; and nothing but JSON-RPC on the proxy's stdout. After the
session ends (the SDK closes the proxy's stdin), the proxy must exit 0 on its own, without
the SDK having to signal it, and, on Streamable HTTP, must have ended the remote session
with DELETE.

Each check prints one line (PASS/FAIL, its name, its duration); the last line counts them.
The exit status is non-zero if any check failed. Every wait is bounded, and every process
started here is killed at the end. The proxy's stderr and the servers' output are printed
when a check fails (or always, with INTEROP_SHOW_OUTPUT=1); INTEROP_PROXY_DEBUG=1 runs the
proxy with --debug.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import _harness
import mcp.client.stdio as sdk_stdio
from _harness import (
    CHECK_TIMEOUT,
    NOTIFICATION_TIMEOUT,
    Report,
    WatchedProcess,
    describe,
    kill_group_and_process,
    only_text,
    pid_alive,
    print_block,
)
from mcp import ClientSession, StdioServerParameters, types
from mcp.client.stdio import stdio_client
from mcp.shared.context import RequestContext

# Generous bounds: these checks must pass on a loaded 2-core machine.
SERVER_START_TIMEOUT = 60.0
PROXY_EXIT_TIMEOUT = 20.0  # after its stdin closes
SERVER_STOP_TIMEOUT = 15.0
SDK_READ_TIMEOUT = timedelta(seconds=60)

HERE = Path(__file__).resolve().parent
SERVER_SCRIPT = HERE / "sdk_remote_server.py"
SERVER_NAME = "sdk-remote-server"
CLIENT_NAME = "interop-client-mode"
PROGRESS_STEPS = 3
LARGE_BYTES = 1_000_000
CONCURRENT_CALLS = 20
ORDERED_NOTIFICATIONS = 5
EXPECTED_TOOLS = {
    "echo",
    "add",
    "progress",
    "log",
    "sample",
    "elicit",
    "large",
    "client_info",
    "received",
}
PROTOCOL_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")

LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")
# uvicorn's access log line for the DELETE that ends a Streamable HTTP session.
SESSION_DELETED = re.compile(r'"DELETE /mcp HTTP/1\.1" 200')


# ---------------------------------------------------------------------------------------
# The remote servers (FastMCP, one per transport)
# ---------------------------------------------------------------------------------------


class RemoteServer(WatchedProcess):
    """`sdk_remote_server.py TRANSPORT`, its output kept for diagnostics."""

    def __init__(self, transport: str) -> None:
        super().__init__()
        self.transport = transport
        self.base_url: str | None = None

    async def start(self) -> None:
        command = [sys.executable, str(SERVER_SCRIPT), self.transport]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if not await self._start(command, SERVER_START_TIMEOUT, env):
            why = "its output closed" if self.output_closed else f"{SERVER_START_TIMEOUT:.0f} s"
            raise RuntimeError(f"no 'listening on' line from the {self.transport} server ({why})")

    def _scan(self, line: str) -> None:
        super()._scan(line)
        if self.base_url is None and (match := LISTENING.search(line)):
            self.base_url = match.group(1)
            self._listening.set()

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after a grace period."""
        await self._stop(SERVER_STOP_TIMEOUT, raise_if_unreaped=False)

    def count(self, pattern: re.Pattern[str]) -> int:
        return sum(1 for line in self.output_lines if pattern.search(line))

    async def wait_for_count(self, pattern: re.Pattern[str], count: int) -> None:
        """Waits (bounded) until `count` output lines match `pattern`."""
        deadline = time.monotonic() + NOTIFICATION_TIMEOUT
        while self.count(pattern) < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.count(pattern)} lines of the {self.transport} server's output match "
                    f"{pattern.pattern!r} after {NOTIFICATION_TIMEOUT:.0f} s, expected {count}"
                )
            await asyncio.sleep(0.05)


# ---------------------------------------------------------------------------------------
# The proxy, launched by the SDK's stdio_client
# ---------------------------------------------------------------------------------------
#
# stdio_client keeps its process to itself, so that we can check the proxy's exit status
# (and kill it if all else fails) we wrap the two module-level helpers it calls (mcp 1.30.0):
# one creates the process, the other signals its process group when it has not exited within
# PROCESS_TERMINATION_TIMEOUT of its stdin closing. That timeout (2 s in the SDK) is raised
# to a bound that holds on a loaded machine.

LAUNCHED: list[Any] = []  # anyio Process objects, in launch order
SIGNALLED: set[int] = set()  # pids the SDK had to terminate

_create_process = sdk_stdio._create_platform_compatible_process
_terminate_tree = sdk_stdio._terminate_process_tree


async def _recording_create(*args: Any, **kwargs: Any) -> Any:
    process = await _create_process(*args, **kwargs)
    LAUNCHED.append(process)
    return process


async def _recording_terminate(process: Any, *args: Any, **kwargs: Any) -> None:
    SIGNALLED.add(process.pid)
    await _terminate_tree(process, *args, **kwargs)


sdk_stdio._create_platform_compatible_process = _recording_create
sdk_stdio._terminate_process_tree = _recording_terminate
sdk_stdio.PROCESS_TERMINATION_TIMEOUT = PROXY_EXIT_TIMEOUT


def kill_launched() -> None:
    """Last resort: no proxy outlives the test (each is in its own session/process group)."""
    for process in LAUNCHED:
        if process.returncode is None and pid_alive(process.pid):
            kill_group_and_process(process.pid)


# ---------------------------------------------------------------------------------------
# Client callbacks: what a client application would plug into ClientSession
# ---------------------------------------------------------------------------------------


class Callbacks(_harness.Callbacks):
    """The callbacks of one session, recording what they saw: sampling and logging (shared),
    elicitation, roots, and what the SDK could not parse on stdout."""

    def __init__(self, label: str) -> None:
        super().__init__(label)
        self.elicitation_messages: list[str] = []
        self.stream_errors: list[str] = []

    def elicitation_answer(self) -> dict[str, Any]:
        return {"name": f"Ada via {self.label}", "confirm": True}

    async def elicitation(
        self, context: RequestContext[ClientSession, Any], params: types.ElicitRequestParams
    ) -> types.ElicitResult:
        self.elicitation_messages.append(params.message)
        if not isinstance(params, types.ElicitRequestFormParams):
            return types.ElicitResult(action="decline")
        return types.ElicitResult(action="accept", content=self.elicitation_answer())

    async def roots(self, context: RequestContext[ClientSession, Any]) -> types.ListRootsResult:
        return types.ListRootsResult(roots=[])

    async def messages(self, message: Any) -> None:
        """The session's message handler: records what the SDK could not parse on stdout."""
        if isinstance(message, Exception):
            self.stream_errors.append(describe(message))


# ---------------------------------------------------------------------------------------
# The checks: one function each
# ---------------------------------------------------------------------------------------


async def check_initialize(session: ClientSession) -> None:
    result = await session.initialize()
    assert result.serverInfo.name == SERVER_NAME, f"serverInfo.name is {result.serverInfo.name!r}"
    assert result.capabilities.tools is not None, f"no tools capability in {result.capabilities}"
    assert result.protocolVersion in PROTOCOL_VERSIONS, (
        f"unexpected protocolVersion {result.protocolVersion!r}"
    )
    assert result.instructions == "Interop fixture of mcp-proxy.", (
        f"instructions are {result.instructions!r}"
    )


async def check_order(session: ClientSession) -> None:
    """What the client wrote to the proxy's stdin, one after the other, reaches the remote in
    that order: notifications/initialized, then a burst of notifications, then a request."""
    for seq in range(ORDERED_NOTIFICATIONS):
        params = types.NotificationParams.model_validate({"_meta": {"seq": seq}})
        await session.send_notification(
            types.ClientNotification(types.RootsListChangedNotification(params=params))
        )
    seen = json.loads(only_text(await session.call_tool("received", {})))
    expected = [
        "initialize",
        "notifications/initialized",
        *(f"notifications/roots/list_changed {seq}" for seq in range(ORDERED_NOTIFICATIONS)),
        "tools/call received",
    ]
    assert seen == expected, f"the remote received {seen}, expected {expected}"


async def check_client_seen(session: ClientSession) -> None:
    seen = json.loads(only_text(await session.call_tool("client_info", {})))
    assert seen is not None, "the remote has no client parameters"
    assert seen["name"] == CLIENT_NAME, f"the remote saw clientInfo.name {seen['name']!r}"
    capabilities = seen["capabilities"]
    for capability in ("sampling", "elicitation"):
        assert capability in capabilities, (
            f"the remote did not see the {capability} capability: it saw {capabilities}"
        )


async def check_list_tools(session: ClientSession) -> None:
    result = await session.list_tools()
    names = {tool.name for tool in result.tools}
    assert EXPECTED_TOOLS <= names, f"missing tools {sorted(EXPECTED_TOOLS - names)}"


async def check_echo(session: ClientSession) -> None:
    message = 'hello through the proxy: ünïcödé ✓ "quotes" \\ and\nnewline'
    text = only_text(await session.call_tool("echo", {"message": message}))
    assert text == message, f"echo returned {text!r}"


async def check_add(session: ClientSession) -> None:
    result = await session.call_tool("add", {"a": 2, "b": 40})
    assert only_text(result) == "42", f"add returned {result.content}"
    assert result.structuredContent == {"result": 42}, (
        f"structuredContent is {result.structuredContent!r}"
    )


async def check_progress(session: ClientSession) -> None:
    received: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        received.append((progress, total, message))

    result = await session.call_tool(
        "progress", {"steps": PROGRESS_STEPS}, progress_callback=on_progress
    )
    assert only_text(result) == f"done {PROGRESS_STEPS} steps", f"result is {result.content}"
    # The SDK forgets a request's progress callback when its response arrives: progress
    # notifications that come after the response are dropped, so all must be here now.
    expected = [
        (step, PROGRESS_STEPS, f"step {step} of {PROGRESS_STEPS}")
        for step in range(1, PROGRESS_STEPS + 1)
    ]
    assert received == expected, f"progress callback got {received}, expected {expected}"


async def check_logging(session: ClientSession, callbacks: Callbacks) -> None:
    data = f"log line for {callbacks.label} {time.monotonic_ns()}"
    text = only_text(await session.call_tool("log", {"message": data}))
    assert text == "logged", f"log tool returned {text!r}"
    message = await callbacks.wait_for_log(data)
    assert message.level == "info", f"log level is {message.level!r}"


async def check_sampling(session: ClientSession, callbacks: Callbacks) -> None:
    prompt = f"what is the meaning of {callbacks.label}?"
    text = only_text(await session.call_tool("sample", {"prompt": prompt}))
    assert callbacks.sampling_prompts[-1:] == [prompt], (
        f"sampling callback saw {callbacks.sampling_prompts}, expected the prompt {prompt!r}"
    )
    expected = "sampled (interop-test-model): " + callbacks.sampling_answer(prompt)
    assert text == expected, f"sample returned {text!r}, expected {expected!r}"


async def check_elicitation(session: ClientSession, callbacks: Callbacks) -> None:
    question = f"who is using {callbacks.label}?"
    text = only_text(await session.call_tool("elicit", {"question": question}))
    assert callbacks.elicitation_messages[-1:] == [question], (
        f"elicitation callback saw {callbacks.elicitation_messages}, expected {question!r}"
    )
    answer = callbacks.elicitation_answer()
    expected = f"elicited accept: name={answer['name']} confirm={answer['confirm']}"
    assert text == expected, f"elicit returned {text!r}, expected {expected!r}"


async def check_concurrent(session: ClientSession, callbacks: Callbacks) -> None:
    messages = [f"{callbacks.label} message {i}" for i in range(CONCURRENT_CALLS)]
    results = await asyncio.gather(*(session.call_tool("echo", {"message": m}) for m in messages))
    answers = [only_text(result) for result in results]
    wrong = [(sent, got) for sent, got in zip(messages, answers, strict=True) if sent != got]
    assert not wrong, f"{len(wrong)} wrong answers, e.g. sent {wrong[0][0]!r}, got {wrong[0][1]!r}"


async def check_large(session: ClientSession) -> None:
    text = only_text(await session.call_tool("large", {"size": LARGE_BYTES}))
    assert len(text) == LARGE_BYTES, f"length {len(text)}, expected {LARGE_BYTES}"
    expected = "0123456789" * (LARGE_BYTES // 10)
    if text != expected:
        first = next(i for i, (a, b) in enumerate(zip(text, expected, strict=True)) if a != b)
        raise AssertionError(
            f"content differs first at offset {first}: {text[first : first + 20]!r}"
        )


async def check_resources(session: ClientSession) -> None:
    listed = await session.list_resources()
    uris = {str(resource.uri) for resource in listed.resources}
    assert "interop://greeting" in uris, f"interop://greeting not in {sorted(uris)}"
    read = await session.read_resource("interop://greeting")
    assert len(read.contents) == 1, f"expected one content, got {read.contents}"
    content = read.contents[0]
    assert isinstance(content, types.TextResourceContents), f"expected text, got {content!r}"
    assert content.text == f"Hello from {SERVER_NAME}", f"greeting is {content.text!r}"


async def check_prompts(session: ClientSession) -> None:
    listed = await session.list_prompts()
    names = {prompt.name for prompt in listed.prompts}
    assert "greet" in names, f"no greet prompt in {sorted(names)}"
    prompt = await session.get_prompt("greet", {"name": "Ada"})
    assert len(prompt.messages) == 1, f"expected one message, got {prompt.messages}"
    content = prompt.messages[0].content
    assert isinstance(content, types.TextContent), f"expected text, got {content!r}"
    assert content.text == "Say hello to Ada", f"prompt text is {content.text!r}"


async def check_clean_stdout(callbacks: Callbacks) -> None:
    assert not callbacks.stream_errors, (
        f"{len(callbacks.stream_errors)} unparseable messages on the proxy's stdout, "
        f"first: {callbacks.stream_errors[0]}"
    )


async def check_exit(process: Any | None, session_ended: bool) -> None:
    assert process is not None, "the proxy was not launched"
    assert session_ended, (
        "the session did not end normally (proxy exit status "
        f"{process.returncode}, signalled by the SDK: {process.pid in SIGNALLED})"
    )
    assert process.pid not in SIGNALLED, (
        f"the proxy did not exit within {PROXY_EXIT_TIMEOUT:.0f} s of its stdin closing; "
        f"the SDK had to signal it (exit status then: {process.returncode})"
    )
    assert process.returncode == 0, f"the proxy exited with {process.returncode}, expected 0"


Check = Callable[[ClientSession, Callbacks], Awaitable[None]]


def session_checks(label: str) -> list[tuple[str, Check]]:
    checks: list[tuple[str, Check]] = [
        (
            "the remote receives what the client sent in its order (initialized, "
            f"{ORDERED_NOTIFICATIONS} notifications, a request)",
            lambda s, c: check_order(s),
        ),
        (
            "the remote sees the client's clientInfo and sampling/elicitation capabilities",
            lambda s, c: check_client_seen(s),
        ),
        ("list_tools has every tool", lambda s, c: check_list_tools(s)),
        ("call_tool echo", lambda s, c: check_echo(s)),
        ("call_tool add", lambda s, c: check_add(s)),
        (
            f"progress callback gets all {PROGRESS_STEPS} steps before the result",
            lambda s, c: check_progress(s),
        ),
        ("logging callback gets the ctx.info message", check_logging),
        ("sampling round trip: the tool returns the callback's answer", check_sampling),
        ("elicitation round trip: the tool returns the callback's answer", check_elicitation),
        (f"{CONCURRENT_CALLS} concurrent echo calls get their own answers", check_concurrent),
        (f"large tool result of {LARGE_BYTES} bytes intact", lambda s, c: check_large(s)),
        ("list_resources / read_resource interop://greeting", lambda s, c: check_resources(s)),
        ("list_prompts / get_prompt greet", lambda s, c: check_prompts(s)),
        ("only JSON-RPC on the proxy's stdout", lambda s, c: check_clean_stdout(c)),
    ]
    return [(f"{label}: {name}", check) for name, check in checks]


# ---------------------------------------------------------------------------------------
# One leg: the SDK's stdio client, the proxy, a remote server
# ---------------------------------------------------------------------------------------


async def run_leg(
    report: Report,
    proxy_path: str,
    label: str,
    transport: str | None,
    server: RemoteServer,
    path: str,
    logs: Path,
) -> list[str]:
    """Launches the proxy through stdio_client and runs the checks; returns its stderr."""
    url = f"{server.base_url}{path}"
    deletes_before = server.count(SESSION_DELETED)
    args: list[str] = []
    if os.environ.get("INTEROP_PROXY_DEBUG"):
        args.append("--debug")
    if transport is not None:
        args += ["--transport", transport]
    args.append(url)
    params = StdioServerParameters(command=proxy_path, args=args)
    print(f"# {label}: mcp-proxy {' '.join(args)}", flush=True)

    callbacks = Callbacks(label)
    checks = session_checks(label)
    initialize_name = f"{label}: initialize (serverInfo, instructions from the remote)"
    exit_name = f"{label}: proxy exits 0 on its own once the client closes its stdin"
    ran: list[str] = []
    launched_before = len(LAUNCHED)
    session_ended = False
    stderr_path = logs / f"proxy-{len(LAUNCHED)}.stderr"

    async def scenario() -> None:
        nonlocal session_ended
        # The SDK's contexts hold anyio task groups: they are entered and left in this one
        # task, while each check runs (bounded) in a task of its own.
        with stderr_path.open("w", encoding="utf-8") as errlog:
            async with stdio_client(params, errlog=errlog) as (read_stream, write_stream):
                async with ClientSession(
                    read_stream,
                    write_stream,
                    read_timeout_seconds=SDK_READ_TIMEOUT,
                    sampling_callback=callbacks.sampling,
                    elicitation_callback=callbacks.elicitation,
                    logging_callback=callbacks.logging,
                    list_roots_callback=callbacks.roots,
                    message_handler=callbacks.messages,
                    client_info=types.Implementation(name=CLIENT_NAME, version="1.0"),
                ) as session:
                    if not await report.check(initialize_name, check_initialize(session)):
                        return
                    for name, check in checks:
                        ran.append(name)
                        await report.check(name, check(session, callbacks))
                # Leaving stdio_client closes the proxy's stdin and waits for it to exit.
                closing = time.monotonic()
        session_ended = True
        print(f"# {label}: the session closed in {time.monotonic() - closing:.2f} s", flush=True)

    bound = CHECK_TIMEOUT * (len(checks) + 1) + PROXY_EXIT_TIMEOUT + 10
    try:
        await asyncio.wait_for(scenario(), bound)
    except Exception as error:  # noqa: BLE001 - the transport itself failed
        reason = (
            describe(error)
            if not isinstance(error, TimeoutError)
            else f"timed out after {bound:.0f} s"
        )
        report.fail(f"{label}: session opens and closes cleanly", reason)
    report.skip_rest([name for name, _ in checks if name not in ran], "the session was not usable")
    process = LAUNCHED[launched_before] if len(LAUNCHED) > launched_before else None
    await report.check(exit_name, check_exit(process, session_ended))
    if server.transport == "streamable-http":
        await report.check(
            f"{label}: the proxy ended the remote session with DELETE /mcp (200)",
            server.wait_for_count(SESSION_DELETED, deletes_before + 1),
        )
    kill_launched()
    with contextlib.suppress(OSError):
        return stderr_path.read_text(encoding="utf-8", errors="replace").splitlines()
    return []


# ---------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------


async def main(proxy_path: str) -> int:
    proxy_path = str(Path(proxy_path).resolve())
    report = Report()
    servers = {"sse": RemoteServer("sse"), "streamable-http": RemoteServer("streamable-http")}
    proxy_stderr: dict[str, list[str]] = {}
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="mcp-proxy-interop-") as tmp:
            logs = Path(tmp)
            starts = [
                report.check(
                    f"SDK {name} server starts and prints its port",
                    server.start(),
                    SERVER_START_TIMEOUT + 5,
                )
                for name, server in servers.items()
            ]
            if not all(await asyncio.gather(*starts)):
                for name, server in servers.items():
                    print_block(f"output of the SDK {name} server", server.output_lines)
                return finish(report, started)
            streamable, sse = servers["streamable-http"], servers["sse"]
            legs = [
                ("streamablehttp", "streamablehttp", streamable, "/mcp"),
                ("sse", "sse", sse, "/sse"),
                ("auto->streamablehttp", None, streamable, "/mcp"),
                ("auto->sse fallback", None, sse, "/sse"),
            ]
            for label, transport, server, path in legs:
                proxy_stderr[label] = await run_leg(
                    report, proxy_path, label, transport, server, path, logs
                )
    finally:
        kill_launched()
        for server in servers.values():
            with contextlib.suppress(Exception):
                await server.stop()
            server.kill()
    if report.failed or os.environ.get("INTEROP_SHOW_OUTPUT"):
        for label, lines in proxy_stderr.items():
            print_block(f"stderr of the proxy, leg {label}", lines)
        for name, server in servers.items():
            print_block(f"output of the SDK {name} server", server.output_lines)
    return finish(report, started)


def finish(report: Report, started: float) -> int:
    return report.finish(started, "python-sdk client-mode interop", "python-sdk-client-interop")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__.splitlines()[2], file=sys.stderr)
        sys.exit(2)
    sys.exit(asyncio.run(main(sys.argv[1])))

"""What the interoperability tests next to this file share: bounded checks and their report,
processes whose output is kept (and scanned for the line that says they listen), the
callbacks of an SDK client session, and diagnostics.

The tests import it as `_harness`: Python puts a script's own directory first on sys.path.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Awaitable
from importlib.metadata import version
from typing import Any

from mcp import ClientSession, types
from mcp.shared.context import RequestContext

# Generous bounds: these checks must pass on a loaded 2-core machine.
CHECK_TIMEOUT = 60.0
NOTIFICATION_TIMEOUT = 15.0
# How long a stopped process's output may take to reach its end.
DRAIN_TIMEOUT = 5.0

MCP_VERSION = version("mcp")


# ---------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------


class Report:
    """Runs checks one at a time, each bounded, and prints one line per check."""

    def __init__(self) -> None:
        self.passed = 0
        self.failed: list[str] = []

    async def check(self, name: str, check: Awaitable[Any], timeout: float = CHECK_TIMEOUT) -> bool:
        started = time.monotonic()
        try:
            await asyncio.wait_for(check, timeout)
        except Exception as error:  # noqa: BLE001 - any failure of a check is reported
            reason = (
                describe(error)
                if not isinstance(error, TimeoutError)
                else f"timed out after {timeout:.0f} s"
            )
            self.fail(name, reason, time.monotonic() - started)
            return False
        self.passed += 1
        print(f"PASS {name} ({time.monotonic() - started:.2f} s)", flush=True)
        return True

    def fail(self, name: str, reason: str, elapsed: float = 0.0) -> None:
        self.failed.append(name)
        print(f"FAIL {name} ({elapsed:.2f} s): {reason}", flush=True)

    def skip_rest(self, names: list[str], reason: str) -> None:
        for name in names:
            self.fail(name, f"not run: {reason}")

    def finish(self, started: float, title: str, tag: str) -> int:
        """Prints the closing lines; returns the exit status (1 if any check failed)."""
        elapsed = time.monotonic() - started
        print(f"{title}: mcp {MCP_VERSION}, {elapsed:.1f} s")
        # The last line has the plain "N passed, N failed" form that test-log readers count.
        print(f"{tag}: {self.passed} passed, {len(self.failed)} failed", flush=True)
        return 1 if self.failed else 0


def describe(error: BaseException) -> str:
    """One line for an exception, looking inside exception groups (anyio raises them)."""
    if isinstance(error, BaseExceptionGroup):
        return "; ".join(describe(inner) for inner in error.exceptions)
    text = str(error) or repr(error)
    return f"{type(error).__name__}: {text}"


def print_block(title: str, lines: list[str], last: int = 200) -> None:
    print(f"--- {title} (last {min(last, len(lines))} of {len(lines)} lines) ---", flush=True)
    for line in lines[-last:]:
        print(f"    {line[:2000]}")
    print(f"--- end of {title} ---", flush=True)


def only_text(result: types.CallToolResult) -> str:
    """The text of a tool result that must be a single text block and not an error."""
    assert not result.isError, f"tool returned an error: {result.content}"
    assert len(result.content) == 1, f"expected one content block, got {len(result.content)}"
    block = result.content[0]
    assert isinstance(block, types.TextContent), f"expected text content, got {block!r}"
    return block.text


# ---------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------


def pid_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def kill_group_and_process(pid: int) -> None:
    """SIGKILL to the process group led by `pid` (if any), then to `pid` itself."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


class WatchedProcess:
    """A process whose output (stdout and stderr together) is drained and kept in
    `output_lines` for diagnostics. A subclass's `_scan` looks at each line and calls
    `_listening.set()` when the process says it listens."""

    def __init__(self) -> None:
        self.process: asyncio.subprocess.Process | None = None
        self.output_lines: list[str] = []
        self._listening = asyncio.Event()
        self._drain: asyncio.Task[None] | None = None

    async def _start(
        self, command: list[str], timeout: float, env: dict[str, str] | None = None
    ) -> bool:
        """Starts `command` and waits up to `timeout` for its listening line; False if it
        did not come (then `output_closed` says whether the output ended first)."""
        self.process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
        )
        self._drain = asyncio.create_task(self._read_output())
        listening = asyncio.create_task(self._listening.wait())
        try:
            await asyncio.wait(
                {listening, self._drain},
                timeout=timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            listening.cancel()
        return self._listening.is_set()

    @property
    def output_closed(self) -> bool:
        return self._drain is not None and self._drain.done()

    async def _read_output(self) -> None:
        """Keeps the pipe drained (a full pipe would block the process) and scans each line."""
        assert self.process is not None and self.process.stdout is not None
        pending = b""
        while chunk := await self.process.stdout.read(65536):
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                self._scan(line.decode(errors="replace"))
        if pending:
            self._scan(pending.decode(errors="replace"))

    def _scan(self, line: str) -> None:
        self.output_lines.append(line)

    async def _stop(self, timeout: float, *, raise_if_unreaped: bool) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit code. After SIGKILL, the
        wait for the exit is bounded too: with `raise_if_unreaped` its TimeoutError is
        raised, otherwise ignored."""
        if self.process is None:
            return None
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                try:
                    await asyncio.wait_for(self.process.wait(), timeout)
                except TimeoutError:
                    if raise_if_unreaped:
                        raise
        if self._drain is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._drain, DRAIN_TIMEOUT)
        return self.process.returncode

    def kill(self) -> None:
        """Last resort: SIGKILL if it still runs."""
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()


# ---------------------------------------------------------------------------------------
# Client callbacks: what a client application would plug into ClientSession
# ---------------------------------------------------------------------------------------


class Callbacks:
    """The sampling and logging callbacks of one session, recording what they saw."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.sampling_prompts: list[str] = []
        self.log_messages: list[types.LoggingMessageNotificationParams] = []
        self._log_arrived = asyncio.Event()

    def sampling_answer(self, prompt: str) -> str:
        return f"{self.label} answers: {prompt[::-1]}"

    async def sampling(
        self, context: RequestContext[ClientSession, Any], params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        content = params.messages[0].content
        prompt = content.text if isinstance(content, types.TextContent) else repr(content)
        self.sampling_prompts.append(prompt)
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=self.sampling_answer(prompt)),
            model="interop-test-model",
            stopReason="endTurn",
        )

    async def logging(self, params: types.LoggingMessageNotificationParams) -> None:
        self.log_messages.append(params)
        self._log_arrived.set()

    async def wait_for_log(self, data: str) -> types.LoggingMessageNotificationParams:
        """The first log message carrying `data`, waiting (bounded) for it to arrive."""
        deadline = time.monotonic() + NOTIFICATION_TIMEOUT
        while True:
            self._log_arrived.clear()  # before scanning: no await between the two
            for message in self.log_messages:
                if message.data == data:
                    return message
            left = deadline - time.monotonic()
            if left <= 0:
                seen = [m.data for m in self.log_messages]
                raise AssertionError(
                    f"no log message {data!r} within {NOTIFICATION_TIMEOUT:.0f} s (seen: {seen})"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._log_arrived.wait(), left)

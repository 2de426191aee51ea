"""A remote MCP server written with the official Python SDK (FastMCP), for the client-mode
interoperability test (tests/interop/python_sdk_client_mode.py).

Usage: sdk_remote_server.py sse|streamable-http

It binds 127.0.0.1 on a free port chosen by the kernel (the socket is bound here and handed
to uvicorn, so there is no window in which another process could take the port), prints
`listening on http://127.0.0.1:PORT` on stdout, and serves one transport only:

- `sse`: the legacy HTTP+SSE transport, `GET /sse` + `POST /messages/?session_id=…`
  (a POST to /sse gets 405, which is what makes `--transport auto` fall back);
- `streamable-http`: Streamable HTTP at `/mcp`.

Tools: echo, add, progress (3 progress notifications), log (ctx.info), sample (asks the
client for sampling), elicit (asks the client for a form), large (a 1 MB string),
client_info (what the server saw of the client's initialize) and received (the messages its
session received, in arrival order). One resource (interop://greeting) and one prompt
(greet). SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from typing import Any

import uvicorn
from pydantic import BaseModel, Field

from mcp import types
from mcp.server.fastmcp import Context, FastMCP
from mcp.server.session import ServerSession

SERVER_NAME = "sdk-remote-server"
PROGRESS_STEPS = 3
LARGE_BYTES = 1_000_000

# What each session received, in the order its receive loop saw it (mcp 1.30.0 hands every
# incoming request and notification to these two ServerSession methods, one at a time, in
# arrival order): "initialize", "tools/call echo", "notifications/roots/list_changed 3" (the
# number is the notification's _meta.seq), ... The `received` tool returns its session's list.
RECEIVED: dict[int, list[str]] = {}

_received_request = ServerSession._received_request
_received_notification = ServerSession._received_notification


async def _recording_request(self: ServerSession, responder: Any) -> None:
    request = responder.request.root
    label = request.method
    if isinstance(request, types.CallToolRequest):
        label += f" {request.params.name}"
    RECEIVED.setdefault(id(self), []).append(label)
    await _received_request(self, responder)


async def _recording_notification(self: ServerSession, notification: Any) -> None:
    root = notification.root
    label = root.method
    meta = root.params.meta if root.params is not None else None
    if meta is not None and (seq := getattr(meta, "seq", None)) is not None:
        label += f" {seq}"
    RECEIVED.setdefault(id(self), []).append(label)
    await _received_notification(self, notification)


ServerSession._received_request = _recording_request
ServerSession._received_notification = _recording_notification

mcp = FastMCP(SERVER_NAME, instructions="Interop fixture of mcp-proxy.", log_level="INFO")


@mcp.tool()
def echo(message: str) -> str:
    """Returns the message unchanged."""
    return message


@mcp.tool()
def add(a: int, b: int) -> int:
    """Adds two integers."""
    return a + b


@mcp.tool()
async def progress(ctx: Context, steps: int = PROGRESS_STEPS) -> str:
    """Reports `steps` progress notifications, then returns."""
    for step in range(1, steps + 1):
        await ctx.report_progress(step, steps, f"step {step} of {steps}")
        await asyncio.sleep(0.01)
    return f"done {steps} steps"


@mcp.tool()
async def log(message: str, ctx: Context) -> str:
    """Sends `message` to the client as an info log notification."""
    await ctx.info(message)
    return "logged"


def client_declared(ctx: Context, capability: types.ClientCapabilities) -> bool:
    return ctx.session.check_client_capability(capability)


@mcp.tool()
async def sample(prompt: str, ctx: Context) -> str:
    """Asks the client to sample `prompt` and returns what it answered."""
    if not client_declared(ctx, types.ClientCapabilities(sampling=types.SamplingCapability())):
        raise ValueError("the client did not declare the sampling capability")
    result = await ctx.session.create_message(
        messages=[
            types.SamplingMessage(role="user", content=types.TextContent(type="text", text=prompt))
        ],
        max_tokens=100,
        related_request_id=ctx.request_id,
    )
    content = result.content
    text = content.text if isinstance(content, types.TextContent) else repr(content)
    return f"sampled ({result.model}): {text}"


class Profile(BaseModel):
    name: str = Field(description="Your name")
    confirm: bool = Field(description="Do you confirm?")


@mcp.tool()
async def elicit(question: str, ctx: Context) -> str:
    """Asks the client for a Profile form and returns the answer."""
    if not client_declared(
        ctx, types.ClientCapabilities(elicitation=types.ElicitationCapability())
    ):
        raise ValueError("the client did not declare the elicitation capability")
    result = await ctx.elicit(question, schema=Profile)
    if result.action == "accept":
        return f"elicited accept: name={result.data.name} confirm={result.data.confirm}"
    return f"elicited {result.action}"


@mcp.tool()
def large(size: int = LARGE_BYTES) -> str:
    """A string of `size` bytes: 0123456789 repeated."""
    return ("0123456789" * (size // 10 + 1))[:size]


@mcp.tool()
def client_info(ctx: Context) -> str:
    """What this server saw of the client's initialize request, as JSON."""
    params = ctx.session.client_params
    if params is None:
        return json.dumps(None)
    return json.dumps(
        {
            "name": params.clientInfo.name,
            "version": params.clientInfo.version,
            "protocolVersion": params.protocolVersion,
            "capabilities": params.capabilities.model_dump(exclude_none=True, mode="json"),
        }
    )


@mcp.tool()
def received(ctx: Context) -> str:
    """The messages this session received so far, in arrival order, as a JSON list."""
    return json.dumps(RECEIVED.get(id(ctx.session), []))


@mcp.resource("interop://greeting", mime_type="text/plain")
def greeting() -> str:
    """A fixed greeting."""
    return f"Hello from {SERVER_NAME}"


@mcp.prompt()
def greet(name: str) -> str:
    """Asks to greet someone."""
    return f"Say hello to {name}"


async def serve(transport: str) -> None:
    if transport == "sse":
        app = mcp.sse_app()
    elif transport == "streamable-http":
        app = mcp.streamable_http_app()
    else:
        raise SystemExit(f"unknown transport {transport!r}: use sse or streamable-http")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="info", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    # Connections made before uvicorn starts wait in the listen backlog.
    print(f"listening on http://127.0.0.1:{port} ({transport})", flush=True)
    await server.serve(sockets=[sock])


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__.splitlines()[3], file=sys.stderr)
        sys.exit(2)
    asyncio.run(serve(sys.argv[1]))

#!/usr/bin/env python3
"""The MCP client that drives mcp-proxy's client mode in the conformance suite's client scenarios.

The suite runs `sh -c "<command> <mock-server-url>"` with MCP_CONFORMANCE_SCENARIO set (and, for
the auth scenarios, MCP_CONFORMANCE_CONTEXT: JSON with client_id and client_secret or
private_key_pem). This driver starts `$MCP_PROXY_BIN [auth flags] <url>` (client mode: stdio to
the remote) and plays a desktop MCP client on its stdin/stdout: initialize, initialized, and,
if the server has tools, tools/list, then a call of every listed tool (add_numbers with a=5,
b=3; a tool named in MCP_CONFORMANCE_CONTEXT.toolCalls with the arguments given there; the
others without arguments; none in LIST_ONLY_SCENARIOS); for the scenarios in
EVERY_METHOD_SCENARIOS also every resource read and every prompt got. It answers the server's requests as a client application
would: elicitation/create is accepted with the schema's defaults (a form shown pre-filled and
submitted), sampling/createMessage gets a fixed text, roots/list an empty list, ping an empty
result.

The suite judges what reached its mock server; this driver exits 1 when the proxy misbehaves on
the stdio side (no answer in time, an error response, a crash), so that the run shows it.
Everything is bounded: every answer within ANSWER_TIMEOUT, the whole run within RUN_TIMEOUT.
Standard library only.
"""

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time

PROTOCOL_VERSION = "2025-11-25"
ANSWER_TIMEOUT = 15.0
RUN_TIMEOUT = 25.0
EXIT_GRACE = 5.0
# The flag of mcp-proxy's client mode that takes a PEM private key for the private_key_jwt
# client authentication (auth/client-credentials-jwt). Keep in step with src/cli.rs.
PRIVATE_KEY_FLAG = "--client-private-key"

TOOL_ARGUMENTS = {"add_numbers": {"a": 5, "b": 3}}
# Scenarios that check every method the client sends, not only tools: the driver lists and
# reads resources and lists and gets prompts there as well.
EVERY_METHOD_SCENARIOS = {"http-standard-headers"}
# Scenarios whose server only lists its tools (the client "should list tools", and has no call
# to make): the driver lists them and calls none.
LIST_ONLY_SCENARIOS = {"json-schema-ref-no-deref"}


def log(message):
    print(f"client-driver: {message}", file=sys.stderr, flush=True)


class Failure(Exception):
    pass


def auth_flags(context, temp_dir):
    client_id = context.get("client_id")
    if not client_id:
        return []
    flags = ["--client-id", client_id]
    if "client_secret" in context:
        flags += ["--client-secret", context["client_secret"]]
    if "private_key_pem" in context:
        key_file = os.path.join(temp_dir, "client-key.pem")
        with open(key_file, "w", encoding="utf-8") as file:
            file.write(context["private_key_pem"])
        flags += [PRIVATE_KEY_FLAG, key_file]
    return flags


def default_content(schema):
    """The form a user submits unchanged: every property that has a default, with it."""
    properties = (schema or {}).get("properties") or {}
    return {name: spec["default"] for name, spec in properties.items() if "default" in spec}


class Session:
    def __init__(self, command):
        log("starting " + " ".join(command))
        self.child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.messages = queue.Queue()
        self.next_id = 0
        self.write_lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.child.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                self.messages.put(json.loads(line))
            except ValueError:
                self.messages.put({"_invalid": line.decode("utf-8", "replace")})
        self.messages.put(None)

    def send(self, message):
        data = (json.dumps(message, separators=(",", ":")) + "\n").encode()
        with self.write_lock:
            self.child.stdin.write(data)
            self.child.stdin.flush()

    def notify(self, method, params=None):
        message = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)

    def request(self, method, params=None):
        """Sends a request and returns its result, answering the server's requests meanwhile."""
        self.next_id += 1
        request_id = self.next_id
        message = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)
        deadline = time.monotonic() + ANSWER_TIMEOUT
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failure(f"no answer to {method} within {ANSWER_TIMEOUT:.0f} s")
            try:
                incoming = self.messages.get(timeout=left)
            except queue.Empty:
                continue
            if incoming is None:
                raise Failure(f"the proxy closed its stdout while {method} was pending")
            if "_invalid" in incoming:
                raise Failure(f"the proxy wrote a line that is not JSON: {incoming['_invalid']!r}")
            if "method" in incoming:
                self.on_server_message(incoming)
            elif incoming.get("id") == request_id:
                if "error" in incoming:
                    raise Failure(f"{method} failed: {json.dumps(incoming['error'])}")
                return incoming.get("result")
            else:
                log(f"ignoring a response to an unknown id: {json.dumps(incoming)}")

    def on_server_message(self, message):
        method = message["method"]
        if "id" not in message:
            log(f"notification {method}")
            return
        params = message.get("params") or {}
        log(f"server request {method}")
        if method == "elicitation/create":
            result = {"action": "accept", "content": default_content(params.get("requestedSchema"))}
        elif method == "sampling/createMessage":
            result = {
                "role": "assistant",
                "content": {"type": "text", "text": "A response from the conformance driver"},
                "model": "conformance-driver",
                "stopReason": "endTurn",
            }
        elif method == "roots/list":
            result = {"roots": []}
        elif method == "ping":
            result = {}
        else:
            self.send({
                "jsonrpc": "2.0",
                "id": message["id"],
                "error": {"code": -32601, "message": f"Method not found: {method}"},
            })
            return
        self.send({"jsonrpc": "2.0", "id": message["id"], "result": result})

    def close(self):
        """Closes stdin (the end of the session) and waits for the proxy to exit."""
        try:
            self.child.stdin.close()
        except OSError:
            pass
        try:
            return self.child.wait(timeout=EXIT_GRACE)
        except subprocess.TimeoutExpired:
            log(f"the proxy did not exit within {EXIT_GRACE:.0f} s of stdin's end; killing it")
            self.child.kill()
            self.child.wait()
            return None


def drive(session, context):
    result = session.request("initialize", {
        "protocolVersion": PROTOCOL_VERSION,
        "capabilities": {"sampling": {}, "elicitation": {}, "roots": {}},
        "clientInfo": {"name": "mcp-proxy-conformance-driver", "version": "1.0.0"},
    })
    log(f"initialized: protocol {result.get('protocolVersion')}")
    session.notify("notifications/initialized")
    if "tools" not in (result.get("capabilities") or {}):
        log("the server has no tools capability: done")
        return
    capabilities = result.get("capabilities") or {}
    tools = session.request("tools/list", {}).get("tools") or []
    log("tools: " + ", ".join(tool.get("name", "?") for tool in tools))
    if os.environ.get("MCP_CONFORMANCE_SCENARIO") in LIST_ONLY_SCENARIOS:
        return
    # The scenario's own arguments (MCP_CONFORMANCE_CONTEXT.toolCalls) win over ours.
    arguments = dict(TOOL_ARGUMENTS)
    for call in context.get("toolCalls") or []:
        arguments[call.get("name")] = call.get("arguments") or {}
    for tool in tools:
        name = tool.get("name")
        result = session.request("tools/call", {
            "name": name, "arguments": arguments.get(name, {}),
        })
        texts = [block.get("text", "") for block in result.get("content") or []]
        log(f"{name}: {'error ' if result.get('isError') else ''}{' '.join(texts)[:200]}")
    if os.environ.get("MCP_CONFORMANCE_SCENARIO") in EVERY_METHOD_SCENARIOS:
        exercise_resources_and_prompts(session, capabilities)


def exercise_resources_and_prompts(session, capabilities):
    """resources/list and a read of each, prompts/list and a get of each: the methods whose
    headers a scenario checks."""
    if "resources" in capabilities:
        resources = session.request("resources/list", {}).get("resources") or []
        for resource in resources:
            session.request("resources/read", {"uri": resource.get("uri")})
        log(f"read {len(resources)} resources")
    if "prompts" in capabilities:
        prompts = session.request("prompts/list", {}).get("prompts") or []
        for prompt in prompts:
            session.request("prompts/get", {"name": prompt.get("name"), "arguments": {}})
        log(f"got {len(prompts)} prompts")


def main():
    if len(sys.argv) < 2:
        print("usage: client_driver.py URL (run by the conformance suite)", file=sys.stderr)
        return 2
    url = sys.argv[-1]
    proxy = os.environ.get("MCP_PROXY_BIN")
    if not proxy:
        log("MCP_PROXY_BIN is not set")
        return 2
    context = json.loads(os.environ.get("MCP_CONFORMANCE_CONTEXT") or "{}")
    log(f"scenario {os.environ.get('MCP_CONFORMANCE_SCENARIO', '?')} against {url}")
    with tempfile.TemporaryDirectory() as temp_dir:
        session = Session([proxy, *auth_flags(context, temp_dir), url])
        watchdog = threading.Timer(RUN_TIMEOUT, session.child.kill)
        watchdog.start()
        status = 0
        try:
            drive(session, context)
        except (Failure, OSError) as error:
            log(f"FAILED: {error}")
            status = 1
        finally:
            code = session.close()
            watchdog.cancel()
        log(f"the proxy exited with {code}")
        return status


if __name__ == "__main__":
    sys.exit(main())

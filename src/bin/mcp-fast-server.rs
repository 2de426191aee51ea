//! `mcp-fast-server`: the smallest stdio MCP server that the benchmarks can put behind a proxy.
//!
//! It exists so that `scripts/bench` measures the proxy, not the child: one thread, one line
//! read and one line written per request, the envelope parsed as borrowed slices (the id is
//! echoed as its raw bytes), and the output buffered and flushed once per response.
//! It answers `initialize`, `ping`, `tools/list` (one tool, `echo`) and `tools/call` of `echo`
//! (the `message` argument back, or "ok"); any other request gets "method not found", and
//! notifications and responses are read and dropped. It exits 0 when stdin closes.
//! Not a fixture for behaviour tests: `mcp-example-server` is that.

use std::io::{self, BufRead, BufWriter, Write};

use serde::Deserialize;
use serde_json::value::RawValue;

const SUPPORTED_PROTOCOL_VERSIONS: [&str; 4] =
    ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
const LATEST_PROTOCOL_VERSION: &str = "2025-11-25";

/// What routing needs of a message; `params` stays raw and is parsed only by the method that
/// reads it.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    method: Option<&'a str>,
    #[serde(borrow)]
    params: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct InitializeParams {
    #[serde(rename = "protocolVersion")]
    protocol_version: Option<String>,
}

#[derive(Deserialize)]
struct CallParams {
    name: Option<String>,
    arguments: Option<EchoArguments>,
}

#[derive(Deserialize)]
struct EchoArguments {
    message: Option<String>,
}

const TOOLS: &str = r#"{"tools":[{"name":"echo","description":"Returns its message.","inputSchema":{"type":"object","properties":{"message":{"type":"string"}}}}]}"#;

fn main() {
    let stdin = io::stdin();
    let mut input = stdin.lock();
    let mut out = BufWriter::with_capacity(64 * 1024, io::stdout().lock());
    let mut line = String::new();
    loop {
        line.clear();
        match input.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) => {
                eprintln!("mcp-fast-server: reading stdin: {e}");
                std::process::exit(1);
            }
        }
        let text = line.trim_end();
        if text.is_empty() {
            continue;
        }
        let answered = match serde_json::from_str::<Envelope>(text) {
            Ok(message) => answer(&mut out, &message),
            Err(_) => write_error(&mut out, "null", -32700, "parse error"),
        };
        // A closed stdout means the proxy is gone: nothing left to serve.
        if answered.and_then(|()| out.flush()).is_err() {
            return;
        }
    }
}

/// Writes the response to one message, if it is a request.
fn answer(out: &mut impl Write, message: &Envelope) -> io::Result<()> {
    let (Some(id), Some(method)) = (message.id, message.method) else {
        return Ok(()); // a notification or a response: nothing to answer
    };
    let id = id.get();
    let params = message.params.map_or("{}", RawValue::get);
    match method {
        "initialize" => {
            let requested = serde_json::from_str::<InitializeParams>(params)
                .ok()
                .and_then(|p| p.protocol_version);
            let version = match requested.as_deref() {
                Some(v) if SUPPORTED_PROTOCOL_VERSIONS.contains(&v) => v,
                _ => LATEST_PROTOCOL_VERSION,
            };
            write!(
                out,
                r#"{{"jsonrpc":"2.0","id":{id},"result":{{"protocolVersion":"{version}","capabilities":{{"tools":{{}}}},"serverInfo":{{"name":"mcp-fast-server","version":"{}"}}}}}}"#,
                env!("CARGO_PKG_VERSION")
            )?;
            out.write_all(b"\n")
        }
        "ping" => writeln!(out, r#"{{"jsonrpc":"2.0","id":{id},"result":{{}}}}"#),
        "tools/list" => writeln!(out, r#"{{"jsonrpc":"2.0","id":{id},"result":{TOOLS}}}"#),
        "tools/call" => {
            let Ok(call) = serde_json::from_str::<CallParams>(params) else {
                return write_error(out, id, -32602, "invalid params");
            };
            if call.name.as_deref() != Some("echo") {
                return write_error(out, id, -32602, "unknown tool");
            }
            let message = call.arguments.and_then(|a| a.message);
            let text = serde_json::to_string(message.as_deref().unwrap_or("ok"))
                .expect("a string always serialises");
            writeln!(
                out,
                r#"{{"jsonrpc":"2.0","id":{id},"result":{{"content":[{{"type":"text","text":{text}}}]}}}}"#
            )
        }
        _ => write_error(out, id, -32601, "method not found"),
    }
}

fn write_error(out: &mut impl Write, id: &str, code: i64, message: &str) -> io::Result<()> {
    writeln!(
        out,
        r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":{code},"message":"{message}"}}}}"#
    )
}

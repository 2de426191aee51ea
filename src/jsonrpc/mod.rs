//! JSON-RPC 2.0 as MCP uses it: the routing envelope, and the messages the proxy writes itself.

pub mod envelope;
pub mod error;
pub mod meta;
pub mod tool_headers;

pub use envelope::{Envelope, Kind};

/// The protocol versions of the session era (2024-11-05 … 2025-11-25), oldest first.
pub const SUPPORTED_VERSIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

/// The newest version we speak; offered to children and to clients asking for an unknown one.
pub const LATEST_VERSION: &str = "2025-11-25";

/// A notification as one line of JSON.
pub fn notification(method: &str, params: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","method":"{method}","params":{params}}}"#)
}

/// A request as one line of JSON. `id` is raw JSON text.
pub fn request(id: &str, method: &str, params: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{params}}}"#)
}

/// A successful response. `id` and `result` are raw JSON text.
pub fn result(id: &str, result: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{result}}}"#)
}

/// A JSON string literal for `s`.
pub fn quote(s: &str) -> String {
    serde_json::to_string(s).expect("a string always serialises")
}

//! The JSON-RPC errors the proxy answers with itself, and their codes.

use super::quote;

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;
/// Implementation-defined server error range (-32000 to -32099): the server behind us is gone.
pub const SERVER_UNAVAILABLE: i64 = -32000;
/// The request took longer than the proxy's `--request-timeout` (the MCP SDKs' code).
pub const REQUEST_TIMEOUT: i64 = -32001;
/// The request was cancelled (the LSP code, used by MCP SDKs).
pub const REQUEST_CANCELLED: i64 = -32800;
/// 2026-07-28: a header disagrees with the body, or a required one is missing.
pub const HEADER_MISMATCH: i64 = -32020;
/// 2026-07-28: the request needs a client capability the request did not declare.
pub const MISSING_REQUIRED_CLIENT_CAPABILITY: i64 = -32021;
/// 2026-07-28: the request's protocol version is not one the server speaks.
pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;

/// An error response. `id` is raw JSON text (`null` when the request's id is unknown).
pub fn response(id: &str, code: i64, message: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":{code},"message":{}}}}}"#,
        quote(message)
    )
}

/// An error response with `data` (raw JSON text).
pub fn response_with_data(id: &str, code: i64, message: &str, data: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":{code},"message":{},"data":{data}}}}}"#,
        quote(message)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_response_is_valid_json() {
        let text = response("\"a\"", INVALID_REQUEST, "bad \"thing\"\n");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["id"], "a");
        assert_eq!(v["error"]["code"], -32600);
        assert_eq!(v["error"]["message"], "bad \"thing\"\n");
    }

    #[test]
    fn error_response_with_data_is_valid_json() {
        let text = response_with_data("7", HEADER_MISMATCH, "m\"", r#"{"k":[1]}"#);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["error"]["data"]["k"][0], 1);
        assert_eq!(v["error"]["message"], "m\"");
    }
}

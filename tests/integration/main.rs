//! Integration tests: the real `mcp-proxy` binary, the real example server as its child,
//! real HTTP on 127.0.0.1.

mod support;

mod bad_input;
mod cli;
mod client_mode;
mod layout;
mod lifecycle;
mod limits;
mod modern;
mod named;
mod security;
mod server_sse;
mod server_streamable;
mod tenants;

//! Server-Sent Events: the wire format of `/sse` streams and of Streamable HTTP SSE replies.

pub mod encode;
pub mod parse;

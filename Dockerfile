# syntax=docker/dockerfile:1
# mcp-proxy in an empty image: one static executable (musl libc), nothing else; no shell, no
# libraries, no CA files (client mode's rustls carries Mozilla's roots).
#
# Docker is not available on this project's machines, so no script and no CI builds or runs this
# file. What it relies on is checked without Docker by scripts/static-smoke: a static build (glibc,
# +crt-static) serves MCP from an empty root directory with nothing but itself and a static stdio
# server. Release pipelines build with the musl target, as here.
#
#   docker build -t mcp-proxy .
#   docker run -i --rm mcp-proxy https://example.io/mcp          # client mode (stdio)
#
# Server mode needs its stdio server inside the image, statically linked too (the image has no
# libc, no Python, no Node.js), for example:
#
#   FROM mcp-proxy
#   COPY --from=your-build /your-server /server
#   CMD ["--host", "0.0.0.0", "--port", "8080", "--", "/server"]
#
#   docker run --rm -p 8080:8080 -e MCP_PROXY_AUTH_TOKEN=... your-image
#
# Bound to 0.0.0.0 the loopback Host check is off
# (it guards loopback binds against DNS rebinding): require a token, and allow browser origins
# with --allow-origin only where needed.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-alpine AS build
# gcc is in the image; ring (TLS) also needs musl's C runtime files and headers.
RUN apk add --no-cache musl-dev
WORKDIR /src
# Only what the build reads: the manifest and lock, the patched tiny_http, the sources.
COPY Cargo.toml Cargo.lock ./
COPY vendor vendor
COPY src src
RUN target="$(uname -m)-unknown-linux-musl" \
 && cargo build --release --locked --target "$target" --bin mcp-proxy \
 && mkdir /out \
 && cp "target/$target/release/mcp-proxy" /out/mcp-proxy

FROM scratch
COPY --from=build /out/mcp-proxy /mcp-proxy
# Logs go to stderr; stdout is the protocol channel in client mode.
ENTRYPOINT ["/mcp-proxy"]
EXPOSE 8080

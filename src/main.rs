//! mcp-proxy: a Model Context Protocol transport bridge.
//! Wiring only: parse the command line, set up logging, resolve settings, run a mode, exit.

#![forbid(unsafe_op_in_unsafe_fn)]

mod child;
mod cli;
mod client;
mod config;
mod encoding;
mod error;
mod framing;
mod jsonrpc;
mod limits;
mod logging;
mod memory;
mod mux;
mod random;
mod server;
mod shutdown;
mod sse;

use std::process::ExitCode;

use cli::Parsed;
use config::Mode;
use error::Error;

fn main() -> ExitCode {
    // Before any thread exists, so every thread inherits the mask and only `signals` sees them.
    shutdown::block_signals();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if matches!(e, Error::Usage(_) | Error::NoServers) {
                eprintln!("{}", cli::USAGE);
            }
            eprintln!("mcp-proxy: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn run() -> Result<(), Error> {
    let raw = match cli::parse_env()? {
        Parsed::Help => {
            println!("{}\n{}", cli::USAGE, cli::HELP);
            return Ok(());
        }
        Parsed::Version => {
            println!("mcp-proxy {}", env!("CARGO_PKG_VERSION"));
            return Ok(());
        }
        Parsed::Run(raw) => raw,
    };
    logging::init(config::log_level(&raw)?);
    let settings = config::resolve(*raw)?;
    log::set_max_level(settings.log_level);
    let shutdown = shutdown::Shutdown::new();
    match settings.mode {
        Mode::Server(server) => {
            shutdown::watch_signals(shutdown.clone(), |sig| {
                std::process::exit(128 + sig);
            })
            .map_err(|e| Error::io("starting the signal thread", e))?;
            server::run(server, shutdown)
        }
        Mode::Client(client) => {
            // The first signal ends client mode as stdin EOF does (DELETE, exit 0).
            shutdown::watch_signals(shutdown.clone(), |sig| {
                std::process::exit(128 + sig);
            })
            .map_err(|e| Error::io("starting the signal thread", e))?;
            client::run(client, shutdown)
        }
    }
}

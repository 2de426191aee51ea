//! What a server's routes lead to: its one shared child, or, for a server with `headerToEnv`,
//! the pool of per-tenant children chosen by the request's mapped headers.

use std::sync::Arc;
use std::time::Duration;

use tiny_http::Request;

use super::respond::request_header;
use crate::config::ServerSpec;
use crate::mux::{Mux, MuxOptions, Pool, Refused, Status};

pub enum Backend {
    Shared(Arc<Mux>),
    PerTenant(Box<Pool>),
}

impl Backend {
    pub fn new(spec: ServerSpec, options: MuxOptions, max_tenants: usize) -> Backend {
        if spec.header_to_env.is_empty() {
            let mux = Mux::new(spec, options);
            mux.start();
            Backend::Shared(mux)
        } else {
            Backend::PerTenant(Box::new(Pool::new(spec, options, max_tenants)))
        }
    }

    pub fn label(&self) -> &str {
        match self {
            Backend::Shared(mux) => &mux.label,
            Backend::PerTenant(pool) => &pool.label,
        }
    }

    /// The child that serves this request.
    pub fn mux_for(&self, rq: &Request) -> Result<Arc<Mux>, Refused> {
        match self {
            Backend::Shared(mux) => Ok(mux.clone()),
            Backend::PerTenant(pool) => {
                let values = pool
                    .headers()
                    .map(|h| request_header(rq, h).map(str::to_string))
                    .collect();
                pool.get(values)
            }
        }
    }

    /// The server's state in one word: its child's; for tenants, `running` when every
    /// tenant's child runs (or none is started yet), else `degraded`.
    pub fn state(&self) -> &'static str {
        match self {
            Backend::Shared(mux) => mux.status().name(),
            Backend::PerTenant(pool) => {
                let tenants = pool.tenants();
                if tenants
                    .iter()
                    .all(|(_, mux)| mux.status() == Status::Running)
                {
                    "running"
                } else {
                    "degraded"
                }
            }
        }
    }

    /// Every child now running for this server, with the name `/status` shows for it.
    pub fn children(&self) -> Vec<(Option<u64>, Arc<Mux>)> {
        match self {
            Backend::Shared(mux) => vec![(None, mux.clone())],
            Backend::PerTenant(pool) => pool
                .tenants()
                .into_iter()
                .map(|(n, mux)| (Some(n), mux))
                .collect(),
        }
    }

    pub fn reap(&self, session_idle: Option<Duration>, request_timeout: Option<Duration>) {
        match self {
            Backend::Shared(mux) => mux.reap(session_idle, request_timeout),
            Backend::PerTenant(pool) => pool.reap(
                crate::limits::TENANT_IDLE_TIMEOUT,
                session_idle,
                request_timeout,
            ),
        }
    }

    pub fn stop(&self) {
        match self {
            Backend::Shared(mux) => mux.stop(),
            Backend::PerTenant(pool) => pool.stop(),
        }
    }
}

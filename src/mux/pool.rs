//! Per-tenant children for a server with `headerToEnv`: each distinct set of mapped request
//! header values gets its own child (a [`Mux`] of its own), so one user's token never serves
//! another user's call. The values are the key of a hash map and are held only in that key
//! and in the child's environment; they are never logged, and `/status` names tenants by a
//! number. The pool is bounded: a new tenant evicts the least recently used idle one when
//! full, or is refused; a tenant without sessions for a while is stopped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use log::{info, warn};

use super::{Mux, MuxOptions, Refused};
use crate::config::ServerSpec;
use crate::logging::Secret;

/// The mapped header values of one tenant, in `headerToEnv` order (`None`: header absent).
type TenantKey = Secret<Vec<Option<String>>>;

struct Tenant {
    number: u64,
    mux: Arc<Mux>,
    last_used: Instant,
}

pub struct Pool {
    pub label: String,
    spec: ServerSpec,
    options: MuxOptions,
    max: usize,
    tenants: Mutex<PoolState>,
}

#[derive(Default)]
struct PoolState {
    tenants: HashMap<TenantKey, Tenant>,
    next_number: u64,
}

impl Pool {
    pub fn new(spec: ServerSpec, options: MuxOptions, max: usize) -> Pool {
        Pool {
            label: spec.label().to_string(),
            spec,
            options,
            max,
            tenants: Mutex::new(PoolState::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.tenants.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The request headers whose values select a tenant, in order.
    pub fn headers(&self) -> impl Iterator<Item = &str> {
        self.spec.header_to_env.iter().map(|(h, _)| h.as_str())
    }

    /// The child serving these header values: an existing one, or a new one started now.
    pub fn get(&self, values: Vec<Option<String>>) -> Result<Arc<Mux>, Refused> {
        let key = Secret(values);
        let mut evicted = None;
        let mux = {
            let mut state = self.lock();
            if let Some(tenant) = state.tenants.get_mut(&key) {
                tenant.last_used = Instant::now();
                return Ok(tenant.mux.clone());
            }
            if state.tenants.len() >= self.max {
                evicted = Some(self.evict_one(&mut state)?);
            }
            state.next_number += 1;
            let number = state.next_number;
            let mux = Mux::new(self.tenant_spec(number, key.expose()), self.options);
            mux.start();
            info!(
                "server {:?}: tenant {number} started ({} of at most {})",
                self.label,
                state.tenants.len() + 1,
                self.max
            );
            state.tenants.insert(
                key,
                Tenant {
                    number,
                    mux: mux.clone(),
                    last_used: Instant::now(),
                },
            );
            mux
        };
        if let Some(old) = evicted {
            stop_in_background(old);
        }
        Ok(mux)
    }

    /// Removes the least recently used tenant with no sessions and nothing in flight.
    fn evict_one(&self, state: &mut PoolState) -> Result<Arc<Mux>, Refused> {
        let idle = state
            .tenants
            .iter()
            .filter(|(_, t)| t.mux.session_count() == 0 && t.mux.in_flight() == 0)
            .min_by_key(|(_, t)| t.last_used)
            .map(|(k, t)| (k.clone(), t.number));
        let Some((key, number)) = idle else {
            warn!(
                "server {:?}: refused a new tenant: all {} children are busy (--max-tenants)",
                self.label, self.max
            );
            return Err(Refused::TooManySessions);
        };
        info!(
            "server {:?}: tenant {number} evicted to make room",
            self.label
        );
        Ok(state.tenants.remove(&key).expect("found above").mux)
    }

    fn tenant_spec(&self, number: u64, values: &[Option<String>]) -> ServerSpec {
        let mut spec = self.spec.clone();
        spec.name = Some(format!("{}#{number}", self.label));
        for ((_, var), value) in self.spec.header_to_env.iter().zip(values) {
            if let Some(value) = value {
                spec.env.retain(|(k, _)| k != var);
                spec.env.push((var.clone(), value.clone()));
            }
        }
        spec
    }

    /// Runs each tenant's timeouts, and stops tenants without sessions for `tenant_idle`.
    pub fn reap(
        &self,
        tenant_idle: Duration,
        session_idle: Option<Duration>,
        request_timeout: Option<Duration>,
    ) {
        let now = Instant::now();
        let mut stopped = Vec::new();
        let muxes: Vec<Arc<Mux>> = {
            let mut state = self.lock();
            for tenant in state.tenants.values_mut() {
                if tenant.mux.session_count() > 0 || tenant.mux.in_flight() > 0 {
                    tenant.last_used = now;
                }
            }
            let label = &self.label;
            state.tenants.retain(|_, t| {
                let keep = now.duration_since(t.last_used) < tenant_idle;
                if !keep {
                    info!("server {label:?}: tenant {} idle; stopping it", t.number);
                    stopped.push(t.mux.clone());
                }
                keep
            });
            state.tenants.values().map(|t| t.mux.clone()).collect()
        };
        for mux in muxes {
            mux.reap(session_idle, request_timeout);
        }
        for mux in stopped {
            stop_in_background(mux);
        }
    }

    /// Every tenant's number and child, for `/status` and shutdown.
    pub fn tenants(&self) -> Vec<(u64, Arc<Mux>)> {
        let mut all: Vec<_> = self
            .lock()
            .tenants
            .values()
            .map(|t| (t.number, t.mux.clone()))
            .collect();
        all.sort_by_key(|(n, _)| *n);
        all
    }

    pub fn stop(&self) {
        let all: Vec<Arc<Mux>> = self.lock().tenants.drain().map(|(_, t)| t.mux).collect();
        crate::shutdown::stop_all(&all, |mux| mux.stop());
    }
}

/// Stopping takes up to two grace periods; the request that caused it should not wait.
fn stop_in_background(mux: Arc<Mux>) {
    let spawned = std::thread::Builder::new().name("stop".into()).spawn({
        let mux = mux.clone();
        move || mux.stop()
    });
    if spawned.is_err() {
        mux.stop();
    }
}

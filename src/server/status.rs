//! `GET /status` and `GET /health`. Status has the Python tool's keys (`api_last_activity`, `active_sse_connections`,
//! `server_instances` name → state) plus a `servers` object with what each child is doing
//! (pid, restarts, last exit, sessions, requests in flight, last error).
//! Read-only.

use std::sync::atomic::Ordering;

use serde_json::{Map, Value, json};
use tiny_http::{Method, Request};

use super::backend::Backend;
use super::respond::{self, Extra};
use super::{App, method_not_allowed};
use crate::mux::Mux;

pub fn handle(app: &App, rq: Request, extra: &Extra) {
    if !matches!(rq.method(), Method::Get | Method::Head) {
        return method_not_allowed(rq, "GET, HEAD", extra);
    }
    respond::json(rq, 200, &body(app).to_string(), extra);
}

fn body(app: &App) -> Value {
    let mut instances = Map::new();
    let mut servers = Map::new();
    for backend in &app.servers {
        let label = backend.label().to_string();
        let state = backend.state();
        let detail = match backend {
            Backend::Shared(mux) => child(mux),
            Backend::PerTenant(_) => {
                // Tenants are named by number only: their header values are secrets.
                let tenants: Vec<Value> = backend
                    .children()
                    .into_iter()
                    .map(|(n, mux)| {
                        let mut v = child(&mux);
                        v["tenant"] = json!(n);
                        v
                    })
                    .collect();
                json!({"state": state, "tenants": tenants})
            }
        };
        instances.insert(label.clone(), json!(state));
        servers.insert(label, detail);
    }
    json!({
        "api_last_activity": iso8601(app.last_activity.load(Ordering::Relaxed)),
        "active_sse_connections": app.active_sse.load(Ordering::Relaxed),
        "server_instances": instances,
        "servers": servers,
    })
}

/// What one child is doing.
fn child(mux: &Mux) -> Value {
    let status = mux.status();
    let health = mux.health();
    json!({
        "state": status.name(),
        "pid": mux.pid(),
        "restarts": health.restarts,
        "last_exit": health.last_exit,
        "last_error": health.last_error,
        "sessions": mux.session_count(),
        "in_flight": mux.in_flight(),
    })
}

/// `GET /health`: 200 when every child is running, 503 otherwise (for supervisors and load
/// balancers); the body names each server's state.
pub fn health(app: &App, rq: Request, extra: &Extra) {
    if !matches!(rq.method(), Method::Get | Method::Head) {
        return method_not_allowed(rq, "GET, HEAD", extra);
    }
    let mut servers = Map::new();
    let mut healthy = true;
    for backend in &app.servers {
        let state = backend.state();
        healthy &= state == "running";
        servers.insert(backend.label().to_string(), json!(state));
    }
    let body = json!({"status": if healthy { "ok" } else { "unavailable" }, "servers": servers});
    respond::json(
        rq,
        if healthy { 200 } else { 503 },
        &body.to_string(),
        extra,
    );
}

/// `2026-11-25T15:42:18.123+00:00` from milliseconds since the epoch (UTC, as Python's
/// `datetime.isoformat()` writes it).
pub fn iso8601(millis: u64) -> String {
    let secs = millis / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}+00:00",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        millis % 1000
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000+00:00");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000+00:00");
        assert_eq!(iso8601(1_795_621_338_123), "2026-11-25T15:42:18.123+00:00");
    }
}

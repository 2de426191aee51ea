//! The life of a server's child, run by one `supervise` thread per server:
//! 1. spawn the child (from this long-lived thread, so its parent-death signal fires only
//!    when the proxy itself dies) and initialize it, bounded by `CHILD_INIT_TIMEOUT`;
//! 2. serve until it exits; every request in flight then gets a JSON-RPC error at once;
//! 3. wait (exponential backoff, damped: the delay grows while the child keeps failing and
//!    resets once it ran for `CHILD_STABLE_AFTER`), spawn and initialize a new child, restore
//!    the subscriptions and the log level, and tell every session its lists may have changed;
//! 4. on stop: close the child's stdin, SIGTERM, SIGKILL (the stdio shutdown sequence).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use log::{debug, error, info, warn};
use serde_json::Value;

use super::route::deliver_to_session;
use super::stream::Outbound;
use super::{ChildEvents, InitCache, Mux, Pending, Refused, Status, modern_child};
use crate::child::{ChildInput, ChildProcess};
use crate::jsonrpc::{self, error as rpc};
use crate::limits;

/// What the supervisor waits for.
pub enum Event {
    /// The child of this generation exited (how).
    Exited(u64, String),
    Stop,
}

impl Mux {
    /// Starts the `supervise` thread; returns at once.
    pub fn start(self: &Arc<Self>) {
        let taken = self
            .events_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let Some(events) = taken else {
            return; // already started
        };
        let mux = self.clone();
        let spawned = std::thread::Builder::new()
            .name("supervise".into())
            .spawn(move || mux.supervise(&events));
        match spawned {
            Ok(handle) => *self.supervisor.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle),
            Err(e) => self.set_status(Status::Failed(format!("cannot start a thread: {e}"))),
        }
    }

    /// Stops the child for good and waits for its supervisor (at most two grace periods).
    pub fn stop(&self) {
        // The queue is tiny and only the supervisor reads it; if it is full, the supervisor
        // is already busy stopping.
        let _ = self.events.try_send(Event::Stop);
        let handle = self
            .supervisor
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(handle) = handle {
            let _ = handle.join(); // a panic there was logged by the panic hook already.
        }
    }

    /// Waits (at most `timeout`) while the child is starting or restarting soon; `Ok` when it
    /// serves. A child that failed, or whose next restart is further off, is refused at once.
    pub fn wait_ready(&self, timeout: Duration) -> Result<(), Refused> {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        loop {
            let waiting = match &state.status {
                Status::Starting => true,
                Status::Restarting(_) => state.health.retry_at.is_none_or(|at| at < deadline),
                _ => false,
            };
            let now = Instant::now();
            if !waiting || now >= deadline {
                break;
            }
            state = self
                .status_changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        match &state.status {
            Status::Running => Ok(()),
            Status::Starting => Err(Refused::Unavailable("still starting".into())),
            Status::Restarting(why) => Err(Refused::Unavailable(format!("restarting: {why}"))),
            Status::Failed(why) => Err(Refused::Unavailable(why.clone())),
            Status::Stopped => Err(Refused::Unavailable("stopped".into())),
        }
    }

    pub(super) fn check_running(&self) -> Result<(), Refused> {
        self.running_sender(&self.lock()).map(|_| ())
    }

    fn set_status(&self, status: Status) {
        self.lock().status = status;
        self.status_changed.notify_all();
    }

    fn supervise(self: Arc<Self>, events: &Receiver<Event>) {
        let mut first = true;
        loop {
            let started = Instant::now();
            match self.start_child(first, events) {
                Ok(child) => {
                    first = false;
                    match self.wait_for_exit(events) {
                        Some(exit) => self.record_exit(&exit, started.elapsed()),
                        None => return self.shut_down(Some(&child)),
                    }
                }
                Err(StartError::Stopped(child)) => return self.shut_down(child.as_deref()),
                Err(StartError::Failed(why, child)) => {
                    if let Some(child) = child {
                        self.stop_child(&child);
                    }
                    self.record_failure(why);
                }
            }
            if !self.back_off(events) {
                return self.shut_down(None);
            }
        }
    }

    /// Blocks until the current child exits (`Some(how)`) or a stop is asked (`None`).
    fn wait_for_exit(&self, events: &Receiver<Event>) -> Option<String> {
        let current = self.generation.load(Ordering::Acquire);
        loop {
            match events.recv() {
                Ok(Event::Exited(generation, exit)) if generation == current => return Some(exit),
                Ok(Event::Exited(..)) => continue, // an earlier child, already handled
                Ok(Event::Stop) | Err(_) => return None,
            }
        }
    }

    fn record_exit(&self, exit: &str, ran: Duration) {
        let mut state = self.lock();
        let health = &mut state.health;
        if ran >= limits::CHILD_STABLE_AFTER {
            health.consecutive_failures = 0;
        }
        health.consecutive_failures += 1;
        health.restarts += 1;
        health.last_exit = Some(exit.to_string());
        health.last_error = Some(format!("exited ({exit})"));
        state.status = Status::Restarting(format!("exited ({exit})"));
        drop(state);
        self.status_changed.notify_all();
    }

    fn record_failure(&self, why: String) {
        error!("server {:?}: {why}", self.label);
        let mut state = self.lock();
        state.health.consecutive_failures += 1;
        state.health.last_error = Some(why.clone());
        state.status = Status::Failed(why);
        drop(state);
        self.status_changed.notify_all();
    }

    /// Waits before the next start; false when a stop was asked meanwhile.
    fn back_off(&self, events: &Receiver<Event>) -> bool {
        let failures = self.lock().health.consecutive_failures;
        let delay = backoff_delay(failures);
        let restart_number = self.lock().health.restarts;
        if delay >= limits::CHILD_RESTART_MAX_DELAY {
            error!(
                "server {:?}: crash loop ({failures} failures in a row); next try in {} s",
                self.label,
                delay.as_secs()
            );
        } else {
            warn!(
                "server {:?}: restarting in {} ms (restart {restart_number}, {failures} failure(s) in a row)",
                self.label,
                delay.as_millis()
            );
        }
        self.lock().health.retry_at = Some(Instant::now() + delay);
        let deadline = Instant::now() + delay;
        loop {
            match events.recv_deadline(deadline) {
                Ok(Event::Exited(..)) => continue, // a child we already stopped
                Ok(Event::Stop) | Err(RecvTimeoutError::Disconnected) => return false,
                Err(RecvTimeoutError::Timeout) => break,
            }
        }
        self.lock().health.retry_at = None;
        true
    }

    /// Spawns and initializes a child. On failure, returns the reason and the child, if one
    /// was spawned, for the caller to stop.
    fn start_child(
        self: &Arc<Self>,
        first: bool,
        events: &Receiver<Event>,
    ) -> Result<Arc<ChildProcess>, StartError> {
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        let sink = ChildEvents {
            mux: self.clone(),
            generation,
        };
        let (child, to_child) = ChildProcess::spawn(
            &self.spec,
            &self.label,
            self.options.max_message_bytes,
            sink,
        )
        .map_err(|e| {
            StartError::Failed(format!("cannot start {:?}: {e}", self.spec.command), None)
        })?;
        {
            let mut state = self.lock();
            state.child = Some(child.clone());
            state.to_child = Some(to_child.clone());
        }
        let cache = match self.handshake(&to_child, &child, events) {
            Ok(cache) => cache,
            Err(None) => return Err(StartError::Stopped(Some(child))),
            Err(Some(why)) => return Err(StartError::Failed(why, Some(child))),
        };
        info!(
            "server {:?}: initialized (protocol {}, pid {})",
            self.label,
            cache
                .result
                .get("protocolVersion")
                .and_then(Value::as_str)
                .unwrap_or("?"),
            child.pid
        );
        let cache = Arc::new(cache);
        {
            let mut state = self.lock();
            state.init = Some(cache.clone());
            state.tool_headers = None;
            state.status = Status::Running;
            state.health.last_error = None;
        }
        self.status_changed.notify_all();
        if cache.modern {
            // Change notifications of a 2026-07-28 child come on a listen stream of ours.
            self.lock().listen_id = None;
            self.renew_listen();
        }
        if !first {
            self.after_restart(&cache);
        }
        Ok(child)
    }

    /// Learns what the child is and caches it: a 2026-07-28 child answers `server/discover`
    /// (asked first, as the spec's stdio backward-compatibility rule says); any other answer,
    /// or none within a short wait, means a child of the session era, which gets our
    /// `initialize` and `notifications/initialized`. The era found is kept for restarts.
    /// `Err(None)`: a stop was asked meanwhile.
    fn handshake(
        &self,
        to_child: &ChildInput,
        child: &ChildProcess,
        events: &Receiver<Event>,
    ) -> Result<InitCache, Option<String>> {
        if self.lock().child_modern != Some(false) {
            let params = modern_child::discover_params();
            let answer = self.ask_during_handshake(
                to_child,
                events,
                "server/discover",
                &params,
                limits::CHILD_DISCOVER_TIMEOUT,
            );
            match answer {
                Answer::Response(response) => {
                    if let Some(cache) = modern_child::cache_from_discover(&response) {
                        self.lock().child_modern = Some(true);
                        return Ok(cache);
                    }
                    debug!(
                        "server {:?}: not a 2026-07-28 server; initializing",
                        self.label
                    );
                }
                Answer::TimedOut => {
                    debug!(
                        "server {:?}: no answer to server/discover; initializing",
                        self.label
                    )
                }
                Answer::Stop => return Err(None),
                Answer::Exited => return Err(Some(self.exited_during("server/discover", child))),
            }
            self.lock().child_modern = Some(false);
        }
        let params = format!(
            r#"{{"protocolVersion":"{}","capabilities":{{"roots":{{"listChanged":true}},"sampling":{{}},"elicitation":{{}}}},"clientInfo":{{"name":"mcp-proxy","version":"{}"}}}}"#,
            jsonrpc::LATEST_VERSION,
            env!("CARGO_PKG_VERSION")
        );
        let answer = self.ask_during_handshake(
            to_child,
            events,
            "initialize",
            &params,
            limits::CHILD_INIT_TIMEOUT,
        );
        let response = match answer {
            Answer::Response(response) => response,
            Answer::Stop => return Err(None),
            Answer::TimedOut => {
                return Err(Some(format!(
                    "did not answer initialize within {} s",
                    limits::CHILD_INIT_TIMEOUT.as_secs()
                )));
            }
            Answer::Exited => return Err(Some(self.exited_during("initialize", child))),
        };
        let cache = parse_initialize_response(&response).map_err(Some)?;
        super::send_with_timeout(
            to_child,
            jsonrpc::notification("notifications/initialized", "{}"),
        )
        .map_err(|e| Some(e.to_string()))?;
        Ok(cache)
    }

    fn exited_during(&self, method: &str, child: &ChildProcess) -> String {
        let how = child
            .wait_exit(limits::CHILD_STOP_GRACE)
            .unwrap_or_else(|| "its stdin closed".into());
        format!("exited before answering {method} ({how})")
    }

    /// One request of the handshake, and its answer (or the child's exit, a stop, a timeout).
    fn ask_during_handshake(
        &self,
        to_child: &ChildInput,
        events: &Receiver<Event>,
        method: &str,
        params: &str,
        timeout: Duration,
    ) -> Answer {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let id = self.next_id();
        self.lock().pending.insert(id, Pending::Internal(Some(tx)));
        let sent =
            super::send_with_timeout(to_child, jsonrpc::request(&id.to_string(), method, params));
        let answer = match sent {
            Ok(()) => self.await_answer(&rx, events, timeout),
            Err(_) => Answer::Exited,
        };
        self.lock().pending.remove(&id);
        answer
    }

    /// Waits for the handshake's response, the child's exit, or a stop.
    fn await_answer(
        &self,
        rx: &Receiver<String>,
        events: &Receiver<Event>,
        timeout: Duration,
    ) -> Answer {
        let deadline = Instant::now() + timeout;
        let current = self.generation.load(Ordering::Acquire);
        loop {
            crossbeam_channel::select! {
                recv(rx) -> response => return match response {
                    Ok(response) => Answer::Response(response),
                    Err(_) => Answer::Exited, // the entry went with the child
                },
                recv(events) -> event => match event {
                    Ok(Event::Exited(generation, _)) if generation == current => return Answer::Exited,
                    Ok(Event::Exited(..)) => continue,
                    Ok(Event::Stop) | Err(_) => return Answer::Stop,
                },
                default(deadline.saturating_duration_since(Instant::now())) => return Answer::TimedOut,
            }
        }
    }

    /// A new child knows nothing of the old one's state: give it the subscriptions and the
    /// log level back, and tell every session that lists may have changed.
    fn after_restart(&self, cache: &InitCache) {
        let (uris, level) = {
            let state = self.lock();
            let uris: Vec<String> = state.subscriptions.keys().cloned().collect();
            (uris, state.child_log_level)
        };
        // A 2026-07-28 child got the subscriptions on its listen stream, and takes the log
        // level per request.
        let (uris, level) = if cache.modern {
            (Vec::new(), None)
        } else {
            (uris, level)
        };
        for uri in uris {
            self.fire_and_forget(
                "resources/subscribe",
                &format!(r#"{{"uri":{}}}"#, jsonrpc::quote(&uri)),
            );
        }
        if let Some(level) = level {
            self.fire_and_forget(
                "logging/setLevel",
                &format!(r#"{{"level":"{}"}}"#, super::session::log_level_name(level)),
            );
        }
        let capabilities = cache.result.get("capabilities");
        let mut state = self.lock();
        for kind in ["tools", "prompts", "resources"] {
            let declared = capabilities
                .and_then(|c| c.get(kind))
                .and_then(|k| k.get("listChanged"))
                .and_then(Value::as_bool)
                == Some(true);
            if !declared {
                continue;
            }
            let message: Arc<str> =
                jsonrpc::notification(&format!("notifications/{kind}/list_changed"), "{}").into();
            let sessions: Vec<_> = state.sessions.keys().copied().collect();
            for id in sessions {
                deliver_to_session(&mut state, id, message.clone());
            }
        }
        info!("server {:?}: restarted and re-initialized", self.label);
    }

    /// Called by `child-out` once the child's stdout is closed and it has exited.
    pub(super) fn on_child_exit(&self, generation: u64, exit: String) {
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        let (failed, stopping) = {
            let mut state = self.lock();
            let stopping = state.status == Status::Stopped;
            state.to_child = None;
            if state.status == Status::Running {
                state.status = Status::Restarting(format!("exited ({exit})"));
            }
            state.child_requests.clear();
            for session in state.sessions.values_mut() {
                session.in_flight.clear();
            }
            // Only client requests fail here; the supervisor's own handshake wait sees its
            // sender dropped when the entry goes.
            (std::mem::take(&mut state.pending), stopping)
        };
        self.status_changed.notify_all();
        if !stopping {
            error!("server {:?}: exited unexpectedly ({exit})", self.label);
        }
        let message = format!("MCP server {:?} exited ({exit})", self.label);
        let mut state = self.lock();
        for (_, pending) in failed {
            if let Pending::Client(request) = pending {
                let text = rpc::response(&request.id, rpc::SERVER_UNAVAILABLE, &message);
                state.deliver_reply(request.session, &request.reply, Outbound::last(text.into()));
            }
        }
        drop(state);
        // The supervisor may be gone already (shutdown); then nobody needs to know.
        let _ = self.events.try_send(Event::Exited(generation, exit));
    }

    /// Stopped for good: the status first, so the child's exit is not taken for a crash.
    fn shut_down(&self, child: Option<&ChildProcess>) {
        self.set_status(Status::Stopped);
        if let Some(child) = child {
            self.stop_child(child);
        }
    }

    /// The stdio shutdown sequence for `child`.
    fn stop_child(&self, child: &ChildProcess) {
        // Dropping the last sender lets child-in drain the queue and close stdin.
        self.lock().to_child = None;
        child.stop();
        info!(
            "server {:?}: stopped pid {} ({})",
            self.label,
            child.pid,
            child.exit_description()
        );
    }
}

/// Why a child could not be started.
enum StartError {
    /// The reason, and the child if one was spawned (the caller stops it).
    Failed(String, Option<Arc<ChildProcess>>),
    /// A stop was asked meanwhile.
    Stopped(Option<Arc<ChildProcess>>),
}

/// How the handshake's wait ended.
enum Answer {
    Response(String),
    Exited,
    TimedOut,
    Stop,
}

/// 250 ms doubling per failure in a row, capped.
fn backoff_delay(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    limits::CHILD_RESTART_MIN_DELAY
        .saturating_mul(1 << exponent)
        .min(limits::CHILD_RESTART_MAX_DELAY)
}

fn parse_initialize_response(response: &str) -> Result<InitCache, String> {
    let v: Value =
        serde_json::from_str(response).map_err(|e| format!("bad initialize response: {e}"))?;
    if let Some(err) = v.get("error") {
        return Err(format!("refused initialize: {err}"));
    }
    let result = v
        .get("result")
        .and_then(Value::as_object)
        .ok_or("initialize response has no result object")?
        .clone();
    let has_logging = result
        .get("capabilities")
        .and_then(|c| c.get("logging"))
        .is_some();
    Ok(InitCache {
        result,
        has_logging,
        modern: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_then_caps() {
        assert_eq!(backoff_delay(1), limits::CHILD_RESTART_MIN_DELAY);
        assert_eq!(backoff_delay(2), limits::CHILD_RESTART_MIN_DELAY * 2);
        assert_eq!(backoff_delay(3), limits::CHILD_RESTART_MIN_DELAY * 4);
        assert_eq!(backoff_delay(100), limits::CHILD_RESTART_MAX_DELAY);
    }
}

//! Client mode under test: the real binary with piped stdin/stdout, driven like a desktop MCP
//! client would. Killed with its process group on drop; stderr kept and dumped on failure.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, unbounded};
use serde_json::{Value, json};

use super::{DEADLINE, PROXY, drain_into_log, kill_group, send_signal, wait_for_exit, wait_until};

pub struct StdioProxy {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    // Unbounded in a test: the proxy's output of one test is small and read by the test.
    lines: Receiver<String>,
    log: Arc<Mutex<String>>,
}

impl StdioProxy {
    pub fn start(args: &[&str]) -> StdioProxy {
        StdioProxy::start_with(args, &[])
    }

    pub fn start_with(args: &[&str], env: &[(&str, &str)]) -> StdioProxy {
        let mut child = Command::new(PROXY)
            .args(args)
            .env_remove("SSE_URL")
            .env_remove("API_ACCESS_TOKEN")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("spawn mcp-proxy in client mode");
        let log = Arc::new(Mutex::new(String::new()));
        drain_into_log(child.stderr.take().unwrap(), &log);
        let (tx, lines) = unbounded();
        let stdout = child.stdout.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        StdioProxy {
            stdin: child.stdin.take(),
            child: Some(child),
            lines,
            log,
        }
    }

    pub fn stderr(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the proxy's log contains `needle`: stderr is read by its own thread, so a
    /// line logged before a reply may still be on its way when the reply arrives.
    #[track_caller]
    pub fn wait_for_log(&self, needle: &str) {
        wait_until(DEADLINE, needle, || self.stderr().contains(needle));
    }

    pub fn send(&mut self, message: &Value) {
        self.send_line(&message.to_string());
    }

    pub fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }

    /// The next stdout line, parsed; it must be one compact JSON message.
    #[track_caller]
    pub fn recv_within(&self, timeout: Duration) -> Value {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line:.200}")),
            Err(RecvTimeoutError::Timeout) => {
                panic!(
                    "no stdout line within {timeout:?}; stderr:\n{}",
                    self.stderr()
                )
            }
            Err(RecvTimeoutError::Disconnected) => {
                panic!("stdout closed; stderr:\n{}", self.stderr())
            }
        }
    }

    #[track_caller]
    pub fn recv(&self) -> Value {
        self.recv_within(DEADLINE)
    }

    /// The response with this id; other messages (notifications, server requests) are skipped.
    #[track_caller]
    pub fn response(&self, id: &Value) -> Value {
        let start = Instant::now();
        loop {
            let left = DEADLINE.saturating_sub(start.elapsed());
            let v = self.recv_within(left.max(Duration::from_millis(1)));
            if v.get("method").is_none() && &v["id"] == id {
                return v;
            }
        }
    }

    /// Whether stdout stays silent for `quiet`.
    pub fn no_output_for(&self, quiet: Duration) -> Option<String> {
        self.lines.recv_timeout(quiet).ok()
    }

    /// initialize (with sampling capability) and notifications/initialized.
    #[track_caller]
    pub fn initialize(&mut self) -> Value {
        self.send(
            &json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
            "protocolVersion":"2025-06-18",
            "capabilities":{"sampling":{}},
            "clientInfo":{"name":"client-mode-test","version":"1"}}}),
        );
        let v = self.response(&json!(0));
        assert!(v.get("result").is_some(), "initialize failed: {v}");
        self.send(&json!({"jsonrpc":"2.0","method":"notifications/initialized"}));
        v
    }

    /// `tools/call`; the whole response.
    #[track_caller]
    pub fn call_tool(&mut self, id: i64, name: &str, arguments: Value) -> Value {
        self.send(&json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
            "params":{"name":name,"arguments":arguments}}));
        self.response(&json!(id))
    }

    /// `echo` through the remote; its text.
    #[track_caller]
    pub fn echo(&mut self, id: i64, message: &str) -> String {
        let v = self.call_tool(id, "echo", json!({"message": message}));
        v["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_else(|| panic!("no echo text in {v:.300}"))
            .to_string()
    }

    /// Sends a signal to the proxy process (not its group).
    pub fn signal(&self, signal: i32) {
        send_signal(self.child.as_ref().unwrap().id() as i32, signal);
    }

    #[track_caller]
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let child = self.child.as_mut().unwrap();
        wait_for_exit(child, timeout, "client", &self.log).code()
    }
}

impl Drop for StdioProxy {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            kill_group(child);
        }
        if thread::panicking() {
            eprintln!("---- client-mode stderr ----\n{}", self.stderr());
        }
    }
}

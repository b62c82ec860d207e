//! [`Handle`]: the application threads' side of the runtime.

use std::sync::Arc;
use std::time::Duration;

use crate::api::{Command, ConnectRequest, FlowError, FlowInfo, ListenRequest, Reply};
use crate::config::Config;
use crate::driver;

/// A running runtime (one per process). Cheap to clone; safe to use from any thread.
#[derive(Clone, Debug)]
pub struct Handle {
    inner: Arc<driver::Shared>,
    pid: u32,
    config: Arc<Config>,
}

impl Handle {
    /// Starts the runtime thread for `config` in this process. `program` names the
    /// process in default IPC process names and the management socket.
    ///
    /// # Errors
    /// [`FlowError::RuntimeDown`] if a shim cannot be opened (port in use, no
    /// permission) or the thread cannot be started.
    pub fn start(config: Arc<Config>, program: &str) -> Result<Self, FlowError> {
        Self::spawn(config, program, false)
    }

    /// Starts a node: a runtime with no application, a long-lived member of every DIF
    /// of `config` that takes newcomers and relays (`rina node`). It joins at once.
    ///
    /// # Errors
    /// As [`Handle::start`].
    pub fn start_node(config: Arc<Config>, program: &str) -> Result<Self, FlowError> {
        Self::spawn(config, program, true)
    }

    fn spawn(config: Arc<Config>, program: &str, node: bool) -> Result<Self, FlowError> {
        let inner = driver::spawn(config.clone(), program, node)?;
        Ok(Self {
            inner,
            pid: std::process::id(),
            config,
        })
    }

    /// The process that started this runtime (a fork child must start its own).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// True while the runtime thread runs (false once it stopped, e.g. after its flows
    /// were handed to a keeper before an exec that then failed).
    pub fn is_running(&self) -> bool {
        self.inner.is_alive()
    }

    /// The rules this runtime runs.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// Allocates a flow and pumps it through `req.socket`. Blocks up to `req.timeout`.
    ///
    /// # Errors
    /// A [`FlowError`] whose [`FlowError::errno`] the hook returns.
    pub fn connect(&self, req: ConnectRequest) -> Result<FlowInfo, FlowError> {
        let timeout = req.timeout;
        self.call(timeout, |r| Command::Connect(req, r))
    }

    /// Starts allocating a flow and returns at once; `done` is called with the result
    /// (on the runtime thread, so it must be quick and must not call back into the
    /// runtime). If the runtime is not running, `done` is called here.
    pub fn connect_then(
        &self,
        req: ConnectRequest,
        done: impl FnOnce(Result<FlowInfo, FlowError>) + Send + 'static,
    ) {
        let down = || FlowError::RuntimeDown("the runtime thread has stopped".into());
        let reply = Reply::then(done, Err(down()));
        if !self.inner.post(Command::Connect(req, reply.clone())) {
            reply.send(Err(down()));
        }
    }

    /// Registers a name and hands incoming flows to the listener. Blocks up to
    /// `req.timeout`.
    ///
    /// # Errors
    /// A [`FlowError`] whose [`FlowError::errno`] the hook returns.
    pub fn listen(&self, req: ListenRequest) -> Result<(), FlowError> {
        let timeout = req.timeout;
        self.call(timeout, |r| Command::Listen(req, r))
    }

    /// Tells the runtime that the application's datagram socket at `app` (as given
    /// in [`crate::AppEnd::Datagram`]) is closed: its flows are deallocated and its
    /// registrations withdrawn. Does not wait.
    pub fn release_datagram(&self, app: std::net::SocketAddr) {
        let _ = self.inner.post(Command::ReleaseDatagram(app));
    }

    /// Called at process exit: lets every flow deliver what the application wrote
    /// (bounded by the rules' `linger`), says goodbye to the neighbours, and stops.
    pub fn exit(&self) {
        let linger = self.config.settings.linger;
        let reply = Reply::new();
        if self.inner.post(Command::Exit(linger, reply.clone())) {
            let _ = reply.wait(linger + Duration::from_secs(1));
        }
    }

    /// Called before the process execs: the stack's stream flows and listeners go to
    /// a keeper process that serves them while other processes (the new program
    /// among them) hold their sockets; this process's runtime stops.
    pub fn hand_over(&self) {
        let linger = self.config.settings.linger;
        let reply = Reply::new();
        if self.inner.post(Command::HandOver(linger, reply.clone())) {
            let _ = reply.wait(Duration::from_secs(5));
        }
    }

    fn call<T>(
        &self,
        timeout: Duration,
        make: impl FnOnce(Reply<Result<T, FlowError>>) -> Command,
    ) -> Result<T, FlowError> {
        let reply = Reply::new();
        if !self.inner.post(make(reply.clone())) {
            return Err(FlowError::RuntimeDown(
                "the runtime thread has stopped".into(),
            ));
        }
        // The runtime enforces `timeout` itself; the extra second only guards against
        // a runtime thread that died.
        reply
            .wait(timeout + Duration::from_secs(1))
            .unwrap_or(Err(FlowError::TimedOut))
    }
}

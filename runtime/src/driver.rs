//! The runtime thread's event loop (in progress).

use std::sync::Arc;

use crate::api::{Command, FlowError};
use crate::config::Config;

/// State shared between the runtime thread and application threads.
#[derive(Debug)]
pub(crate) struct Shared {}

impl Shared {
    /// Posts a command; false if the runtime thread is gone.
    pub(crate) fn post(&self, _cmd: Command) -> bool {
        false
    }
}

/// Starts the runtime thread.
pub(crate) fn spawn(_config: Arc<Config>, _program: &str) -> Result<Arc<Shared>, FlowError> {
    Err(FlowError::RuntimeDown("not yet implemented".into()))
}

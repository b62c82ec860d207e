//! Tracing set-up (DESIGN.md D8): off unless `RINA_LOG` is set (an EnvFilter string);
//! written to `RINA_LOG_FILE` if set, else stderr.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Once;

/// The log file's fd, -1 if logs do not go to a file.
static FILE_FD: AtomicI32 = AtomicI32::new(-1);

/// The fd of `RINA_LOG_FILE`, if logs go there (a keeper keeps it open).
pub(crate) fn file_fd() -> Option<RawFd> {
    let fd = FILE_FD.load(Ordering::Relaxed);
    (fd >= 0).then_some(fd)
}

/// Installs the subscriber once per process, if `RINA_LOG` asks for it.
pub(crate) fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let Ok(filter) = std::env::var("RINA_LOG") else {
            return;
        };
        let filter = tracing_subscriber::EnvFilter::new(filter);
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_thread_names(true);
        match std::env::var("RINA_LOG_FILE") {
            Ok(path) => {
                if let Ok(file) = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                {
                    FILE_FD.store(file.as_raw_fd(), Ordering::Relaxed);
                    let _ = builder
                        .with_ansi(false)
                        .with_writer(std::sync::Mutex::new(file))
                        .try_init();
                }
            }
            Err(_) => {
                let _ = builder.with_writer(std::io::stderr).try_init();
            }
        }
    });
}

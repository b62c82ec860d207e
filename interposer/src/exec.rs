//! The exec hooks (`execve`, `execv`, `execvp`, `execvpe`): a process whose runtime
//! carries flows hands them to a keeper process before its image is replaced (see
//! `runtime`'s keeper), so that the new program (`busybox nc -l -e`, a shell's `exec`)
//! keeps using the sockets it inherits. Every other exec goes to libc untouched.
//!
//! (`execl` and its siblings are C-variadic, which stable Rust cannot define; glibc
//! implements them without going through these symbols, so they are not seen.)

use libc::c_char;

use crate::detour;
use crate::state;
use crate::sys::real::real;

/// Before an exec: hand the runtime's flows over, if this process runs one. The exec
/// goes to libc whatever happens (bookkeeping, see [`crate::detour`]).
fn before_exec() {
    if !state::active() {
        return;
    }
    detour::bookkeep(|| {
        if let Some(h) = state::running_runtime() {
            h.hand_over();
        }
    });
}

/// execve(2).
///
/// # Safety
/// As execve(2).
#[no_mangle]
pub unsafe extern "C" fn execve(
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> libc::c_int {
    before_exec();
    // SAFETY: forwarding the caller's arguments.
    unsafe { (real().execve)(path, argv, envp) }
}

/// execv(3).
///
/// # Safety
/// As execv(3).
#[no_mangle]
pub unsafe extern "C" fn execv(path: *const c_char, argv: *const *const c_char) -> libc::c_int {
    before_exec();
    // SAFETY: forwarding the caller's arguments.
    unsafe { (real().execv)(path, argv) }
}

/// execvp(3).
///
/// # Safety
/// As execvp(3).
#[no_mangle]
pub unsafe extern "C" fn execvp(file: *const c_char, argv: *const *const c_char) -> libc::c_int {
    before_exec();
    // SAFETY: forwarding the caller's arguments.
    unsafe { (real().execvp)(file, argv) }
}

/// execvpe(3).
///
/// # Safety
/// As execvpe(3).
#[no_mangle]
pub unsafe extern "C" fn execvpe(
    file: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> libc::c_int {
    before_exec();
    // SAFETY: forwarding the caller's arguments.
    unsafe { (real().execvpe)(file, argv, envp) }
}

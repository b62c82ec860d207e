//! The `rina` command.
//!
//! - `rina run -c RULES [--lib PATH] -- PROGRAM ARGS...`: validates RULES, then runs
//!   PROGRAM with the interposer preloaded and the rules named in its environment;
//!   refuses a statically linked PROGRAM, which nothing can be preloaded into.
//! - `rina check RULES`: validates RULES and says what they make a process do.
//! - `rina node -c RULES`: runs a stack with no program under it (a relay, an enroller,
//!   a bootstrap member) until SIGINT or SIGTERM, then says goodbye and exits; exits 1
//!   with the reason if the stack cannot start (an endpoint held by another process).
//! - `rina ctl [PID] [--json]`: the processes of this host that run a stack, or what
//!   one of them knows (members, neighbours, routes, directory, flows, counters).
//! - `rina gateway -c RULES`: carries TCP connections and UDP datagrams of programs
//!   that run nothing of ours over RINA: the rules' `[[ingress]]` addresses become
//!   flows, the `[[egress]]` names' flows become TCP connections or datagrams to an
//!   address (`gateway/`).
//! - `rina tun -c RULES`: IP over RINA through a TUN device (`tun/`).
//! - `rina keygen KEYFILE`: writes a new member key readable by its owner only and
//!   prints its public key; `rina pubkey KEYFILE` prints the public key of a key file
//!   (the formats of `wg genkey` and `wg pubkey`).

mod ctl;
mod gateway;
mod tun;

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use runtime::config;

/// Run unmodified programs over RINA.
#[derive(Parser, Debug)]
#[command(name = "rina", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run a program with its socket calls going over RINA where the rules say so.
    Run {
        /// The rules file.
        #[arg(short = 'c', long = "config", value_name = "RULES")]
        config: PathBuf,
        /// The interposer library (default: $RINA_LIB, else librina_interposer.so next to
        /// this command).
        #[arg(long, value_name = "PATH")]
        lib: Option<PathBuf>,
        /// The program and its arguments.
        #[arg(
            required = true,
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "PROGRAM"
        )]
        program: Vec<OsString>,
    },
    /// Validate a rules file and print what it will do.
    Check {
        /// The rules file.
        rules: PathBuf,
    },
    /// Run a member of the rules' DIFs with no program: it joins, relays and takes
    /// newcomers until SIGINT or SIGTERM.
    Node {
        /// The rules file.
        #[arg(short = 'c', long = "config", value_name = "RULES")]
        config: PathBuf,
    },
    /// Carry TCP connections and UDP datagrams over RINA: each `[[ingress]]` address's
    /// connections become flows, each `[[egress]]` name's flows become connections.
    Gateway {
        /// The rules file.
        #[arg(short = 'c', long = "config", value_name = "RULES")]
        config: PathBuf,
    },
    /// IP over RINA: a TUN device whose packets go, by destination, over flows to the
    /// tunnels of other hosts (`[tun]`). Needs CAP_NET_ADMIN.
    Tun {
        /// The rules file.
        #[arg(short = 'c', long = "config", value_name = "RULES")]
        config: PathBuf,
    },
    /// Write a new member key (readable by its owner only) and print its public key.
    Keygen {
        /// Where to write it (an existing file is not replaced).
        keyfile: PathBuf,
    },
    /// Print the public key of a private key file.
    Pubkey {
        /// The private key file.
        keyfile: PathBuf,
    },
    /// List the processes here that run a stack, or show what one of them knows.
    Ctl {
        /// The process to show (default: list them all).
        pid: Option<u32>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Cmd::Check { rules } => match config::load(&rules) {
            Ok(c) => {
                print!("{}", c.describe());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("rina: {e}");
                ExitCode::from(2)
            }
        },
        Cmd::Run {
            config: rules,
            lib,
            program,
        } => run(&rules, lib, &program),
        Cmd::Node { config: rules } => node(&rules),
        Cmd::Gateway { config: rules } => gateway::gateway(&rules),
        Cmd::Tun { config: rules } => tun::tun(&rules),
        Cmd::Ctl { pid, json } => ctl::ctl(pid, json),
        Cmd::Keygen { keyfile } => {
            let key = runtime::keys::PrivateKey::generate();
            match key.save(&keyfile) {
                Ok(()) => {
                    println!("{}", key.public());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("rina keygen: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Cmd::Pubkey { keyfile } => match runtime::keys::PrivateKey::load(&keyfile) {
            Ok(key) => {
                println!("{}", key.public());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("rina pubkey: {e}");
                ExitCode::from(1)
            }
        },
    }
}

fn node(rules: &Path) -> ExitCode {
    let c = match load_rules(rules) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Some(why) = c.missing_net_raw() {
        eprintln!("rina: {}: {why}", rules.display());
        return ExitCode::from(1);
    }
    let set = block_stop_signals();
    let difs: Vec<String> = c.difs.iter().map(|d| d.name.clone()).collect();
    let serves = c.host.as_ref().map_or(String::new(), |h| {
        format!("; serves the programs of this host at {}", h.socket)
    });
    let handle = match runtime::Handle::start_node(std::sync::Arc::new(c), "node") {
        Ok(h) => h,
        Err(e) => {
            eprintln!("rina node: cannot start the RINA stack: {}", why(e));
            return ExitCode::from(1);
        }
    };
    eprintln!(
        "rina node {}: member of {}{serves}; SIGINT or SIGTERM stops it",
        std::process::id(),
        difs.join(", ")
    );
    let sig = wait_for_stop(&set);
    eprintln!("rina node {}: stopping (signal {sig})", std::process::id());
    handle.exit();
    ExitCode::SUCCESS
}

/// Reads and checks the rules of a member the `rina` command runs (`node`, `gateway`,
/// `tun`); a mistake is said, and the exit code (2) returned.
fn load_rules(rules: &Path) -> Result<config::Config, ExitCode> {
    config::load(rules).map_err(|e| {
        eprintln!("rina: {e}");
        ExitCode::from(2)
    })
}

/// Why a stack or a call of it failed, in words (a stopped runtime's own reason).
fn why(e: runtime::FlowError) -> String {
    match e {
        runtime::FlowError::RuntimeDown(why) => why,
        other => other.to_string(),
    }
}

/// Blocks SIGINT and SIGTERM in this thread, before the runtime thread starts (it
/// inherits the mask and never sees them): they are taken by [`wait_for_stop`].
fn block_stop_signals() -> libc::sigset_t {
    // SAFETY: a signal set of our own, and the calling thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Waits for one of the signals [`block_stop_signals`] blocked: its number.
fn wait_for_stop(set: &libc::sigset_t) -> libc::c_int {
    let mut sig: libc::c_int = 0;
    // SAFETY: waiting for one of the blocked signals of `set`.
    unsafe { libc::sigwait(set, &mut sig) };
    sig
}

fn run(rules: &Path, lib: Option<PathBuf>, program: &[OsString]) -> ExitCode {
    if let Err(e) = config::load(rules) {
        eprintln!("rina: {e}");
        eprintln!(
            "rina: not running {}: the rules are invalid",
            program[0].to_string_lossy()
        );
        return ExitCode::from(2);
    }
    if let Some(exe) = find_program(&program[0]) {
        if elf_is_static(&exe) == Some(true) {
            eprintln!(
                "rina: {} is statically linked: nothing can be preloaded into it, so its \
                 socket calls would go over TCP/IP, not RINA (README.md, section \"Limits\")",
                exe.display()
            );
            eprintln!(
                "rina: not running it: use a dynamically linked build of the program; or carry \
                 its TCP and UDP over RINA with `rina gateway` (README.md, \"The gateway\"); \
                 or, if TCP/IP is what it should use, run it without `rina run`"
            );
            return ExitCode::from(2);
        }
    }
    let lib = match lib
        .or_else(|| std::env::var_os("RINA_LIB").map(PathBuf::from))
        .or_else(beside_me)
    {
        Some(l) if l.is_file() => l,
        Some(l) => {
            eprintln!(
                "rina: the interposer library {} does not exist",
                l.display()
            );
            return ExitCode::from(2);
        }
        None => {
            eprintln!("rina: cannot find librina_interposer.so next to this command; pass --lib PATH or set RINA_LIB");
            return ExitCode::from(2);
        }
    };
    let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let mut preload = abs(&lib).into_os_string();
    if let Some(old) = std::env::var_os("LD_PRELOAD").filter(|o| !o.is_empty()) {
        preload.push(":");
        preload.push(old);
    }
    let err = std::process::Command::new(&program[0])
        .args(&program[1..])
        .env("LD_PRELOAD", preload)
        .env("RINA_CONFIG", abs(rules))
        .exec();
    eprintln!("rina: cannot run {}: {err}", program[0].to_string_lossy());
    ExitCode::from(127)
}

/// Where `program` is run from: itself if it names a path, else the first executable
/// file of that name in `PATH` (as `execvp` looks).
fn find_program(program: &std::ffi::OsStr) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt as _;
    use std::os::unix::fs::PermissionsExt as _;
    if program.as_bytes().contains(&b'/') {
        return Some(PathBuf::from(program));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// True if `path` is an ELF executable with no program interpreter (`PT_INTERP`): linked
/// statically, so the dynamic loader never runs and `LD_PRELOAD` is not honoured.
/// `None` if it is not ELF (a script, whose interpreter is what runs) or cannot be read.
fn elf_is_static(path: &Path) -> Option<bool> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    const PT_INTERP: u32 = 3;
    let mut f = std::fs::File::open(path).ok()?;
    let mut h = [0u8; 64];
    f.read_exact(&mut h[..52]).ok()?;
    if h[..4] != *b"\x7fELF" {
        return None;
    }
    let wide = match h[4] {
        1 => false,
        2 => true,
        _ => return None,
    };
    let big = match h[5] {
        1 => false,
        2 => true,
        _ => return None,
    };
    if wide {
        f.read_exact(&mut h[52..64]).ok()?;
    }
    let num = |b: &[u8]| -> u64 {
        let mut v = 0u64;
        for i in 0..b.len() {
            let byte = if big { b[i] } else { b[b.len() - 1 - i] };
            v = (v << 8) | u64::from(byte);
        }
        v
    };
    // e_type: only executables and shared objects (PIE) run.
    if !matches!(num(&h[16..18]), 2 | 3) {
        return None;
    }
    let (phoff, phentsize, phnum) = if wide {
        (num(&h[32..40]), num(&h[54..56]), num(&h[56..58]))
    } else {
        (num(&h[28..32]), num(&h[42..44]), num(&h[44..46]))
    };
    if phentsize < 4 || phnum == 0 {
        return None;
    }
    let mut table = vec![0u8; usize::try_from(phentsize * phnum).ok()?];
    f.seek(SeekFrom::Start(phoff)).ok()?;
    f.read_exact(&mut table).ok()?;
    let interp = table
        .chunks_exact(usize::try_from(phentsize).ok()?)
        .any(|ph| num(&ph[..4]) == u64::from(PT_INTERP));
    Some(!interp)
}

/// `librina_interposer.so` in the directory of this executable.
fn beside_me() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.join("librina_interposer.so"))
}

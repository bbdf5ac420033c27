//! Attaching this process's stdio to a running process of a container (the workload, or an
//! exec'd process): output to stdout/stderr, stdin, signals and terminal size to the process,
//! the exit status back. Every front-end that relays a terminal (`moat run`, `moat exec`, the
//! process `moat-oci` leaves for conmon) uses this.

use std::io::{Read, Write};
use std::sync::mpsc;

use moat_proto::Stream;
use moat_zone::api::{ApiRequest, ApiResponse, Connection, Sender};
use nix::sys::signal::{SigSet, Signal};

use crate::containers::ProcessEnd;
use crate::error::{Result, RuntimeError};

/// Signals the attached front-end forwards to the workload. With `-t -i` the keys that make them (Ctrl-C)
/// reach the workload's terminal as bytes instead, and its line discipline signals.
const FORWARDED: [Signal; 6] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT, Signal::SIGUSR1, Signal::SIGUSR2];

/// Relay until the process the connection is attached to exits, or its zone ends.
pub fn attach(mut conn: Connection, stdin: bool, tty: bool) -> Result<ProcessEnd> {
    let mut signals = SigSet::empty();
    FORWARDED.iter().for_each(|s| signals.add(*s));
    signals.add(Signal::SIGWINCH);
    // Blocked here, before any thread starts, so every thread inherits the mask and one thread
    // can take them with sigwait.
    signals.thread_block().map_err(|err| RuntimeError::Io { what: "blocking the forwarded signals".into(), err: err.into() })?;
    // Raw only when keys go to the workload (`-t -i`), as Docker does: with `-t` alone,
    // Ctrl-C stays a local SIGINT, which is forwarded.
    let _raw = if tty && stdin { RawTerminal::enter() } else { None };

    if tty {
        if let Some((rows, cols)) = terminal_size() {
            conn.send(&ApiRequest::Resize { rows, cols })?;
        }
    }
    let sender = conn.sender()?;
    std::thread::spawn({
        let mut sender = conn.sender()?;
        move || forward_signals(&mut sender, signals, tty)
    });
    if stdin {
        let mut sender = sender;
        std::thread::spawn(move || forward_stdin(&mut sender));
    }

    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        loop {
            match conn.receive() {
                Ok(ApiResponse::Output { stream, data }) => write_output(stream, &data),
                Ok(ApiResponse::Error { message, .. }) => eprintln!("moat: {message}"),
                Ok(other) => {
                    if let Some(end) = ProcessEnd::announced_by(&other) {
                        let _ = done_tx.send(end);
                        return;
                    }
                }
                Err(_) => {
                    let _ = done_tx.send(ProcessEnd::ZoneEnded(None));
                    return;
                }
            }
        }
    });
    Ok(done_rx.recv().unwrap_or(ProcessEnd::ZoneEnded(None)))
}

fn forward_stdin(sender: &mut Sender) {
    let mut buf = [0u8; 32 * 1024];
    let mut stdin = std::io::stdin().lock();
    loop {
        match stdin.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = sender.send(&ApiRequest::Stdin { data: Vec::new() });
                return;
            }
            Ok(n) => {
                if sender.send(&ApiRequest::Stdin { data: buf[..n].to_vec() }).is_err() {
                    return;
                }
            }
        }
    }
}

fn forward_signals(sender: &mut Sender, signals: SigSet, tty: bool) {
    while let Ok(signal) = signals.wait() {
        let request = if signal == Signal::SIGWINCH {
            match (tty, terminal_size()) {
                (true, Some((rows, cols))) => ApiRequest::Resize { rows, cols },
                _ => continue,
            }
        } else {
            ApiRequest::Signal { signal: signal as i32 }
        };
        if sender.send(&request).is_err() {
            return;
        }
    }
}

/// The size (rows, columns) of the terminal on stdin, if it is one.
pub fn terminal_size() -> Option<(u16, u16)> {
    let mut size = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ fills the winsize we pass; stdin may not be a terminal, then it fails.
    let rc = unsafe { libc::ioctl(libc::STDIN_FILENO, libc::TIOCGWINSZ, &mut size) };
    (rc == 0 && size.ws_row > 0).then_some((size.ws_row, size.ws_col))
}

/// The local terminal in raw mode, so keys (Ctrl-C included) reach the workload's pty; restored
/// on drop.
struct RawTerminal {
    saved: nix::sys::termios::Termios,
}

impl RawTerminal {
    fn enter() -> Option<Self> {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw).ok()?;
        Some(Self { saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(std::io::stdin(), nix::sys::termios::SetArg::TCSANOW, &self.saved);
    }
}

/// Print one workload output chunk to the matching local stream.
pub fn write_output(stream: Stream, data: &[u8]) {
    let _ = match stream {
        Stream::Stdout => std::io::stdout().lock().write_all(data).and_then(|()| std::io::stdout().flush()),
        Stream::Stderr => std::io::stderr().lock().write_all(data),
    };
}

//! Running a session's program on a pseudo-terminal: the child is a session
//! leader with the PTY as its controlling terminal (pty-process does the
//! `setsid`/`TIOCSCTTY`), the window size follows `window-change` requests.
//! Terminal modes sent by the client are not applied (the PTY keeps the
//! kernel's defaults, which suit interactive shells).

use std::ffi::OsString;
use std::path::PathBuf;

use pty_process::{OwnedWritePty, Size};
use russh::Channel;
use russh::server::{Handle, Msg};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::exec::{Control, Exit, Input, Launch, finish, pump_input, refuse, spawn_failure_status};

/// The size a `pty-req` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSize {
    pub cols: u16,
    pub rows: u16,
    pub px: u16,
    pub py: u16,
}

impl WindowSize {
    /// Clamps the protocol's u32 values to what a terminal can be.
    pub fn new(cols: u32, rows: u32, px: u32, py: u32) -> Self {
        let c = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
        WindowSize { cols: c(cols), rows: c(rows), px: c(px), py: c(py) }
    }

    fn size(self) -> Size {
        // A zero size makes some programs divide by zero; OpenSSH passes it on,
        // but 80x24 is what a terminal without a size is taken to be.
        let (rows, cols) = if self.rows == 0 || self.cols == 0 { (24, 80) } else { (self.rows, self.cols) };
        Size::new_with_pixel(rows, cols, self.px, self.py)
    }
}

impl Input for OwnedWritePty {
    fn resize(&mut self, cols: u16, rows: u16, px: u16, py: u16) {
        let _ = OwnedWritePty::resize(self, WindowSize { cols, rows, px, py }.size());
    }
}

/// Runs `launch` on a new PTY of `size`; output goes to the channel as data.
pub async fn run_on_pty(
    channel: Channel<Msg>,
    handle: Handle,
    launch: Launch,
    env: Vec<(OsString, OsString)>,
    home: PathBuf,
    size: WindowSize,
    control: mpsc::UnboundedReceiver<Control>,
) -> Exit {
    let (read, write) = channel.split();
    let (pty, pts) = match pty_process::open() {
        Ok(p) => p,
        Err(e) => return refuse(&write, &handle, &format!("cannot allocate a PTY: {e}"), 1).await,
    };
    let _ = pty.resize(size.size());
    let mut cmd =
        pty_process::Command::new(&launch.program).args(&launch.args).env_clear().envs(env).current_dir(&home);
    if let Some(a0) = &launch.arg0 {
        cmd = cmd.arg0(a0);
    }
    let mut child = match cmd.spawn(pts) {
        Ok(c) => c,
        Err(e) => {
            let status = match &e {
                pty_process::Error::Io(io) => spawn_failure_status(io),
                _ => 126,
            };
            return refuse(&write, &handle, &format!("{}: {e}", launch.program.display()), status).await;
        }
    };
    let (mut out, input) = pty.into_split();
    let pump = tokio::spawn(pump_input(read, Some(input), control, child.id(), true));
    let mut w = write.make_writer();
    let copy = async {
        // Ends with EIO once the last process holding the terminal has exited.
        let _ = tokio::io::copy(&mut out, &mut w).await;
        let _ = w.flush().await;
    };
    let ((), status) = tokio::join!(copy, child.wait());
    pump.abort();
    let exit = status.map(Exit::from_status).unwrap_or(Exit::Status(255));
    finish(&write, &handle, &exit).await;
    exit
}

//! `kubectl claworc proxy NAME`: stdin and stdout joined to the instance's sshd
//! through the API's port-forward, for OpenSSH's `ProxyCommand` (and so for every
//! tool built on it: scp, sftp, rsync, IDEs, Ansible).
//!
//! The same path as `ssh` ([`transport::find_instance`], then
//! [`transport::open_port_forward`]), so the same RBAC: `get` on the Deployment,
//! `list` on pods, `create` on `pods/portforward`. The proxy does no SSH itself:
//! OpenSSH checks the host key (against the pins of the key store, see
//! [`crate::sshconfig`]) and authenticates.
//!
//! Blocking threads move the bytes between the standard streams and the async
//! side (stdin and stdout may be pipes, sockets or files); the proxy ends when
//! the instance's side ends, after stdout has been written out.

use std::io::{Read, Write};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::transport;

/// What `kubectl claworc proxy` was asked for.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    pub name: String,
}

/// Size of one read from either side.
const CHUNK: usize = 64 * 1024;
/// Chunks in flight each way.
const DEPTH: usize = 16;

/// `kubectl claworc proxy`: returns when the instance's side of the stream ends.
pub async fn proxy(ctx: &Ctx, args: &ProxyOptions) -> Result<()> {
    crate::input::validate_name("instance name", &args.name)?;
    let instance = transport::find_instance(&ctx.client, &ctx.namespace, &args.name).await?;
    let stream = transport::open_port_forward(ctx, &instance).await?;
    ctx.debug(format_args!("proxy: connected to pod {} port {}", instance.pod, instance.settings.ssh_port));
    let (mut from_pod, mut to_pod) = tokio::io::split(stream);

    // stdin -> pod. The reader thread is left behind when the pod's side ends
    // first (a blocking read cannot be cancelled); the caller exits the process.
    let (in_tx, mut in_rx) = mpsc::channel::<Vec<u8>>(DEPTH);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; CHUNK];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if in_tx.blocking_send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let upload = tokio::spawn(async move {
        while let Some(chunk) = in_rx.recv().await {
            to_pod.write_all(&chunk).await?;
        }
        to_pod.shutdown().await
    });

    // pod -> stdout.
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(DEPTH);
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        let mut stdout = std::io::stdout().lock();
        while let Some(chunk) = out_rx.blocking_recv() {
            stdout.write_all(&chunk)?;
            if out_rx.is_empty() {
                stdout.flush()?;
            }
        }
        stdout.flush()
    });
    let mut buf = vec![0u8; CHUNK];
    let read_result = loop {
        match from_pod.read(&mut buf).await {
            Ok(0) => break Ok(()),
            Ok(n) => {
                if out_tx.send(buf[..n].to_vec()).await.is_err() {
                    break Ok(()); // stdout is closed: the client is gone
                }
            }
            Err(e) => break Err(e),
        }
    };
    drop(out_tx);
    upload.abort();
    let written = tokio::task::spawn_blocking(move || writer.join())
        .await
        .map_err(|e| Error::other(format!("proxy: {e}")))?
        .map_err(|_| Error::other("proxy: the stdout writer panicked"))?;
    read_result.map_err(|e| Error::other(format!("proxy: the port-forward stream failed: {e}")).with_source(e))?;
    // A closed stdout (EPIPE) only means the client went first.
    match written {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error::other(format!("proxy: writing stdout: {e}")).with_source(e))
        }
        _ => Ok(()),
    }
}

//! The byte stream to the instance's sshd: a `pods/portforward` stream to the pod's
//! ssh port (the path `ssh`, `tunnel`, `cp` and `proxy` share).
//!
//! The WebSocket is kube's (`Client::connect`, the request `Api::portforward`
//! makes); the framing is ours: the port-forward protocol of one port, channel 0 the
//! data and channel 1 the kubelet's error text, each opened by a frame that names the
//! port. kube's own `Portforwarder` sends at most 4 KiB per message to the pod (its
//! `ReaderStream` default), which made uploads several times slower than downloads;
//! here a message carries what one read from the SSH side gives, up to 64 KiB.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::{SinkExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::Resource;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use super::pod::Instance;
use crate::context::Ctx;
use crate::error::{Error, Result};

/// The most one WebSocket message to the pod carries.
const MESSAGE: usize = 64 * 1024;
/// The port-forward channels of the one port: its data and its error text.
const DATA: u8 = 0;
const ERROR: u8 = 1;

/// A port-forward stream to one port of a pod. Dropping it ends the forward.
pub struct PortForwardStream {
    stream: DuplexStream,
    pump: JoinHandle<()>,
}

impl Drop for PortForwardStream {
    fn drop(&mut self) {
        self.pump.abort();
    }
}

impl AsyncRead for PortForwardStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for PortForwardStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// What a message from the pod is, once the channel's opening frame is taken off.
#[derive(Debug, PartialEq, Eq)]
pub enum FromPod<'a> {
    /// Bytes of the stream.
    Data(&'a [u8]),
    /// The kubelet's word on why the stream ends.
    Error(&'a [u8]),
    /// A channel's opening frame (the port), or a message of no channel we use.
    Skip,
}

/// Reads one binary message from the pod; `opened` records which of the two
/// channels have had their opening frame (pure).
pub fn from_pod<'a>(message: &'a [u8], opened: &mut [bool; 2]) -> FromPod<'a> {
    let Some((&channel, rest)) = message.split_first() else { return FromPod::Skip };
    let Some(seen) = opened.get_mut(usize::from(channel)) else { return FromPod::Skip };
    if !*seen {
        *seen = true;
        return FromPod::Skip;
    }
    match channel {
        DATA => FromPod::Data(rest),
        ERROR => FromPod::Error(rest),
        _ => FromPod::Skip,
    }
}

/// Opens `pods/portforward` to the instance's ssh port. The stream's own error (the
/// kubelet's word on why it ended) is printed on stderr with `-v`.
pub async fn open_port_forward(ctx: &Ctx, instance: &Instance) -> Result<PortForwardStream> {
    let port = instance.settings.ssh_port;
    let what = || format!("port-forward to pod \"{}\" port {port}", instance.pod);
    let request = kube::core::Request::new(Pod::url_path(&(), Some(&instance.namespace)))
        .portforward(&instance.pod, &[port])
        .map_err(|e| Error::other(format!("{}: {e}", what())))?;
    let ws = ctx.client.connect(request).await.map_err(|e| Error::kube(e, what()))?.into_stream();
    let (stream, ours) = tokio::io::duplex(1024 * 1024);
    let (ctx, pod) = (ctx.clone(), instance.pod.clone());
    let pump = tokio::spawn(async move {
        let (mut sink, mut messages) = ws.split();
        let (mut from_ssh, mut to_ssh) = tokio::io::split(ours);
        let up = async {
            loop {
                // Read straight into the message (the channel byte first): no copy.
                let mut message = Vec::with_capacity(MESSAGE + 1);
                message.push(DATA);
                let n = (&mut from_ssh).take(MESSAGE as u64).read_buf(&mut message).await?;
                if n == 0 {
                    // Our end is done sending; the pod's may still be talking.
                    return std::future::pending().await;
                }
                sink.send(Message::binary(message)).await?;
            }
        };
        let down = async {
            let mut opened = [false; 2];
            while let Some(message) = messages.next().await {
                let Message::Binary(bytes) = message? else { continue };
                match from_pod(&bytes, &mut opened) {
                    FromPod::Data(data) => to_ssh.write_all(data).await?,
                    FromPod::Error(text) if !text.is_empty() => ctx.debug(format_args!(
                        "port-forward to pod {pod} port {port}: {}",
                        String::from_utf8_lossy(text)
                    )),
                    _ => {}
                }
            }
            to_ssh.shutdown().await?;
            Ok(())
        };
        // The pod's end closing (or a failure either way) ends the stream; our end
        // closing only stops sending.
        let ended: std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> = tokio::select! {
            r = up => r,
            r = down => r,
        };
        if let Err(e) = ended {
            ctx.debug(format_args!("port-forward to pod {pod} port {port}: {e}"));
        }
    });
    Ok(PortForwardStream { stream, pump })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_channel_opens_with_the_port_then_carries_data_or_the_error() {
        let mut opened = [false; 2];
        assert_eq!(from_pod(&[DATA, 0x16, 0x08], &mut opened), FromPod::Skip, "data channel opening (port 2070)");
        assert_eq!(from_pod(&[ERROR, 0x16, 0x08], &mut opened), FromPod::Skip, "error channel opening");
        assert_eq!(from_pod(b"\x00SSH-2.0-x", &mut opened), FromPod::Data(b"SSH-2.0-x"));
        assert_eq!(from_pod(b"\x01connection refused", &mut opened), FromPod::Error(b"connection refused"));
        assert_eq!(from_pod(&[5, 1, 2], &mut opened), FromPod::Skip, "a channel of another port");
        assert_eq!(from_pod(&[], &mut opened), FromPod::Skip);
    }
}

//! The byte stream to the instance's sshd: a `pods/portforward` stream to the pod's
//! ssh port (the path `ssh`, `tunnel`, `cp` and `proxy` share).

use std::pin::Pin;
use std::task::{Context, Poll};

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};

use super::pod::Instance;
use crate::context::Ctx;
use crate::error::{Error, Result};

/// A port-forward stream to one port of a pod. Dropping it ends the forward.
pub struct PortForwardStream {
    stream: DuplexStream,
    forwarder: kube::api::Portforwarder,
}

impl Drop for PortForwardStream {
    fn drop(&mut self) {
        self.forwarder.abort();
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

/// Opens `pods/portforward` to the instance's ssh port. The stream's own error (the
/// kubelet's word on why it ended) is printed on stderr with `-v`.
pub async fn open_port_forward(ctx: &Ctx, instance: &Instance) -> Result<PortForwardStream> {
    let client = &ctx.client;
    let port = instance.settings.ssh_port;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &instance.namespace);
    let mut forwarder = pods
        .portforward(&instance.pod, &[port])
        .await
        .map_err(|e| Error::kube(e, format!("port-forward to pod \"{}\" port {port}", instance.pod)))?;
    let stream = forwarder
        .take_stream(port)
        .ok_or_else(|| Error::other(format!("port-forward to pod \"{}\": no stream for port {port}", instance.pod)))?;
    if let Some(errors) = forwarder.take_error(port) {
        let (pod, ctx) = (instance.pod.clone(), ctx.clone());
        tokio::spawn(async move {
            if let Some(e) = errors.await {
                ctx.debug(format_args!("port-forward to pod {pod} port {port}: {e}"));
            }
        });
    }
    Ok(PortForwardStream { stream, forwarder })
}

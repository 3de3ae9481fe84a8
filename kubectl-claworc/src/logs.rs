//! `kubectl claworc logs NAME [-f] [--container C] [--since D] [--tail N]`:
//! container logs through `pods/log`; `--file PATH` follows a file inside the
//! instance over SSH (`tail -F`).

use std::time::Duration;

use futures::AsyncReadExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, LogParams};
use tokio::io::AsyncWriteExt;

use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::session;
use crate::transport;
use crate::transport::ConnectOptions;

/// What `kubectl claworc logs` was asked for.
#[derive(Debug, Clone)]
pub struct LogsOptions {
    pub name: String,
    pub follow: bool,
    /// The container; `None` for the workload container.
    pub container: Option<String>,
    pub since: Option<Duration>,
    pub tail: Option<u32>,
    /// A file inside the instance, shown over SSH instead of the container logs.
    pub file: Option<String>,
    pub ssh: ConnectOptions,
}

/// The remote command for `--file`.
pub fn file_command(path: &str, follow: bool, tail: Option<u32>) -> String {
    let path = session::shell_quote(path);
    match (follow, tail) {
        (true, n) => format!("exec tail -n {} -F -- {path}", n.unwrap_or(10)),
        (false, Some(n)) => format!("exec tail -n {n} -- {path}"),
        (false, None) => format!("exec cat -- {path}"),
    }
}

/// Log parameters for `pods/log`.
pub fn log_params(args: &LogsOptions, container: String) -> LogParams {
    LogParams {
        container: Some(container),
        follow: args.follow,
        since_seconds: args.since.map(|d| d.as_secs().max(1) as i64),
        tail_lines: args.tail.map(i64::from),
        ..Default::default()
    }
}

/// Runs `logs`; returns the exit code (the remote one for `--file`).
pub async fn logs(ctx: &Ctx, args: &LogsOptions) -> Result<i32> {
    if let Some(path) = &args.file {
        let (_, conn) = transport::connect(ctx, &args.name, &args.ssh).await?;
        return session::interact(&conn, Some(&file_command(path, args.follow, args.tail))).await;
    }
    let instance = transport::find_instance(&ctx.client, &ctx.namespace, &args.name).await?;
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let container = match (&args.container, &instance.settings.target_container) {
        (Some(c), _) | (None, Some(c)) => c.clone(),
        (None, None) => {
            let pod = pods.get(&instance.pod).await.map_err(|e| Error::kube(e, format!("pod \"{}\"", instance.pod)))?;
            pod.spec
                .and_then(|s| s.containers.first().map(|c| c.name.clone()))
                .ok_or_else(|| Error::other(format!("pod \"{}\" has no containers", instance.pod)))?
        }
    };
    let mut stream = Box::pin(
        pods.log_stream(&instance.pod, &log_params(args, container.clone()))
            .await
            .map_err(|e| Error::kube(e, format!("logs of container \"{container}\" of pod \"{}\"", instance.pod)))?,
    );
    let mut stdout = tokio::io::stdout();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut buf).await.map_err(|e| Error::other(format!("reading logs: {e}")).with_source(e))?;
        if n == 0 {
            break;
        }
        stdout.write_all(&buf[..n]).await.map_err(|e| Error::other(format!("stdout: {e}")).with_source(e))?;
        stdout.flush().await.ok();
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_commands_quote_the_path() {
        assert_eq!(file_command("/var/log/app.log", true, None), "exec tail -n 10 -F -- /var/log/app.log");
        assert_eq!(file_command("my file", false, Some(5)), "exec tail -n 5 -- 'my file'");
        assert_eq!(file_command("$(rm -rf /)", false, None), "exec cat -- '$(rm -rf /)'");
    }
}

//! `claworc-webhook`: `serve`, `render-sshd-config`, `gen-certs`.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use claworc_contract::Settings;
use claworc_contract::claworc_sshd_config::SshdConfig;
use claworc_webhook::certs;
use claworc_webhook::inject::Config;
use claworc_webhook::server::{ServeOptions, Server};

#[derive(Parser, Debug)]
#[command(name = "claworc-webhook", version, about = "The claworc admission webhook")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve POST /mutate and /validate, GET /healthz, /readyz and /metrics over HTTPS.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "CLAWORC_LISTEN", default_value = "0.0.0.0:8443")]
        listen: SocketAddr,
        /// PEM certificate (chain); re-read when it changes.
        #[arg(long, env = "CLAWORC_TLS_CERT")]
        tls_cert: PathBuf,
        /// PEM private key; re-read when it changes.
        #[arg(long, env = "CLAWORC_TLS_KEY")]
        tls_key: PathBuf,
        /// Image holding the static claworc-sshd binary, delivered into every instance's pod.
        #[arg(long, env = "CLAWORC_SIDECAR_IMAGE", default_value = claworc_contract::names::SIDECAR_IMAGE)]
        sidecar_image: String,
        /// Seconds to keep serving, unready, after SIGTERM before closing the listener.
        #[arg(long, env = "CLAWORC_SHUTDOWN_DELAY", default_value_t = 5)]
        shutdown_delay: u64,
    },
    /// Print the claworc-sshd configuration the sidecar would get for a Deployment's annotations.
    RenderSshdConfig {
        /// A Deployment manifest (YAML or JSON, may hold several documents; `-` for stdin).
        #[arg(short = 'f', long = "filename")]
        file: Option<PathBuf>,
        /// An annotation KEY=VALUE (repeatable; overrides the file's).
        #[arg(long = "annotation", value_name = "KEY=VALUE")]
        annotations: Vec<String>,
        /// The Deployment name (default: from the file, else "instance").
        #[arg(long)]
        name: Option<String>,
    },
    /// Generate a CA and a serving certificate for the webhook Service.
    GenCerts {
        /// The webhook Service's name.
        #[arg(long, default_value = "claworc-webhook")]
        service: String,
        /// The Service's namespace.
        #[arg(long, default_value = claworc_contract::names::WEBHOOK_NAMESPACE)]
        namespace: String,
        /// Directory for ca.crt, tls.crt and tls.key (created 0700).
        #[arg(long)]
        out: PathBuf,
        /// An IP address SAN (repeatable), for a webhook reached by URL.
        #[arg(long = "ip")]
        ips: Vec<IpAddr>,
    },
}

claworc_allocator::global_allocator!();

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { listen, tls_cert, tls_key, sidecar_image, shutdown_delay } => {
            init_logging();
            let mut opts = ServeOptions::new(listen, tls_cert, tls_key);
            opts.shutdown_delay = std::time::Duration::from_secs(shutdown_delay);
            opts.config = Config { sidecar_image, ..Config::default() };
            serve(opts)
        }
        Command::RenderSshdConfig { file, annotations, name } => return render_sshd_config(file, &annotations, name),
        Command::GenCerts { service, namespace, out, ips } => gen_certs(service, namespace, out, ips),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("claworc-webhook: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// JSON lines on stdout; `RUST_LOG` filters (default `info`).
fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .init();
}

fn serve(opts: ServeOptions) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(async {
        let server = Server::start(opts).await?;
        server.run_until(shutdown_signal()).await
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT"),
    }
}

fn gen_certs(service: String, namespace: String, out: PathBuf, ips: Vec<IpAddr>) -> Result<()> {
    let generated = certs::generate(&certs::Request { service, namespace, ips })?;
    let written = certs::write(&out, &generated)?;
    println!("{}", written.ca_cert.display());
    println!("{}", written.tls_cert.display());
    println!("{}", written.tls_key.display());
    Ok(())
}

/// The first Deployment in a YAML/JSON stream: its name and annotations.
fn deployment_annotations(text: &str) -> Result<(Option<String>, BTreeMap<String, String>)> {
    use serde::Deserialize;
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let value = serde_yaml_ng::Value::deserialize(doc).context("parsing the manifest")?;
        if value.get("kind").and_then(|k| k.as_str()) != Some("Deployment") {
            continue;
        }
        let meta = value.get("metadata");
        let name = meta.and_then(|m| m.get("name")).and_then(|n| n.as_str()).map(str::to_string);
        let mut annotations = BTreeMap::new();
        if let Some(map) = meta.and_then(|m| m.get("annotations")).and_then(|a| a.as_mapping()) {
            for (k, v) in map {
                let (Some(k), Some(v)) = (k.as_str(), v.as_str()) else {
                    anyhow::bail!("metadata.annotations must map strings to strings");
                };
                annotations.insert(k.to_string(), v.to_string());
            }
        }
        return Ok((name, annotations));
    }
    anyhow::bail!("no Deployment in the manifest")
}

fn render_sshd_config(file: Option<PathBuf>, pairs: &[String], name: Option<String>) -> ExitCode {
    let loaded = match &file {
        None => Ok((None, BTreeMap::new())),
        Some(path) => {
            let mut text = String::new();
            let read = if path.as_os_str() == "-" {
                std::io::stdin().read_to_string(&mut text).map(|_| ())
            } else {
                std::fs::read_to_string(path).map(|t| text = t)
            };
            read.with_context(|| format!("reading {}", path.display())).and_then(|()| deployment_annotations(&text))
        }
    };
    let (file_name, mut annotations) = match loaded {
        Ok(found) => found,
        Err(e) => {
            eprintln!("claworc-webhook: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    for pair in pairs {
        let Some((k, v)) = pair.split_once('=') else {
            eprintln!("claworc-webhook: --annotation {pair:?}: use KEY=VALUE");
            return ExitCode::from(2);
        };
        annotations.insert(k.to_string(), v.to_string());
    }
    let name = name.or(file_name).unwrap_or_else(|| "instance".to_string());
    match Settings::from_annotations(&name, &annotations) {
        Ok(settings) => {
            print!("{}", SshdConfig::from_settings(&settings).render());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            ExitCode::from(2)
        }
    }
}

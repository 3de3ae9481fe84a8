//! `claworc-sshd [--config FILE]`: the SSH server of a claworc instance.
//!
//! The config (docs/claworc-sshd.md) comes from `--config FILE`, else from
//! the `CLAWORC_SSHD_CONFIG` environment variable (its text), else the
//! contract's defaults. Audit lines go to stderr; errors too, as one line.

use std::process::ExitCode;

use anyhow::Context;
use claworc_contract::claworc_sshd_config::SshdConfig;
use claworc_contract::names::ENV_SSHD_CONFIG;
use claworc_sshd::config::Config;
use claworc_sshd::server::Server;

const USAGE: &str = "usage: claworc-sshd [--config FILE]\n\
  Serves SSH on 127.0.0.1 (docs/claworc-sshd.md). Without --config, the config text is read from $CLAWORC_SSHD_CONFIG, else the defaults apply.";

fn config_text() -> anyhow::Result<Option<String>> {
    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next(), args.next()) {
        (None, ..) => Ok(std::env::var(ENV_SSHD_CONFIG).ok()),
        (Some("--config"), Some(file), None) => {
            std::fs::read_to_string(&file).map(Some).with_context(|| format!("--config {file}: cannot read"))
        }
        (Some("--version"), None, None) => {
            println!("claworc-sshd {}", claworc_contract::VERSION);
            std::process::exit(0)
        }
        (Some("-h" | "--help"), None, None) => {
            println!("{USAGE}");
            std::process::exit(0)
        }
        _ => anyhow::bail!("{USAGE}"),
    }
}

async fn run() -> anyhow::Result<()> {
    let sshd = match config_text()? {
        Some(text) => SshdConfig::parse(&text)?,
        None => SshdConfig::default(),
    };
    let server = Server::bind(Config::from_process(sshd)).await?;
    server.run().await?;
    Ok(())
}

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("claworc-sshd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("claworc-sshd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

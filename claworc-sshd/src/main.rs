//! `claworc-sshd [--config FILE]`: the SSH server of a claworc instance.
//! `claworc-sshd install DEST`: copy this binary to DEST (the delivery init container).
//! `claworc-sshd probe PORT`: exit 0 when an SSH server answers on 127.0.0.1:PORT.
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

// mimalloc, not the libc's: musl's allocator made the static build's tunnels
// and SFTP much slower (docs/claworc-sshd.md, "Measured"). Arenas are committed
// on demand, from before the first allocation: with the default (eager on Linux)
// the RSS stayed at its peak, 80 MiB after a 512 MiB SFTP transfer instead of 11 MiB.
claworc_allocator::global_allocator!();

const USAGE: &str = "usage: claworc-sshd [--config FILE] | install DEST | probe PORT | --version\n\
  Serves SSH on 127.0.0.1 (docs/claworc-sshd.md). Without --config, the config text is read from $CLAWORC_SSHD_CONFIG, else the defaults apply.\n\
  install DEST: copies this binary to DEST (mode 0555). probe PORT: exits 0 when SSH answers on 127.0.0.1:PORT.";

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

/// `install DEST` and `probe PORT`: small jobs that need no async runtime.
fn tool(args: &[String]) -> Option<ExitCode> {
    match args {
        [cmd, dest] if cmd == "install" => Some(match claworc_sshd::install::install(std::path::Path::new(dest)) {
            Ok(n) => {
                eprintln!("claworc-sshd: installed {dest} ({n} bytes)");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("claworc-sshd: install {dest}: {e}");
                ExitCode::FAILURE
            }
        }),
        [cmd, port] if cmd == "probe" => Some(match port.parse::<u16>() {
            Err(_) => {
                eprintln!("claworc-sshd: probe {port:?}: use a port number\n{USAGE}");
                ExitCode::from(2)
            }
            Ok(port) => match claworc_sshd::probe::probe(port, std::time::Duration::from_secs(2)) {
                Ok(line) => {
                    println!("{line}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("claworc-sshd: probe: {e}");
                    ExitCode::FAILURE
                }
            },
        }),
        _ => None,
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(code) = tool(&args) {
        return code;
    }
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

//! `kubectl-claworc`: parse the command line, run, and on failure print one line
//! `error: …` to stderr and exit with the error's code (see [`kubectl_claworc::error`]).

use clap::Parser;

fn main() {
    let cli = kubectl_claworc::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(kubectl_claworc::run(cli)) {
        eprintln!("error: {}", e.one_line());
        std::process::exit(e.exit_code());
    }
}

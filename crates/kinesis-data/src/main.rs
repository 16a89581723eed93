//! The `kinesis-data` command.

mod batch_cli;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use kinesis_data::{Config, Server};

#[derive(Parser)]
#[command(
    name = "kinesis-data",
    version,
    about = "Kinesis, Firehose, S3, Lambda and Athena on one machine, for real"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve every service on one port.
    Serve {
        /// Data directory (default: $XDG_DATA_HOME/kinesis-data or ~/.local/share/kinesis-data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Listen address (default 127.0.0.1:4566).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// TOML configuration file (see the `config` module docs and README).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Refuse POST /_kinesis-data/reset.
        #[arg(long)]
        no_reset: bool,
        /// `off` allows every authenticated request (no IAM policy checks).
        #[arg(long, value_parser = ["on", "off"])]
        iam: Option<String>,
    },
    /// Print a function's log (its instances' stdout and stderr, with START/END/REPORT
    /// lines) and follow it, as `tail -f`.
    Logs {
        /// Function name.
        function: String,
        /// Data directory of the server (default as `serve`).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// TOML configuration file (its data_dir is used).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print what is there and exit instead of following.
        #[arg(long)]
        no_follow: bool,
    },
    /// Create an S3 Batch Operations job on a running server (manifest from a local CSV or a
    /// bucket prefix) and follow it with a progress bar. Exit code 0: Complete without
    /// failed tasks; 1: Complete with failed tasks; 2: Failed or Cancelled; 3: an error.
    Batch(Box<batch_cli::BatchArgs>),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Serve {
            data_dir,
            listen,
            config,
            no_reset,
            iam,
        } => {
            let mut cfg = match config {
                Some(p) => Config::from_file(&p)?,
                None => Config::default(),
            };
            if let Some(d) = data_dir {
                cfg.data_dir = d;
            }
            if let Some(l) = listen {
                cfg.listen = l;
            }
            if no_reset {
                cfg.allow_reset = false;
            }
            if let Some(mode) = iam {
                cfg.iam = mode;
            }
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start tokio")?;
            rt.block_on(serve(cfg))
        }
        Command::Logs {
            function,
            data_dir,
            config,
            no_follow,
        } => {
            let cfg = match config {
                Some(p) => Config::from_file(&p)?,
                None => Config::default(),
            };
            let dir = data_dir.unwrap_or(cfg.data_dir);
            logs(&dir, &function, !no_follow)
        }
        Command::Batch(args) => std::process::exit(batch_cli::run(*args)),
    }
}

/// Prints `<data_dir>/lambda/run/logs/<function>.log` and, with `follow`, what is appended
/// to it (starting over if it is truncated).
fn logs(data_dir: &std::path::Path, function: &str, follow: bool) -> anyhow::Result<()> {
    use std::io::{Read as _, Seek as _, Write as _};
    anyhow::ensure!(
        kinesis_data::lambda::valid_function_name(function),
        "{function:?} is not a function name"
    );
    let path = data_dir.join("lambda/run/logs").join(format!("{function}.log"));
    if !follow && !path.exists() {
        anyhow::bail!("no log for function {function} at {}", path.display());
    }
    let mut out = std::io::stdout().lock();
    let mut pos = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if let Ok(mut f) = std::fs::File::open(&path) {
            let len = f.metadata()?.len();
            if len < pos {
                pos = 0;
            }
            f.seek(std::io::SeekFrom::Start(pos))?;
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                out.write_all(&buf[..n])?;
                pos += n as u64;
            }
            out.flush()?;
        }
        if !follow {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    let data_dir = cfg.data_dir.clone();
    let mut server = Server::start(cfg).await?;
    tracing::info!(data_dir = %data_dir.display(), "data directory");
    #[allow(clippy::print_stdout)]
    {
        println!("kinesis-data ready on {}", server.endpoint());
    }
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).context("SIGTERM handler")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        r = server.wait() => return r,
    }
    server.shutdown().await?;
    tracing::info!("stopped cleanly");
    Ok(())
}

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
        /// A pipeline file to apply once the server is up (idempotent; see docs/pipeline.md).
        #[arg(long)]
        pipeline: Option<PathBuf>,
    },
    /// Run the seed's six-part system end to end: build the example functions, start a
    /// server on a free port with a temporary data dir, apply the embedded pipeline and drive
    /// every part, narrating. Exit code 0 only when every part checked out.
    Demo {
        /// Clickstream events put into the stream.
        #[arg(long, default_value_t = 5000)]
        events: usize,
        /// Objects uploaded for parts 3 and 4.
        #[arg(long, default_value_t = 20)]
        uploads: usize,
        /// Leave the server running afterwards and print AWS CLI commands to explore it.
        #[arg(long)]
        keep: bool,
        /// Listen address with --keep (default a free port on 127.0.0.1).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Take the example function binaries from this directory instead of building them.
        #[arg(long, hide = true)]
        examples_dir: Option<PathBuf>,
    },
    /// Put stdin's lines into a Kinesis stream, one record per line (PutRecords in batches,
    /// throttled records retried).
    Put {
        /// Stream name.
        stream: String,
        /// Partition key of every record (default: the line number).
        #[arg(long)]
        partition_key: Option<String>,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Print a stream's records (every shard) and follow new ones.
    Tail {
        /// Stream name.
        stream: String,
        /// Start at the newest record instead of the oldest.
        #[arg(long)]
        latest: bool,
        /// Stop at the end of the data instead of following.
        #[arg(long)]
        no_follow: bool,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Run SQL with Athena and print the result as a table.
    Query {
        /// The statement.
        sql: String,
        /// Database (QueryExecutionContext).
        #[arg(long)]
        database: Option<String>,
        /// Result location (s3://bucket/prefix/); default: the workgroup's.
        #[arg(long)]
        output: Option<String>,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// List buckets, or the objects under s3://bucket/prefix.
    Ls {
        /// s3://bucket/prefix (none: every bucket).
        url: Option<String>,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Show what applying a pipeline file to a running server would change (nothing is
    /// changed). Exit code 0: nothing to change; 1: changes; 2: an error.
    Plan {
        /// The pipeline file.
        file: PathBuf,
        /// The server (default $AWS_ENDPOINT_URL, else http://localhost:4566).
        #[arg(long)]
        endpoint_url: Option<String>,
        /// Region (default $AWS_REGION, else us-east-1).
        #[arg(long)]
        region: Option<String>,
        /// Account the resources live in.
        #[arg(long, default_value = "000000000000")]
        account_id: String,
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
    /// Deploy a CDK cloud assembly (cdk.out/) or one CloudFormation template (JSON or YAML)
    /// to a running server: bootstrap resources made if absent, file assets published,
    /// stacks created or updated in dependency order with per-resource progress, outputs
    /// printed. Exit code 1 when a stack fails.
    Deploy {
        /// The cloud assembly directory or the template file.
        path: PathBuf,
        /// Deploy only this stack (artifact id or stack name; repeatable).
        #[arg(long = "stack")]
        stacks: Vec<String>,
        /// Stack name of a single template (default: the file name up to its first dot).
        #[arg(long)]
        stack_name: Option<String>,
        /// A parameter: Stack:Key=Value, or Key=Value for every stack that declares Key
        /// (repeatable).
        #[arg(long = "parameters")]
        parameters: Vec<String>,
        /// Record resources of types kinesis-data does not support as placeholders (with a
        /// warning) instead of failing the stack.
        #[arg(long)]
        allow_unsupported: bool,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Make what `cdk bootstrap` makes and `cdk deploy` needs (assets bucket, version
    /// parameter, CDK roles) on a running server, where missing, so that `cdk deploy` with
    /// AWS_ENDPOINT_URL works.
    Bootstrap {
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Delete stacks and wait: the ones named, or with --app PATH --all every stack of the
    /// assembly, each after the stacks that depend on it.
    Destroy {
        /// Stack names.
        stacks: Vec<String>,
        /// The cloud assembly the stacks come from (orders the deletions).
        #[arg(long)]
        app: Option<PathBuf>,
        /// Every stack of the --app assembly.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Create an S3 Batch Operations job on a running server (manifest from a local CSV or a
    /// bucket prefix) and follow it with a progress bar. Exit code 0: Complete without
    /// failed tasks; 1: Complete with failed tasks; 2: Failed or Cancelled; 3: an error.
    Batch(Box<batch_cli::BatchArgs>),
}

/// Which server the client commands talk to.
#[derive(clap::Args)]
struct TargetArgs {
    /// The server (default $AWS_ENDPOINT_URL, else http://localhost:4566).
    #[arg(long)]
    endpoint_url: Option<String>,
    /// Region (default $AWS_REGION, else us-east-1).
    #[arg(long)]
    region: Option<String>,
}

impl TargetArgs {
    fn resolve(self) -> kinesis_data::tools::Target {
        kinesis_data::tools::Target::resolve(self.endpoint_url, self.region)
    }
}

/// Runs a client command on a small runtime; errors print as `error: …` with exit code 1.
fn client_command<F>(f: F) -> anyhow::Result<()>
where
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start tokio")?;
    if let Err(e) = rt.block_on(f) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The demo narrates on stdout; the server's own log is kept to warnings.
    let default_level = if matches!(cli.command, Command::Demo { .. }) {
        "warn"
    } else {
        "info"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
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
            pipeline,
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
            let pipeline = match pipeline {
                Some(p) => match kinesis_data::pipeline::load(&p) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        eprintln!("error: {e}");
                        std::process::exit(2);
                    }
                },
                None => None,
            };
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start tokio")?;
            rt.block_on(serve(cfg, pipeline))
        }
        Command::Demo {
            events,
            uploads,
            keep,
            listen,
            examples_dir,
        } => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start tokio")?;
            let opts = kinesis_data::demo::DemoOptions {
                events,
                uploads,
                keep,
                examples_dir,
                listen,
                quiet: false,
            };
            match rt.block_on(kinesis_data::demo::run(opts)) {
                Ok(reports) if reports.iter().all(|r| r.passed) => Ok(()),
                Ok(_) => std::process::exit(1),
                Err(e) => {
                    eprintln!("error: {e:#}");
                    std::process::exit(2);
                }
            }
        }
        Command::Put {
            stream,
            partition_key,
            target,
        } => client_command(async move {
            let t = target.resolve();
            let n = kinesis_data::tools::put(&t, &stream, partition_key.as_deref(), std::io::stdin().lock()).await?;
            println!("{n} records put into {stream}");
            Ok(())
        }),
        Command::Tail {
            stream,
            latest,
            no_follow,
            target,
        } => client_command(async move {
            let t = target.resolve();
            kinesis_data::tools::tail(&t, &stream, latest, !no_follow, std::io::stdout().lock()).await?;
            Ok(())
        }),
        Command::Query {
            sql,
            database,
            output,
            target,
        } => client_command(async move {
            let t = target.resolve();
            let started = std::time::Instant::now();
            let (rows, scanned) = kinesis_data::tools::query(&t, &sql, database.as_deref(), output.as_deref()).await?;
            print!("{}", kinesis_data::tools::render_table(&rows));
            println!(
                "{} row(s), {scanned} bytes scanned, {:.2} s",
                rows.len().saturating_sub(1),
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }),
        Command::Ls { url, target } => client_command(async move {
            let t = target.resolve();
            kinesis_data::tools::ls(&t, url.as_deref(), std::io::stdout().lock()).await
        }),
        Command::Plan {
            file,
            endpoint_url,
            region,
            account_id,
        } => std::process::exit(plan(&file, endpoint_url, region, &account_id)),
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
        Command::Deploy {
            path,
            stacks,
            stack_name,
            parameters,
            allow_unsupported,
            target,
        } => client_command(async move {
            let t = target.resolve();
            let opts = kinesis_data::deploy::DeployOptions {
                path,
                stacks,
                stack_name,
                parameters,
                allow_unsupported,
            };
            kinesis_data::deploy::deploy(&t, &opts, &mut std::io::stdout().lock()).await?;
            Ok(())
        }),
        Command::Bootstrap { target } => client_command(async move {
            let t = target.resolve();
            kinesis_data::deploy::bootstrap_environment(&t, &mut std::io::stdout().lock()).await?;
            Ok(())
        }),
        Command::Destroy {
            stacks,
            app,
            all,
            target,
        } => client_command(async move {
            let t = target.resolve();
            kinesis_data::deploy::destroy(&t, app.as_deref(), &stacks, all, &mut std::io::stdout().lock()).await?;
            Ok(())
        }),
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

/// `kinesis-data plan`.
fn plan(file: &std::path::Path, endpoint: Option<String>, region: Option<String>, account: &str) -> i32 {
    let pipeline = match kinesis_data::pipeline::load(file) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let env = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
    let endpoint = endpoint
        .or_else(|| env("AWS_ENDPOINT_URL"))
        .unwrap_or_else(|| "http://localhost:4566".to_owned());
    let region = region
        .or_else(|| env("AWS_REGION"))
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| "us-east-1".to_owned());
    let run = async {
        let creds = kinesis_data::client::Credentials::resolve(None, None, None)?;
        kinesis_data::pipeline::apply_to(&endpoint, &region, account, creds, &pipeline, true, None).await
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start tokio: {e}");
            return 2;
        }
    };
    match rt.block_on(run) {
        Ok(changes) => {
            let mut pending = 0;
            for c in &changes {
                println!("{c}");
                if !matches!(c, kinesis_data::pipeline::Change::Unchanged(_)) {
                    pending += 1;
                }
            }
            println!("{pending} to change, {} unchanged", changes.len() - pending);
            i32::from(pending > 0)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            2
        }
    }
}

async fn serve(cfg: Config, pipeline: Option<kinesis_data::pipeline::Pipeline>) -> anyhow::Result<()> {
    let data_dir = cfg.data_dir.clone();
    let (region, account, creds) = (
        cfg.region.clone(),
        cfg.account_id.clone(),
        kinesis_data::pipeline::root_credentials(&cfg),
    );
    let mut server = Server::start(cfg).await?;
    tracing::info!(data_dir = %data_dir.display(), "data directory");
    if let Some(p) = pipeline {
        let changes = kinesis_data::pipeline::apply_to(&server.endpoint(), &region, &account, creds, &p, false, None)
            .await
            .context("applying the pipeline")?;
        for c in &changes {
            tracing::info!(change = %c, "pipeline");
        }
    }
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

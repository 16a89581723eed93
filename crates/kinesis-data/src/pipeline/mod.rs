//! Pipeline files: a TOML description of a whole pipeline with the seed's constructs
//! (roles, streams, buckets and their notifications, functions, delivery streams, event
//! source mappings, batch jobs, REST APIs, Glue databases and tables), applied to a server
//! through its public APIs, idempotently. `kinesis-data serve --pipeline FILE` applies one at
//! start; `kinesis-data plan FILE` shows what applying would change. The fields are
//! documented in `docs/pipeline.md`; `examples/kinesis-data.toml` (all six parts of the
//! seed) is embedded as [`DEFAULT_PIPELINE`].

pub mod apply;
pub mod model;

pub use apply::{Applier, Change};
pub use model::{FileError, Pipeline, load, parse};

/// `examples/kinesis-data.toml`: the six-part system (`kinesis-data demo` runs it).
pub const DEFAULT_PIPELINE: &str = include_str!("../../../../examples/kinesis-data.toml");

use crate::client::{Client, Credentials};

/// Applies (`dry_run`: plans) `pipeline` on the server at `endpoint` with the given keys;
/// returns what changed (or would).
pub async fn apply_to(
    endpoint: &str,
    region: &str,
    account: &str,
    credentials: Credentials,
    pipeline: &Pipeline,
    dry_run: bool,
    examples_dir: Option<std::path::PathBuf>,
) -> anyhow::Result<Vec<Change>> {
    let client = Client::new(endpoint, region, credentials)?;
    let mut applier = Applier::new(&client, account, region, dry_run).with_examples_dir(examples_dir);
    let result = applier.apply(pipeline).await;
    match result {
        Ok(()) => Ok(applier.changes),
        Err(e) => {
            let done: Vec<String> = applier.changes.iter().map(ToString::to_string).collect();
            if done.is_empty() {
                Err(e)
            } else {
                Err(e.context(format!("after:\n  {}", done.join("\n  "))))
            }
        }
    }
}

/// The server's own root keys (what `serve --pipeline` applies with).
pub fn root_credentials(config: &crate::Config) -> Credentials {
    Credentials {
        access_key_id: config.access_key_id.clone(),
        secret_access_key: config.secret_access_key.clone(),
        session_token: None,
    }
}

//! kinesis-data: the whole AWS streaming pipeline on one machine. This crate is the
//! composition root: it reads the configuration, opens storage, builds each engine and its
//! adapter, wires them into the edge, serves the one port, and shuts down in order
//! (stop accepting, finish in-flight requests, sync every log). `main.rs` is the CLI over it;
//! tests start the same [`Server`] in-process.

pub mod apigateway;
pub mod athena;
pub mod batch;
pub mod client;
pub mod config;
pub mod demo;
pub mod deploy;
pub mod lambda;
pub mod logs;
pub mod pipeline;
pub mod ports;
pub mod replication;
pub mod stacks;
pub mod stacks_ssm;
pub mod tools;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use kd_api_firehose::FirehoseApi;
use kd_api_iam::IamApi;
use kd_api_kinesis::KinesisApi;
use kd_api_lambda::LambdaApi;
use kd_delivery::Delivery;
use kd_edge::{Edge, EdgeConfig, ResetHook, Services};
use kd_functions::Functions;
use kd_iam::store::IamStore;
use kd_iam::{AccessKey, Iam};
use kd_storage::{Clock, MetaStore, SystemClock};
use kd_stream::Engine;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use config::Config;

/// A running server.
pub struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    sweeper: JoinHandle<()>,
    engine: Arc<Engine>,
    delivery: Arc<Delivery>,
    functions: Arc<Functions>,
    batch: Arc<kd_batch::Batch>,
    gateway: Arc<kd_gateway::Gateway>,
    cw_logs: Arc<kd_logs::Logs>,
    dispatcher: JoinHandle<()>,
    replicator: JoinHandle<()>,
}

impl Server {
    /// Opens storage, recovers, binds the listener and starts serving. Returns once the
    /// server accepts connections.
    pub async fn start(config: Config) -> anyhow::Result<Server> {
        Self::start_with_clock(config, Arc::new(SystemClock)).await
    }

    /// As [`Server::start`], with a clock of the caller's (tests drive retention with it).
    pub async fn start_with_clock(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Server> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
        let mut keys = vec![AccessKey::new(
            &config.access_key_id,
            &config.secret_access_key,
            &config.account_id,
        )?];
        for k in &config.extra_access_keys {
            keys.push(AccessKey::new(&k.access_key_id, &k.secret_access_key, &k.account_id)?);
        }
        let meta =
            Arc::new(MetaStore::open(&config.data_dir.join("meta.redb")).context("cannot open the metadata store")?);
        let iam_store = Arc::new(IamStore::open(meta.clone(), clock.clone()).context("cannot open the IAM store")?);
        let iam = Arc::new(Iam::with_store(keys, iam_store.clone()));
        let enforce = config.iam_enforced()?;
        let authz = Arc::new(kd_iam::authz::Authorizer::new(iam.clone(), enforce));
        let mut sc = kd_stream::Config::new(config.data_dir.join("streams"));
        sc.create_delay_ms = config.kinesis.create_delay_ms as i64;
        sc.update_delay_ms = config.kinesis.update_delay_ms as i64;
        sc.shard_limit = config.kinesis.shard_limit;
        sc.enforce_write_limits = config.kinesis.enforce_write_limits;
        sc.segment_bytes = config.kinesis.segment_mib.max(1) * 1024 * 1024;
        sc.fsync = config.fsync_policy()?;
        let engine = Arc::new(Engine::open(sc, meta.clone(), clock.clone()).context("cannot open the stream engine")?);

        let mut oc = kd_objects::Config::new(config.data_dir.join("s3"));
        oc.min_part_size = config.s3.min_part_size;
        oc.inline_max = config.s3.inline_max;
        let objects =
            Arc::new(kd_objects::Objects::open(oc, meta.clone(), clock.clone()).context("cannot open the S3 engine")?);
        let actor = ports::RoleActor::new(iam.clone(), authz.clone());
        let mut dc = kd_delivery::Config::new(config.data_dir.join("firehose"));
        dc.create_delay_ms = config.firehose.create_delay_ms as i64;
        dc.gzip_level = config.firehose.gzip_level.min(9);
        dc.poll_interval_ms = config.firehose.poll_interval_ms.max(1);
        dc.start_at_trim_horizon = config.firehose.start_at_trim_horizon;
        let delivery = Delivery::open(
            dc,
            meta.clone(),
            clock.clone(),
            Arc::new(ports::S3Sink::new(objects.clone(), actor.clone())),
            Arc::new(ports::KinesisSource::new(engine.clone(), actor.clone())),
        )
        .context("cannot open the Firehose engine")?;
        // The listener is bound first: functions get its address as AWS_ENDPOINT_URL.
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let functions = open_functions(&config, addr, &meta, &clock, &iam_store, enforce, &objects)?;
        functions.set_stream_reader(Arc::new(lambda::KinesisReader::new(engine.clone(), actor.clone())));
        delivery.set_transformer(Arc::new(lambda::LambdaTransformer::new(
            functions.clone(),
            actor.clone(),
        )));
        let dispatcher = lambda::dispatch_s3_events(objects.clone(), functions.clone());
        let replicator = replication::Replicator::new(objects.clone(), iam_store.clone(), actor.clone(), enforce);
        let replicator_task = replicator.clone().spawn(config.s3.replication_parallelism);
        let bc = kd_batch::Config {
            parallelism: config.batch.parallelism.max(1),
            max_attempts: config.batch.max_attempts.max(1),
            max_manifest_bytes: config.batch.max_manifest_mib.max(1) * 1024 * 1024,
            ..kd_batch::Config::default()
        };
        let batch = kd_batch::Batch::open(
            bc,
            meta.clone(),
            clock.clone(),
            Arc::new(batch::BatchS3::new(objects.clone(), actor.clone(), replicator)),
            Arc::new(batch::BatchLambda::new(functions.clone(), actor.clone())),
        )
        .context("cannot open the S3 Batch Operations engine")?;
        let catalog = kd_catalog::Catalog::open(meta.clone(), clock.clone()).context("cannot open the Glue catalog")?;
        let query = Arc::new(
            kd_query::Query::open(
                meta.clone(),
                clock.clone(),
                Arc::new(athena::GlueCatalog::new(catalog.clone())),
                Arc::new(athena::BucketStores::new(objects.clone())),
                kd_query::Config {
                    primary_output_location: config.athena_output_location()?,
                    ..kd_query::Config::default()
                },
            )
            .context("cannot open the Athena engine")?,
        );
        let reset_catalog = catalog.clone();
        let reset_query = query.clone();
        let gc = kd_gateway::Config {
            default_timeout_ms: config.apigateway.integration_timeout_ms.clamp(50, 29_000),
        };
        let gateway = kd_gateway::Gateway::open(
            gc,
            meta.clone(),
            clock.clone(),
            Arc::new(apigateway::GatewayLambda::new(functions.clone())),
            Arc::new(apigateway::GatewayHttp::new()),
        )
        .context("cannot open the API Gateway engine")?;
        let reset_gateway = gateway.clone();
        let (reset_engine, reset_objects, reset_iam, reset_delivery, reset_functions, reset_batch) = (
            engine.clone(),
            objects.clone(),
            iam_store.clone(),
            delivery.clone(),
            functions.clone(),
            batch.clone(),
        );
        let custom_responses = Arc::new(kd_stacks::custom::CustomResponses::new());
        let stacks = kd_stacks::Stacks::open(
            meta.clone(),
            clock.clone(),
            Arc::new(stacks::ServiceProvisioner::new(
                format!("http://{addr}"),
                pipeline::root_credentials(&config),
                iam.clone(),
                enforce,
                custom_responses.clone(),
                Duration::from_secs(config.cloudformation.custom_resource_timeout_secs.max(1)),
            )),
        )
        .context("cannot open the CloudFormation engine")?;
        let ssm =
            kd_ssm::ParameterStore::open(meta.clone(), clock.clone()).context("cannot open the SSM parameter store")?;
        stacks.set_parameter_source(Arc::new(stacks_ssm::StoreParameters::new(ssm.clone())));
        let cw_logs = kd_logs::Logs::open(kd_logs::Config::default(), meta.clone(), clock.clone())
            .context("cannot open the CloudWatch Logs engine")?;
        functions.set_log_destination(Arc::new(logs::FunctionLogs::new(cw_logs.clone())));
        let reset_stacks = stacks.clone();
        let reset_ssm = ssm.clone();
        let reset_logs = cw_logs.clone();
        let reset: ResetHook = Arc::new(move || {
            let c = reset_catalog.clone();
            let q = reset_query.clone();
            let g = reset_gateway.clone();
            let (e, o, i, d, f, b) = (
                reset_engine.clone(),
                reset_objects.clone(),
                reset_iam.clone(),
                reset_delivery.clone(),
                reset_functions.clone(),
                reset_batch.clone(),
            );
            let st = reset_stacks.clone();
            let sp = reset_ssm.clone();
            let lg = reset_logs.clone();
            Box::pin(async move {
                // Stacks, jobs and delivery first: they read and write the other engines.
                st.reset().await.map_err(|e| e.to_string())?;
                g.reset().await.map_err(|e| e.to_string())?;
                b.reset().await.map_err(|e| e.to_string())?;
                d.reset().await.map_err(|e| e.to_string())?;
                f.reset().await.map_err(|e| e.to_string())?;
                e.reset().await.map_err(|e| e.to_string())?;
                o.reset().await.map_err(|e| e.to_string())?;
                q.reset().await.map_err(|e| e.to_string())?;
                c.reset().await.map_err(|e| e.to_string())?;
                sp.reset().await.map_err(|e| e.to_string())?;
                lg.reset().await.map_err(|e| e.to_string())?;
                tokio::task::spawn_blocking(move || i.reset())
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())
            })
        });
        let s3 = kd_api_s3::service(
            iam.clone(),
            authz.clone(),
            objects.clone(),
            config.s3.base_domains.clone(),
            Some(Arc::new(lambda::FunctionDestinations::new(functions.clone()))),
        );
        let edge = Edge::new(
            EdgeConfig {
                default_region: config.region.clone(),
                allow_reset: config.allow_reset,
            },
            iam,
            authz.clone(),
            Services {
                kinesis: KinesisApi::new(engine.clone()),
                firehose: FirehoseApi::new(delivery.clone(), iam_store.clone(), enforce),
                iam: IamApi::new(iam_store.clone(), enforce),
                s3,
                lambda: LambdaApi::new(functions.clone()),
                s3control: kd_api_s3control::S3ControlApi::new(batch.clone(), iam_store.clone(), enforce),
                glue: kd_api_glue::GlueApi::new(catalog.clone()),
                athena: kd_api_athena::AthenaApi::new(query.clone()),
                apigateway: kd_api_apigateway::ApiGatewayApi::new(gateway.clone()),
                cloudformation: kd_api_cloudformation::CloudFormationApi::new(
                    stacks.clone(),
                    Arc::new(stacks::BucketTemplates::new(objects.clone())),
                )
                .with_responses(custom_responses)
                .allow_unsupported(config.cloudformation.allow_unsupported),
                ssm: kd_api_ssm::SsmApi::new(ssm.clone()),
                logs: kd_api_logs::LogsApi::new(cw_logs.clone()),
            },
            reset,
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(kd_edge::serve(listener, edge.router(), async move {
            let _ = stopped.await;
        }));
        let sweep_engine = engine.clone();
        let sweep_logs = cw_logs.clone();
        let period = Duration::from_secs(config.kinesis.retention_check_secs.max(1));
        let sweeper = tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                match sweep_engine.enforce_retention().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(segments = n, "retention removed expired segments"),
                    Err(e) => tracing::warn!(error = %e, "retention sweep failed"),
                }
                match sweep_logs.sweep().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(events = n, "CloudWatch Logs retention and caps removed events"),
                    Err(e) => tracing::warn!(error = %e, "CloudWatch Logs sweep failed"),
                }
            }
        });
        Ok(Server {
            addr,
            stop: Some(stop),
            task,
            sweeper,
            engine,
            delivery,
            functions,
            batch,
            gateway,
            cw_logs,
            dispatcher,
            replicator: replicator_task,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The endpoint URL (`http://127.0.0.1:PORT`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The stream engine (tests reach into it for fault injection).
    pub fn stream_engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The Firehose engine.
    pub fn delivery(&self) -> &Arc<Delivery> {
        &self.delivery
    }

    /// The Lambda engine.
    pub fn functions(&self) -> &Arc<Functions> {
        &self.functions
    }

    /// The API Gateway engine.
    pub fn gateway(&self) -> &Arc<kd_gateway::Gateway> {
        &self.gateway
    }

    /// The CloudWatch Logs engine.
    pub fn logs(&self) -> &Arc<kd_logs::Logs> {
        &self.cw_logs
    }

    /// The S3 Batch Operations engine.
    pub fn batch(&self) -> &Arc<kd_batch::Batch> {
        &self.batch
    }

    /// Stops accepting, finishes in-flight requests, delivers what Firehose buffers, syncs
    /// every log.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.sweeper.abort();
        self.dispatcher.abort();
        self.replicator.abort();
        (&mut self.task)
            .await
            .context("server task panicked")?
            .context("server failed")?;
        if let Err(e) = self.delivery.flush_all().await {
            // Undelivered data stays in the delivery streams' own logs for the next start.
            tracing::warn!(error = %e, "Firehose could not deliver everything it buffered before stopping");
        }
        let _ = (&mut self.dispatcher).await;
        self.batch.shutdown().await;
        self.functions.shutdown().await;
        self.engine.sync_all().context("final sync failed")?;
        Ok(())
    }

    /// Waits until the server stops by itself (it only does on a listener error).
    pub async fn wait(&mut self) -> anyhow::Result<()> {
        (&mut self.task)
            .await
            .context("server task panicked")?
            .context("server failed")?;
        Ok(())
    }
}

/// Opens the Lambda engine with its ports.
fn open_functions(
    config: &Config,
    addr: SocketAddr,
    meta: &Arc<MetaStore>,
    clock: &Arc<dyn Clock>,
    iam_store: &Arc<IamStore>,
    enforce: bool,
    objects: &Arc<kd_objects::Objects>,
) -> anyhow::Result<Arc<Functions>> {
    let lc = &config.lambda;
    let mut fc = kd_functions::Config::new(config.data_dir.join("lambda"), format!("http://{addr}"));
    fc.host.interpreters = lc.interpreters.clone();
    fc.host.python = lc.python.clone();
    fc.host.node = lc.node.clone();
    fc.host.python_path = lc.python_path.clone();
    fc.host.node_path = lc.node_path.clone();
    fc.host.max_concurrency = lc.max_concurrency.max(1);
    fc.host.idle_timeout = Duration::from_secs(lc.idle_timeout_secs.max(1));
    fc.host.wait_for_instance = Duration::from_millis(lc.wait_for_instance_ms);
    fc.async_retry_delays_ms = lc.async_retry_delays_ms.clone();
    fc.activation_delay_ms = lc.activation_delay_ms as i64;
    let roles = lambda::LambdaRoles::new(
        iam_store.clone(),
        enforce,
        kd_functions::host::Credentials {
            access_key_id: config.access_key_id.clone(),
            secret_access_key: config.secret_access_key.clone(),
            session_token: String::new(),
        },
    );
    Functions::open(
        fc,
        meta.clone(),
        clock.clone(),
        Arc::new(roles),
        Arc::new(lambda::S3CodeFetcher::new(objects.clone())),
    )
    .context("cannot open the Lambda engine")
}

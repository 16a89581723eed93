//! `kinesis-data demo` (the library function behind it) end to end, with the workspace's
//! debug builds of the example functions: all six parts of the seed check out.

use kinesis_data::demo::{DemoOptions, run};

use crate::lambda_e2e::example_binary;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_demo_checks_out_all_six_parts() -> anyhow::Result<()> {
    let mut dir = None;
    for name in ["s3-copy", "batch-copy", "items-api"] {
        dir = example_binary(name)?.parent().map(std::path::Path::to_path_buf);
    }
    let reports = run(DemoOptions {
        events: 2_000,
        uploads: 10,
        keep: false,
        examples_dir: dir,
        listen: None,
        quiet: true,
    })
    .await?;
    assert_eq!(reports.len(), 6);
    for r in &reports {
        assert!(r.passed, "part {} ({}) failed: {}", r.part, r.title, r.detail);
    }
    Ok(())
}

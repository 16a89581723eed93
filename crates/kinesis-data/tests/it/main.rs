//! One integration-test binary for the server: wire tests with aws-sdk-kinesis against the
//! in-process server on 127.0.0.1:0, and end-to-end tests that start the built binary.

mod apigateway_e2e;
mod apigateway_wire;
mod athena_e2e;
mod athena_wire;
mod authz_wire;
mod batch_cli;
mod batch_wire;
mod cdk_e2e;
mod cfn_cli_e2e;
mod cloudformation_providers;
mod cloudformation_wire;
mod common;
mod demo_e2e;
mod deploy_e2e;
mod e2e;
mod firehose_wire;
mod glue_wire;
mod iam_wire;
mod kinesis_errors;
mod kinesis_wire;
mod lambda_e2e;
mod lambda_wire;
mod logs_wire;
mod pipeline_e2e;
mod s3_replication;
mod s3_versioning;
mod s3_wire;
mod ssm_wire;

#!/usr/bin/env node
// The kinesis-data CDK example: three stacks that `cdk synth` turns into a cloud assembly
// which `kinesis-data deploy cdk.out` deploys unchanged.
//
//   KdStorage   the data bucket (autoDeleteObjects: Custom::S3AutoDeleteObjects) and a Python
//               function that S3 invokes on every PUT under uploads/ (Custom::S3BucketNotifications)
//   KdPipeline  a Kinesis stream (2 shards) and a Firehose delivery stream from it into the bucket
//   KdApi       a REST API: GET / and GET /{id} answer from a Python function, POST / puts the
//               body into the stream (grantWrite)
//   KdAnalytics a Glue database and table over the delivered events, an Athena workgroup with an
//               enforced result location, and a Rust (provided.al2023) function with a log group
const cdk = require('aws-cdk-lib');
const { StorageStack } = require('../lib/storage');
const { PipelineStack } = require('../lib/pipeline');
const { ApiStack } = require('../lib/api');
const { AnalyticsStack } = require('../lib/analytics');

const app = new cdk.App();
const env = {
  account: process.env.CDK_DEFAULT_ACCOUNT || '000000000000',
  region: process.env.CDK_DEFAULT_REGION || 'us-east-1',
};

const storage = new StorageStack(app, 'KdStorage', { env });
const pipeline = new PipelineStack(app, 'KdPipeline', { env, bucket: storage.bucket });
new ApiStack(app, 'KdApi', { env, stream: pipeline.stream });
new AnalyticsStack(app, 'KdAnalytics', { env, bucket: storage.bucket });

//! Lambda engine: functions (configuration, code packages, versions, aliases, resource
//! policies), their execution as local child processes speaking the Lambda Runtime API
//! ([`host`]), the durable asynchronous-invoke queue, and Kinesis event source mappings.
//! It sits below `api-lambda` (the restJson1 control and invoke API) and is called by the
//! composition root for S3 bucket notifications and Firehose processors. It never speaks
//! HTTP to AWS clients; the only HTTP it serves is each instance's Runtime API on loopback.

pub mod host;

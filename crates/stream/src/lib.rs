//! The Kinesis Data Streams engine. It owns streams (per account and region), their shards
//! and hash-key ranges, sequence numbers, shard iterators, resharding and retention. It sits
//! below the `api-kinesis` adapter, which turns wire requests into calls on [`Engine`], and
//! above `kd-storage`: each stream's records live in one durable segmented log whose
//! partitions are the stream's shards, and each stream's metadata is one document in the
//! metadata store. It knows nothing of HTTP or wire formats.

pub mod engine;
pub mod error;
pub mod hash;
pub mod model;
pub mod seq;

pub use engine::{Config, Engine, parse_stream_arn};
pub use error::{Error, Result};
pub use model::*;

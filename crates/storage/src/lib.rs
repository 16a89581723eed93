//! Durable storage primitives with no AWS words in them.
//!
//! This crate knows nothing about streams, shards or sequence numbers. It offers two
//! building blocks:
//!
//! * [`log::Log`]: a durable, segmented, append-only record log with group commit. Records
//!   carry an opaque key and payload and live in numbered *partitions* of one log; offsets
//!   are log-wide and assigned by a single writer thread.
//! * [`meta::MetaStore`]: a small transactional key/value store (named tables of string keys
//!   and byte values) on top of redb.
//!
//! The Kinesis engine (`kd-stream`) keeps each stream's records in one [`Log`] (partitions
//! = shards) and its metadata (stream descriptions, shard maps, consumer registrations, ...)
//! in a [`MetaStore`]. Time comes from a [`Clock`] so tests can drive it by hand.

pub mod civil;
pub mod clock;
mod error;
pub mod log;
pub mod meta;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::Error;
pub use log::{AppendBatch, Appended, FaultInjector, FsyncPolicy, Log, LogConfig, ReadResult, Record, StoredRecord};
pub use meta::{GroupedWrite, MetaOp, MetaStore, Snapshot, SnapshotRange, TableSnapshot};

//! ferrotel: a telemetry collector in the mould of the OpenTelemetry Collector.
//!
//! Data path: receivers decode OTLP into [`signal::Batch`]es (the OTLP protobuf types, moved
//! between stages), hand them to every pipeline listing them; each pipeline's processors pass
//! them on; a fan-out gives them to the pipeline's exporters, each with its own queue and
//! retries ([`exporters::helper`]). See `README.md` for the architecture.

pub mod admission;
pub mod batcher;
pub mod client;
pub mod component;
pub mod config;
pub mod connectors;
pub mod disk_queue;
pub mod exporters;
pub mod extensions;
pub mod featuregate;
#[doc(hidden)]
pub mod fuzz;
pub mod health;
pub mod kube;
pub mod logs;
pub mod msgpack;
pub mod net;
pub mod ottl;
pub mod pipeline;
pub mod processors;
pub mod prom;
pub mod proto;
pub mod receivers;
pub mod registry;
pub mod selfexport;
pub mod signal;
pub mod stanza;
pub mod storage;
pub mod tap;
pub mod telemetry;
pub mod text;
pub mod thrift;

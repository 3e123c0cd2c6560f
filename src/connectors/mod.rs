//! Connectors: components that are an exporter of one pipeline and a receiver of others, so
//! that pipelines can be chained and signals converted (`count` turns spans into metrics).
//! The pipeline builder gives each instance the heads of the pipelines it feeds
//! ([`crate::component::Downstream`]).

pub mod count;
pub mod forward;
pub mod otlpjson;
pub mod routing;
pub mod shared;
pub mod spanmetrics;

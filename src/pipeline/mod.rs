//! The service graph: checks a config completely (the same checks for `validate` and for a
//! start), then builds it, starts it, and stops it in order.
//!
//! Receivers are shared (one listener feeds every pipeline listing it), processors are per
//! pipeline, exporters are shared (one queue fed by every pipeline listing it).

mod run;
mod switch;
pub mod tapped;
mod validate;

pub use run::{ReloadSummary, Running, start, test_context};
pub use validate::{Validated, validate_file, validate_sources, validate_str};

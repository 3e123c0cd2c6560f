pub mod config;
pub mod signal;

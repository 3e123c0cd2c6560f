//! The OTLP export responses: one shape for the three signals (`partial_success = 1` holding
//! `rejected_* = 1` and `error_message = 2`), written by the OTLP receiver and read by the OTLP
//! exporters.

/// The shape shared by the three OTLP export responses: `partial_success = 1` holding
/// `rejected_* = 1` and `error_message = 2`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportResponse {
    #[prost(message, optional, tag = "1")]
    pub partial_success: Option<PartialSuccess>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PartialSuccess {
    #[prost(int64, tag = "1")]
    pub rejected: i64,
    #[prost(string, tag = "2")]
    pub error_message: String,
}

pub fn log_partial_success(exporter: &str, resp: &ExportResponse) {
    if let Some(p) = &resp.partial_success
        && (p.rejected > 0 || !p.error_message.is_empty())
    {
        tracing::warn!(exporter, rejected = p.rejected, message = %p.error_message, "the receiver rejected part of the data");
    }
}

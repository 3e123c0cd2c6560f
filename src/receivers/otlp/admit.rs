//! Admission of a request body: its decoded cost scanned and reserved against the memory
//! budget before it is decoded, invalid items refused, and the answer chosen.

use std::sync::Arc;

use crate::signal::{Batch, Signal};

pub(crate) use crate::receivers::Output as Entry;

/// Why a request was not taken, and so how it is answered.
#[derive(Debug)]
pub(crate) enum Refused {
    /// Malformed: HTTP 400, gRPC `INVALID_ARGUMENT`.
    Invalid(String),
    /// Too large to take ever, in this form: HTTP 413, gRPC `RESOURCE_EXHAUSTED` without retry
    /// info (permanent for this request; a client should split it).
    TooLarge { msg: String, items: usize },
    /// Not now, memory is in use: HTTP 429 with `Retry-After`, gRPC `RESOURCE_EXHAUSTED` with
    /// `RetryInfo`.
    Busy { msg: String, items: usize },
}

impl Refused {
    /// Items the client sent and was refused (for `otelcol_receiver_refused_*`); unknown for a
    /// malformed request.
    pub(crate) fn items(&self) -> usize {
        match self {
            Refused::Invalid(_) => 0,
            Refused::TooLarge { items, .. } | Refused::Busy { items, .. } => *items,
        }
    }
}

/// A request that was admitted: its batch and the memory reserved for it, held until the
/// pipeline has taken the batch.
pub(crate) struct Admitted {
    pub batch: Batch,
    /// Items dropped for invalid ids, and why (answered as partial success).
    pub rejected: i64,
    pub why: String,
    pub _reservation: crate::admission::Reservation,
}

/// Reads an OTLP/protobuf export request, admitting it by what it will cost once decoded: the
/// wire scan validates it, counts its items and estimates the decoded size; a request above
/// `max_decoded` bytes is refused for good, and the estimate is reserved against the memory
/// budget before anything is decoded. A request with valid ids travels on encoded; one with
/// invalid ids is decoded so that [`reject_invalid`] can drop just those items. An empty body
/// is an empty request.
pub(crate) fn admit_protobuf(
    signal: Signal,
    body: bytes::Bytes,
    max_decoded: u64,
    budget: &Arc<crate::admission::Budget>,
) -> Result<Admitted, Refused> {
    use opentelemetry_proto::tonic::collector::{logs::v1 as l, metrics::v1 as m, trace::v1 as t};
    use prost::Message;
    let scan = crate::signal::wire::scan(signal, &body)
        .map_err(|e| Refused::Invalid(format!("invalid OTLP/protobuf {signal} request: {e}")))?;
    // The wire bytes stay with an encoded batch; decoding adds the structs.
    let cost = (scan.decoded_bytes + body.len()) as u64;
    let items = scan.items;
    if cost > max_decoded {
        return Err(Refused::TooLarge {
            msg: format!(
                "the {signal} request holds {items} {} taking about {} MiB once decoded, more than the receiver's limit of {} MiB (max_decoded_size); send smaller requests",
                signal.item_name(),
                cost.div_ceil(1 << 20),
                max_decoded >> 20,
            ),
            items,
        });
    }
    let reservation = budget.reserve(cost).map_err(|e| match e {
        crate::admission::Refusal::TooLarge { .. } => Refused::TooLarge {
            msg: format!("{signal} request of {items} {}: {e}", signal.item_name()),
            items,
        },
        crate::admission::Refusal::Busy { .. } => Refused::Busy {
            msg: format!("{signal} request of {items} {}: {e}", signal.item_name()),
            items,
        },
    })?;
    if body.is_empty() {
        return Ok(Admitted {
            batch: Batch::empty(signal),
            rejected: 0,
            why: String::new(),
            _reservation: reservation,
        });
    }
    if scan.ids_ok {
        return Ok(Admitted {
            batch: Batch::Encoded(crate::signal::Encoded::new(signal, body, items)),
            rejected: 0,
            why: String::new(),
            _reservation: reservation,
        });
    }
    let err = |e: prost::DecodeError| {
        Refused::Invalid(format!("invalid OTLP/protobuf {signal} request: {e}"))
    };
    let mut batch = match signal {
        // Profiles pass encoded, and their ids are not checked (see wire::scan).
        Signal::Profiles => Batch::Encoded(crate::signal::Encoded::new(signal, body, items)),
        Signal::Traces => Batch::Traces(
            t::ExportTraceServiceRequest::decode(body)
                .map_err(err)?
                .resource_spans,
        ),
        Signal::Metrics => Batch::Metrics(
            m::ExportMetricsServiceRequest::decode(body)
                .map_err(err)?
                .resource_metrics,
        ),
        Signal::Logs => Batch::Logs(
            l::ExportLogsServiceRequest::decode(body)
                .map_err(err)?
                .resource_logs,
        ),
    };
    let (rejected, why) = reject_invalid(&mut batch);
    Ok(Admitted {
        batch,
        rejected,
        why,
        _reservation: reservation,
    })
}

/// Whether decoding `body` (compressed with `encoding`) may take long enough (milliseconds) to
/// belong on the blocking pool rather than on the workers that serve every other request: a
/// large body, or one that says it inflates to a large one (a 20 KiB gzip body can inflate to
/// 20 MiB), or a deflate body of some size (which says nothing).
pub(crate) fn heavy(encoding: &str, body: &[u8]) -> bool {
    const LARGE: u64 = 1 << 20;
    body.len() > 256 << 10
        || match crate::net::compression::size_hint(encoding, body) {
            Some(n) => n > LARGE,
            None => body.len() > 16 << 10,
        }
}

/// Reads an OTLP/JSON export request: transcoded to protobuf (memory for that reserved first,
/// up to twice the JSON plus the buffer's growth), then admitted as a protobuf one.
pub(crate) fn admit_json(
    signal: Signal,
    json: Vec<u8>,
    max_decoded: u64,
    budget: &Arc<crate::admission::Budget>,
) -> Result<Admitted, Refused> {
    let transcoding = budget.reserve(3 * json.len() as u64).map_err(|e| match e {
        crate::admission::Refusal::TooLarge { .. } => Refused::TooLarge {
            msg: format!("{signal} request of {} bytes of JSON: {e}", json.len()),
            items: 0,
        },
        crate::admission::Refusal::Busy { .. } => Refused::Busy {
            msg: format!("{signal} request: {e}"),
            items: 0,
        },
    })?;
    let within = usize::try_from(max_decoded).unwrap_or(usize::MAX);
    let pb = crate::signal::json::to_protobuf_within(signal, &json, within).map_err(|e| {
        let msg = format!("invalid OTLP/JSON {signal} request {e}");
        if e.too_large {
            Refused::TooLarge { msg, items: 0 }
        } else {
            Refused::Invalid(msg)
        }
    })?;
    drop(json);
    drop(transcoding);
    admit_protobuf(signal, bytes::Bytes::from(pb), max_decoded, budget)
}

/// Removes spans and log records whose ids have the wrong length (a trace id is 16 bytes, a span
/// id 8), returning how many were removed and why. They are reported to the client through
/// `partial_success`; the rest of the request goes on.
pub(crate) fn reject_invalid(batch: &mut Batch) -> (i64, String) {
    let mut rejected = 0i64;
    let mut why = String::new();
    match batch {
        Batch::Traces(rs) => {
            for s in rs.iter_mut().flat_map(|r| r.scope_spans.iter_mut()) {
                s.spans.retain(|sp| {
                    let ok = sp.trace_id.len() == 16
                        && sp.span_id.len() == 8
                        && (sp.parent_span_id.is_empty() || sp.parent_span_id.len() == 8)
                        && sp.trace_id.iter().any(|b| *b != 0)
                        && sp.span_id.iter().any(|b| *b != 0);
                    if !ok {
                        rejected += 1;
                        if why.is_empty() {
                            why = format!(
                                "span {:?} has an invalid id (trace_id must be 16 non-zero bytes, span_id 8, parent_span_id 0 or 8; got {}, {}, {})",
                                sp.name,
                                sp.trace_id.len(),
                                sp.span_id.len(),
                                sp.parent_span_id.len()
                            );
                        }
                    }
                    ok
                });
            }
        }
        Batch::Logs(rl) => {
            for s in rl.iter_mut().flat_map(|r| r.scope_logs.iter_mut()) {
                s.log_records.retain(|l| {
                    let ok = matches!(l.trace_id.len(), 0 | 16) && matches!(l.span_id.len(), 0 | 8);
                    if !ok {
                        rejected += 1;
                        if why.is_empty() {
                            why = format!(
                                "log record has an invalid trace_id or span_id length ({}, {})",
                                l.trace_id.len(),
                                l.span_id.len()
                            );
                        }
                    }
                    ok
                });
            }
        }
        // Metrics carry no ids; encoded batches were checked by the wire scan.
        Batch::Metrics(_) | Batch::Encoded(_) => {}
    }
    (rejected, why)
}

pub(crate) fn entry_for(
    entries: &[Option<Arc<Entry>>; crate::signal::Signal::COUNT],
    s: Signal,
) -> Option<Arc<Entry>> {
    entries[s.index()].clone()
}

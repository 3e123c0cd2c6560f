//! Building OTLP trace batches from spans that arrive one by one with their resource and scope
//! (the legacy receivers' translations): each span joins the resource and scope it names,
//! created in the order they first appear.

use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

/// Adds `span` under the resource with exactly `resource`'s attributes and the scope equal to
/// `scope` (a linear search: a request holds a handful of each).
pub fn push_span(
    out: &mut Vec<ResourceSpans>,
    resource: Vec<KeyValue>,
    scope: InstrumentationScope,
    span: Span,
) {
    let ri = match out.iter().position(|rs| {
        rs.resource
            .as_ref()
            .is_some_and(|r| r.attributes == resource)
    }) {
        Some(i) => i,
        None => {
            out.push(ResourceSpans {
                resource: Some(Resource {
                    attributes: resource,
                    ..Default::default()
                }),
                ..Default::default()
            });
            out.len() - 1
        }
    };
    let rs = &mut out[ri];
    let si = match rs
        .scope_spans
        .iter()
        .position(|ss| ss.scope.as_ref() == Some(&scope))
    {
        Some(i) => i,
        None => {
            rs.scope_spans.push(ScopeSpans {
                scope: Some(scope),
                ..Default::default()
            });
            rs.scope_spans.len() - 1
        }
    };
    rs.scope_spans[si].spans.push(span);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_join_their_resource_and_scope_in_order_of_appearance() {
        let res = |s: &str| vec![crate::signal::value::string_kv("service.name", s)];
        let scope = |n: &str| InstrumentationScope {
            name: n.into(),
            ..Default::default()
        };
        let mut out = Vec::new();
        for (r, s) in [("a", "x"), ("b", "x"), ("a", "y"), ("a", "x")] {
            push_span(&mut out, res(r), scope(s), Span::default());
        }
        assert_eq!(out.len(), 2);
        let counts: Vec<usize> = out[0].scope_spans.iter().map(|s| s.spans.len()).collect();
        assert_eq!(counts, [2, 1]);
        assert_eq!(out[1].scope_spans[0].spans.len(), 1);
    }
}

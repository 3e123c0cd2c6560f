//! `groupbytrace` processor: holds each trace's spans for `wait_duration` after its first
//! span, then passes them on together, so the next processors see whole traces. It is the
//! tail sampler's trace buffer with a policy that keeps every trace: the same bound
//! (`num_traces`, the oldest trace dropped and counted past it), the same release at shutdown.
//! A span of a trace already released is passed on at once (the Collector groups it again
//! for another wait); `discard_orphans: true` and `store_on_disk: true` are refused.

use serde::Deserialize;

use crate::component::{Factory, ProcessorConfig, Stability};
use crate::config::{DeError, Node, from_node, key_err, units};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// How long a trace is held after its first span. Default 1s.
    #[serde(deserialize_with = "units::duration")]
    pub wait_duration: std::time::Duration,
    /// Traces held at most. Default 1,000,000.
    pub num_traces: usize,
    /// Accepted for compatibility; one task releases the traces.
    pub num_workers: usize,
    /// Drop spans of traces already released. Only `false` is supported.
    pub discard_orphans: bool,
    /// Only `false` is supported.
    pub store_on_disk: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            wait_duration: std::time::Duration::from_secs(1),
            num_traces: 1_000_000,
            num_workers: 1,
            discard_orphans: false,
            store_on_disk: false,
        }
    }
}

pub const FACTORY: Factory = Factory::processor(
    "groupbytrace",
    crate::signal::TRACES,
    Stability::Alpha,
    parse,
)
.aliases(&["group_by_trace"]);

pub fn parse(node: &Node) -> Result<Box<dyn ProcessorConfig>, DeError> {
    let c: Config = from_node(node)?;
    if c.discard_orphans {
        return Err(key_err(
            node,
            &["discard_orphans"],
            "not supported: a late span of a released trace is passed on",
        ));
    }
    if c.store_on_disk {
        return Err(key_err(
            node,
            &["store_on_disk"],
            "not supported: traces are held in memory",
        ));
    }
    if c.wait_duration.is_zero() {
        return Err(key_err(
            node,
            &["wait_duration"],
            "must be greater than zero",
        ));
    }
    if c.num_traces == 0 {
        return Err(key_err(node, &["num_traces"], "must be at least 1"));
    }
    let text = format!(
        "decision_wait: {}ms\nnum_traces: {}\npolicies:\n  - {{name: group, type: always_sample}}\n",
        c.wait_duration.as_millis().max(1),
        c.num_traces
    );
    let tail = crate::config::node::parse(&text).map_err(|(_, msg)| key_err(node, &[], msg))?;
    super::tail_sampling::parse(&tail).map_err(|e| key_err(node, &[], e.msg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::parse as yaml;

    #[test]
    fn defaults_and_refusals() {
        let c: Config = from_node(&yaml("{}").unwrap()).unwrap();
        assert_eq!((c.wait_duration.as_secs(), c.num_traces), (1, 1_000_000));
        assert!(
            parse(&yaml("wait_duration: 2s\nnum_traces: 10\nnum_workers: 4\n").unwrap()).is_ok()
        );
        let e = parse(&yaml("discard_orphans: true\n").unwrap())
            .err()
            .unwrap();
        assert_eq!(e.path_string(), "discard_orphans");
        let e = parse(&yaml("store_on_disk: true\n").unwrap())
            .err()
            .unwrap();
        assert!(e.msg.contains("in memory"), "{}", e.msg);
        let e = parse(&yaml("wait_duration: 0s\n").unwrap()).err().unwrap();
        assert_eq!(e.path_string(), "wait_duration");
    }

    struct Capture(std::sync::Mutex<Vec<crate::signal::Batch>>);
    impl crate::component::Consumer for Capture {
        fn consume(
            &self,
            batch: crate::signal::Batch,
        ) -> crate::component::BoxFuture<'_, crate::component::ConsumeResult> {
            self.0.lock().unwrap().push(batch);
            Box::pin(async { Ok(()) })
        }
    }

    /// A trace's spans sent in three requests come out together, after the wait.
    #[tokio::test(start_paused = true)]
    async fn holds_then_releases_whole_traces() {
        use crate::signal::{Batch, Signal};
        let ctx = crate::component::Context::standalone("groupbytrace");
        let cfg = parse(&yaml("wait_duration: 2s\n").unwrap()).unwrap();
        let out = std::sync::Arc::new(Capture(std::sync::Mutex::new(Vec::new())));
        let p = cfg.build(ctx, Signal::Traces, out.clone()).unwrap();
        let span = |trace: u8, span: u8| {
            let mut b = crate::signal::testdata::spans("svc", 1, 1);
            if let Batch::Traces(rs) = &mut b {
                let s = &mut rs[0].scope_spans[0].spans[0];
                s.trace_id = vec![trace; 16];
                s.span_id = vec![span; 8];
            }
            b
        };
        p.consume(span(1, 1)).await.unwrap();
        p.consume(span(2, 1)).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        p.consume(span(1, 2)).await.unwrap();
        assert!(out.0.lock().unwrap().is_empty(), "held during the wait");
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        let got = out.0.lock().unwrap();
        let traces: Vec<Vec<(u8, u8)>> = got
            .iter()
            .map(|b| match b {
                Batch::Traces(rs) => rs
                    .iter()
                    .flat_map(|r| &r.scope_spans)
                    .flat_map(|s| &s.spans)
                    .map(|s| (s.trace_id[0], s.span_id[0]))
                    .collect(),
                _ => vec![],
            })
            .collect();
        let mut all: Vec<(u8, u8)> = traces.concat();
        all.sort();
        assert_eq!(all, [(1, 1), (1, 2), (2, 1)], "every span once");
        assert!(
            traces
                .iter()
                .any(|t| t.contains(&(1, 1)) && t.contains(&(1, 2))),
            "trace 1's spans together: {traces:?}"
        );
    }
}

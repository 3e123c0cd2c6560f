//! Splitting an encoded export request by size, without decoding it.
//!
//! An exporter must never send a request larger than its peer takes (gRPC servers refuse
//! messages over 4 MiB by default): a batch of 16,384 large spans is 8 MB. Decoding it to split
//! it would cost ten times that in memory, so the split walks the wire format instead: the
//! request is a tree of containers (resource → scope → item; for metrics resource → scope →
//! metric → data → point) whose headers (resource, scope, metric name and unit, temporality) are
//! copied into every part that carries some of their items. Parts are packed greedily, in order,
//! up to `max` bytes each; only an item larger than `max` by itself makes a larger part.

use super::Signal;

/// Per level of the tree, the tags of the fields that hold the next level; what is below the
/// last level are the items.
fn levels(signal: Signal) -> &'static [&'static [u32]] {
    match signal {
        // Request.resource_spans, ResourceSpans.scope_spans, ScopeSpans.spans (and logs alike).
        Signal::Traces | Signal::Logs => &[&[1], &[2], &[2]],
        // ... ScopeMetrics.metrics, Metric.{gauge,sum,histogram,exponential_histogram,summary},
        // <data>.data_points.
        Signal::Metrics => &[&[1], &[2], &[2], &[5, 7, 9, 10, 11], &[1]],
        // A profiles request's samples point into its one dictionary: it is never split.
        Signal::Profiles => &[],
    }
}

/// The deepest tree (metrics): request + 4 container levels.
const MAX_LEVELS: usize = 5;

/// One field of a message: its tag, where its encoding starts (the key) and ends, and its
/// content for length-delimited fields.
#[derive(Clone, Copy)]
struct Field {
    tag: u32,
    start: usize,
    content: (usize, usize),
    end: usize,
}

fn varint(buf: &[u8], mut pos: usize, end: usize) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for i in 0..10 {
        let b = *buf.get(pos).filter(|_| pos < end)?;
        v |= u64::from(b & 0x7f) << (7 * i);
        pos += 1;
        if b < 0x80 {
            return Some((v, pos));
        }
    }
    None
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// The fields of the message in `buf[start..end]`; stops at anything malformed (the input was
/// validated by the wire scan, so it does not happen).
fn fields(buf: &[u8], start: usize, end: usize) -> impl Iterator<Item = Field> + '_ {
    let mut pos = start;
    std::iter::from_fn(move || {
        if pos >= end {
            return None;
        }
        let field_start = pos;
        let (key, p) = varint(buf, pos, end)?;
        let (content, next) = match key & 7 {
            0 => {
                let (_, q) = varint(buf, p, end)?;
                ((p, q), q)
            }
            1 => ((p, p + 8), p + 8),
            5 => ((p, p + 4), p + 4),
            2 => {
                let (len, q) = varint(buf, p, end)?;
                let e = q.checked_add(usize::try_from(len).ok()?)?;
                ((q, e), e)
            }
            // A group (unknown to OTLP, skipped by prost): up to its end tag.
            3 => {
                let e = skip_group(buf, p, end, key >> 3, 100)?;
                ((p, e), e)
            }
            _ => return None,
        };
        if next > end {
            return None;
        }
        pos = next;
        Some(Field {
            tag: (key >> 3) as u32,
            start: field_start,
            content,
            end: next,
        })
    })
}

/// The end of a group whose start tag `tag` ended at `pos` (prost's `skip_field`).
fn skip_group(buf: &[u8], mut pos: usize, end: usize, tag: u64, depth: u32) -> Option<usize> {
    if depth == 0 {
        return None;
    }
    loop {
        let (key, p) = varint(buf, pos, end)?;
        pos = match key & 7 {
            0 => varint(buf, p, end)?.1,
            1 => p.checked_add(8)?,
            5 => p.checked_add(4)?,
            2 => {
                let (len, q) = varint(buf, p, end)?;
                q.checked_add(usize::try_from(len).ok()?)?
            }
            3 => skip_group(buf, p, end, key >> 3, depth - 1)?,
            4 if key >> 3 == tag => return Some(p),
            _ => return None,
        };
        if pos > end {
            return None;
        }
    }
}

/// The fields of a message that hold the next level, as prost keeps them: for a oneof of
/// containers (a metric's `data`), only the last run of the variant that won (a field of
/// another variant replaces what came before; the same variant again merges).
fn children<'a>(
    buf: &'a [u8],
    range: (usize, usize),
    tags: &'a [u32],
) -> impl Iterator<Item = Field> + 'a {
    let oneof = tags.len() > 1;
    // Where the winning run starts: after the last field of a different variant than the last.
    let mut live_from = 0;
    if oneof {
        let mut last: Option<u32> = None;
        for f in fields(buf, range.0, range.1).filter(|f| tags.contains(&f.tag)) {
            if last.is_some_and(|t| t != f.tag) {
                live_from = f.start;
            }
            last = Some(f.tag);
        }
    }
    fields(buf, range.0, range.1).filter(move |f| tags.contains(&f.tag) && f.start >= live_from)
}

/// Bytes of a message's header: the fields that do not hold the next level.
fn header_len(buf: &[u8], f: Field, children: &[u32]) -> usize {
    fields(buf, f.content.0, f.content.1)
        .filter(|c| !children.contains(&c.tag))
        .map(|c| c.end - c.start)
        .sum()
}

/// Splits `buf`, an encoded `Export*ServiceRequest` of `signal`, into requests of at most `max`
/// bytes; returns each with the number of items (spans, points, log records) it holds. A
/// request already within `max` comes back as one part. Containers without items are left out.
pub fn split_request(signal: Signal, buf: &[u8], max: usize) -> Vec<(Vec<u8>, usize)> {
    split_request_by(signal, buf, max, usize::MAX)
}

/// [`split_request`] with a bound on items per part too (the batch processor's
/// `send_batch_max_size`), so that encoded batches are split without being decoded.
pub fn split_request_by(
    signal: Signal,
    buf: &[u8],
    max: usize,
    max_items: usize,
) -> Vec<(Vec<u8>, usize)> {
    let levels = levels(signal);
    let (starts, total) = plan(buf, levels, max.max(1), max_items.max(1));
    if buf.len() <= max && total <= max_items {
        return vec![(buf.to_vec(), total)];
    }
    let mut out = Vec::with_capacity(starts.len());
    for (i, &a) in starts.iter().enumerate() {
        let b = starts.get(i + 1).copied().unwrap_or(usize::MAX);
        let mut part = Vec::new();
        let mut counter = 0;
        write(
            buf,
            levels,
            (0, buf.len()),
            0,
            &mut counter,
            (a, b),
            &mut part,
        );
        let items = b.min(counter) - a;
        out.push((part, items));
    }
    out
}

/// The index of the first item of each part, and the number of items.
fn plan(buf: &[u8], levels: &[&[u32]], max: usize, max_items: usize) -> (Vec<usize>, usize) {
    struct State {
        starts: Vec<usize>,
        cost: usize,
        items_in_part: usize,
        index: usize,
        /// The containers (by start offset) opened in the current part, per level.
        open: [Option<usize>; MAX_LEVELS],
        /// The containers the walk is in, and what opening each in a part costs.
        path: [(usize, usize); MAX_LEVELS],
    }
    fn walk(
        buf: &[u8],
        levels: &[&[u32]],
        (max, max_items): (usize, usize),
        range: (usize, usize),
        level: usize,
        s: &mut State,
    ) {
        let last = level + 1 == levels.len();
        for f in children(buf, range, levels[level]) {
            if !last {
                // A container one level down: key, a length of at most 5 bytes, its header.
                let overhead =
                    varint_len(u64::from(f.tag) << 3) + 5 + header_len(buf, f, levels[level + 1]);
                s.path[level + 1] = (f.start, overhead);
                walk(buf, levels, (max, max_items), f.content, level + 1, s);
                continue;
            }
            let item = f.end - f.start;
            let opening = |s: &State| -> usize {
                (1..=level)
                    .filter(|&l| s.open[l] != Some(s.path[l].0))
                    .map(|l| s.path[l].1)
                    .sum()
            };
            let mut extra = opening(s);
            if s.items_in_part > 0 && (s.cost + extra + item > max || s.items_in_part >= max_items)
            {
                s.starts.push(s.index);
                s.cost = 0;
                s.items_in_part = 0;
                s.open = [None; MAX_LEVELS];
                extra = opening(s);
            }
            s.cost += extra + item;
            for l in 1..=level {
                s.open[l] = Some(s.path[l].0);
            }
            s.items_in_part += 1;
            s.index += 1;
        }
    }
    let mut s = State {
        starts: vec![0],
        cost: 0,
        items_in_part: 0,
        index: 0,
        open: [None; MAX_LEVELS],
        path: [(0, 0); MAX_LEVELS],
    };
    walk(buf, levels, (max, max_items), (0, buf.len()), 0, &mut s);
    (s.starts, s.index)
}

/// What the message in `range` at `level` would be with only the items numbered `[a, b)`:
/// (encoded content size, items of the range in it, items in it at all).
fn size(
    buf: &[u8],
    levels: &[&[u32]],
    range: (usize, usize),
    level: usize,
    mut counter: usize,
    (a, b): (usize, usize),
) -> (usize, usize, usize) {
    let (mut len, mut selected, start) = (0, 0, counter);
    let header: usize = fields(buf, range.0, range.1)
        .filter(|f| !levels[level].contains(&f.tag))
        .map(|f| f.end - f.start)
        .sum();
    let last = level + 1 == levels.len();
    for f in children(buf, range, levels[level]) {
        if last {
            if (a..b).contains(&counter) {
                len += f.end - f.start;
                selected += 1;
            }
            counter += 1;
            continue;
        }
        let (inner, sel, total) = size(buf, levels, f.content, level + 1, counter, (a, b));
        counter += total;
        if sel > 0 {
            len += varint_len(u64::from(f.tag) << 3) + varint_len(inner as u64) + inner;
            selected += sel;
        }
    }
    if selected > 0 {
        len += header;
    }
    (len, selected, counter - start)
}

/// Writes the content of the message in `range` at `level` with only the items `[a, b)`.
fn write(
    buf: &[u8],
    levels: &[&[u32]],
    range: (usize, usize),
    level: usize,
    counter: &mut usize,
    (a, b): (usize, usize),
    out: &mut Vec<u8>,
) {
    let last = level + 1 == levels.len();
    // Headers first (their order among fields does not matter to a decoder), then the items.
    if level > 0 {
        for f in fields(buf, range.0, range.1).filter(|f| !levels[level].contains(&f.tag)) {
            out.extend_from_slice(&buf[f.start..f.end]);
        }
    }
    for f in children(buf, range, levels[level]) {
        if last {
            if (a..b).contains(counter) {
                out.extend_from_slice(&buf[f.start..f.end]);
            }
            *counter += 1;
            continue;
        }
        let (inner, sel, total) = size(buf, levels, f.content, level + 1, *counter, (a, b));
        if sel == 0 {
            *counter += total;
            continue;
        }
        prost::encoding::encode_varint(u64::from(f.tag) << 3 | 2, out);
        prost::encoding::encode_varint(inner as u64, out);
        let before = out.len();
        write(buf, levels, f.content, level + 1, counter, (a, b), out);
        debug_assert_eq!(out.len() - before, inner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::{Batch, testdata};
    use opentelemetry_proto::tonic::collector::{logs::v1 as l, metrics::v1 as m, trace::v1 as t};
    use prost::Message;

    fn spans_of(parts: &[(Vec<u8>, usize)]) -> Vec<String> {
        parts
            .iter()
            .flat_map(|(p, _)| {
                t::ExportTraceServiceRequest::decode(&p[..])
                    .unwrap()
                    .resource_spans
            })
            .flat_map(|r| {
                let svc = crate::signal::testdata::service_of(&r.resource);
                r.scope_spans.into_iter().flat_map(move |s| {
                    let scope = s.scope.map(|s| s.name).unwrap_or_default();
                    let svc = svc.clone();
                    s.spans
                        .into_iter()
                        .map(move |sp| format!("{svc}/{scope}/{}", sp.name))
                })
            })
            .collect()
    }

    #[test]
    fn parts_keep_every_item_once_in_order_with_its_resource_and_scope() {
        let mut b = testdata::spans("a", 3, 40);
        b.append(testdata::spans("b", 2, 25)).unwrap();
        let bytes = b.encode_request();
        let want = spans_of(&[(bytes.clone(), 0)]);
        for max in [60, 200, 1000, 3000, bytes.len() - 1, bytes.len(), 1 << 20] {
            let parts = split_request(Signal::Traces, &bytes, max);
            assert_eq!(spans_of(&parts), want, "max {max}");
            let items: usize = parts.iter().map(|(_, n)| n).sum();
            assert_eq!(items, 170);
            for (p, n) in &parts {
                let scan = crate::signal::wire::scan(Signal::Traces, p).unwrap();
                assert_eq!(scan.items, *n);
                // Each span is ~30 bytes: only a part of one span may pass a tiny max.
                assert!(
                    p.len() <= max || *n == 1,
                    "max {max}: a part of {}",
                    p.len()
                );
            }
            if max >= bytes.len() {
                assert_eq!(parts.len(), 1);
                assert_eq!(parts[0].0, bytes, "a request within max is unchanged");
            } else {
                assert!(parts.len() > 1);
            }
        }
    }

    #[test]
    fn metrics_split_inside_a_metric_keep_its_name_and_temporality() {
        use opentelemetry_proto::tonic::metrics::v1::{Sum, metric::Data};
        let mut b = testdata::gauge(500);
        if let Batch::Metrics(rm) = &mut b {
            let mut sum = rm[0].scope_metrics[0].metrics[0].clone();
            sum.name = "requests".into();
            let Some(Data::Gauge(g)) = sum.data.take() else {
                unreachable!()
            };
            sum.data = Some(Data::Sum(Sum {
                data_points: g.data_points,
                aggregation_temporality: 2,
                is_monotonic: true,
            }));
            rm[0].scope_metrics[0].metrics.push(sum);
        }
        let bytes = b.encode_request();
        let parts = split_request(Signal::Metrics, &bytes, 1500);
        assert!(parts.len() > 4);
        let mut points = 0;
        for (p, n) in &parts {
            assert!(p.len() <= 1500);
            let req = m::ExportMetricsServiceRequest::decode(&p[..]).unwrap();
            let got = Batch::Metrics(req.resource_metrics.clone());
            assert_eq!(got.item_count(), *n);
            points += n;
            for metric in req
                .resource_metrics
                .iter()
                .flat_map(|r| &r.scope_metrics)
                .flat_map(|s| &s.metrics)
            {
                match &metric.data {
                    Some(Data::Sum(s)) => {
                        assert_eq!(metric.name, "requests");
                        assert!(s.is_monotonic && s.aggregation_temporality == 2);
                    }
                    Some(Data::Gauge(_)) => assert_eq!(metric.name, "g"),
                    other => panic!("{other:?}"),
                }
            }
        }
        assert_eq!(points, 1000);
    }

    #[test]
    fn encoded_batches_split_by_items_without_decoding() {
        let bytes = testdata::spans("a", 3, 7).encode_request();
        let b = Batch::Encoded(crate::signal::Encoded::new(
            Signal::Traces,
            bytes.into(),
            21,
        ));
        let parts = b.split(5);
        assert!(parts.iter().all(Batch::is_encoded));
        assert_eq!(
            parts.iter().map(Batch::item_count).collect::<Vec<_>>(),
            vec![5, 5, 5, 5, 1]
        );
        let mut all = Batch::empty(Signal::Traces);
        for p in parts {
            all.append(p).unwrap();
        }
        let names = spans_of(&[(all.encode_request(), 0)]);
        assert_eq!(
            names,
            spans_of(&[(testdata::spans("a", 3, 7).encode_request(), 0)])
        );
    }

    #[test]
    fn logs_and_a_single_oversized_item() {
        let mut b = testdata::logs(3);
        if let Batch::Logs(rl) = &mut b {
            rl[0].scope_logs[0].log_records[1].severity_text = "x".repeat(5000);
        }
        let bytes = b.encode_request();
        let parts = split_request(Signal::Logs, &bytes, 1000);
        assert_eq!(
            parts.iter().map(|(_, n)| *n).collect::<Vec<_>>(),
            vec![1, 1, 1],
            "the big record travels alone"
        );
        for (p, _) in &parts {
            l::ExportLogsServiceRequest::decode(&p[..]).unwrap();
        }
        assert!(
            split_request(Signal::Logs, &[], 10)
                .iter()
                .all(|(p, n)| p.is_empty() && *n == 0)
        );
    }

    #[test]
    fn random_requests_split_into_valid_parts_holding_every_item() {
        use crate::signal::testdata::random;
        use rand::{Rng, SeedableRng};
        let mut r = rand::rngs::StdRng::seed_from_u64(21);
        for i in 0..1500 {
            let signal = Signal::ALL[i % 3];
            let (bytes, batch) = match signal {
                Signal::Traces => {
                    let q = random::traces(&mut r);
                    (q.encode_to_vec(), Batch::Traces(q.resource_spans))
                }
                Signal::Metrics => {
                    let q = random::metrics(&mut r);
                    (q.encode_to_vec(), Batch::Metrics(q.resource_metrics))
                }
                Signal::Logs => {
                    let q = random::logs(&mut r);
                    (q.encode_to_vec(), Batch::Logs(q.resource_logs))
                }
                Signal::Profiles => unreachable!("Signal::ALL holds the three stable signals"),
            };
            let max = r.random_range(1..bytes.len().max(2) * 2);
            let parts = split_request(signal, &bytes, max);
            let mut items = 0;
            for (p, n) in &parts {
                let scan = crate::signal::wire::scan(signal, p).expect("a valid request");
                assert_eq!(scan.items, *n);
                assert!(
                    p.len() <= max || *n <= 1,
                    "{} > {max} with {n} items",
                    p.len()
                );
                items += n;
            }
            assert_eq!(items, batch.item_count(), "every item once");
        }
    }

    /// Found by fuzzing: an unknown group field stopped the walk (items after it were lost), and
    /// a metric with two `data` variants kept both (prost keeps the last).
    #[test]
    fn groups_are_skipped_and_a_replaced_oneof_variant_holds_no_items() {
        // ScopeSpans: a group (field 7, start 0x3b … end 0x3c) before two spans.
        let scope = [0x3b, 0x08, 0x01, 0x3c, 0x12, 0x00, 0x12, 0x00];
        let mut rs = vec![0x12, scope.len() as u8];
        rs.extend_from_slice(&scope);
        let mut req = vec![0x0a, rs.len() as u8];
        req.extend_from_slice(&rs);
        let scan = crate::signal::wire::scan(Signal::Traces, &req).unwrap();
        assert_eq!(scan.items, 2);
        let parts = split_request(Signal::Traces, &req, 6);
        assert_eq!(parts.iter().map(|(_, n)| n).sum::<usize>(), 2);
        // Metric: gauge (5) with 2 points, then sum (7) with 1: prost keeps the sum.
        let metric = [0x2a, 0x04, 0x0a, 0x00, 0x0a, 0x00, 0x3a, 0x02, 0x0a, 0x00];
        let scope = [&[0x12, metric.len() as u8][..], &metric].concat();
        let res = [&[0x12, scope.len() as u8][..], &scope].concat();
        let req = [&[0x0a, res.len() as u8][..], &res].concat();
        let scan = crate::signal::wire::scan(Signal::Metrics, &req).unwrap();
        assert_eq!(scan.items, 1);
        let parts = split_request(Signal::Metrics, &req, 3);
        assert_eq!(parts.iter().map(|(_, n)| n).sum::<usize>(), 1);
        for (p, n) in &parts {
            assert_eq!(
                crate::signal::wire::scan(Signal::Metrics, p).unwrap().items,
                *n
            );
        }
    }
}

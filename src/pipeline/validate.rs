//! Checks a config completely, with every error located: the same checks for `validate` and
//! before a start.

use std::collections::BTreeMap;
use std::path::Path;

use crate::component::{
    self, ConnectorConfig, ExporterConfig, ExtensionConfig, Kind, Parse, ProcessorConfig,
    ReceiverConfig,
};
use crate::config::{
    self, ComponentDef, ComponentId, Config, ConfigError, DeError, Errors, Node, Pos, Sources,
    Value,
};

/// A config that passed every check, with each component's typed config.
pub struct Validated {
    pub config: Config,
    pub(super) receivers: BTreeMap<ComponentId, Box<dyn ReceiverConfig>>,
    pub(super) processors: BTreeMap<ComponentId, Box<dyn ProcessorConfig>>,
    pub(super) exporters: BTreeMap<ComponentId, Box<dyn ExporterConfig>>,
    pub(super) extensions: BTreeMap<ComponentId, Box<dyn ExtensionConfig>>,
    pub(super) connectors: BTreeMap<ComponentId, Box<dyn ConnectorConfig>>,
    /// Deprecated names and other things worth a warning.
    pub warnings: Vec<String>,
}

pub fn validate_file(path: &Path) -> Result<Validated, Vec<ConfigError>> {
    validate_sources(&Sources::file(path.display().to_string()))
}

/// Resolves `--config` URIs and `--set` flags (see [`config::sources`]) and checks the result.
pub fn validate_sources(sources: &Sources) -> Result<Validated, Vec<ConfigError>> {
    let mut errors = Errors::for_sources(sources);
    let env = |n: &str| std::env::var(n).ok();
    let cfg = config::resolve(sources, &env, &mut errors)
        .and_then(|root| config::from_tree(root, &mut errors));
    finish(cfg, errors)
}

/// How many errors of one component are listed before the rest are left for the next run.
const MAX_ERRORS_PER_COMPONENT: usize = 32;

/// Every error of a component's config, not only the first serde meets: the offending key is
/// taken out of a copy and the config read again, until it reads or an error has nothing to
/// take out. An error a removal may have caused (the removed key now "missing", a check across
/// keys) ends the search unreported.
fn parse_all<T>(
    node: &Node,
    parse: impl Fn(&Node) -> Result<T, DeError>,
) -> Result<T, Vec<DeError>> {
    let first = match parse(node) {
        Ok(c) => return Ok(c),
        Err(e) => e,
    };
    let mut copy = node.clone();
    let mut removed: Vec<Vec<String>> = Vec::new();
    let mut errs = vec![first];
    while errs.len() < MAX_ERRORS_PER_COMPONENT {
        let Some(last) = errs.last() else { break };
        let path = last.path.clone();
        if path.is_empty() || !remove_at(&mut copy, &path) {
            break;
        }
        removed.push(path);
        match parse(&copy) {
            Ok(_) => break,
            Err(e) => {
                let caused = removed.iter().any(|r| {
                    r.starts_with(&e.path)
                        || e.msg
                            .contains(&format!("`{}`", r.last().map_or("", String::as_str)))
                            && e.msg.starts_with("missing field")
                });
                // After a removal only errors local to one key are sure to be real: a check
                // across keys (say "at least one scrape config") may fail only because of it.
                let local = [
                    "unknown field",
                    "invalid type",
                    "invalid value",
                    "unknown variant",
                ]
                .iter()
                .any(|p| e.msg.starts_with(p));
                if caused || !local {
                    break;
                }
                errs.push(e);
            }
        }
    }
    Err(errs)
}

/// Stores a parsed component config, or hands back its errors.
fn keep<C>(
    into: &mut BTreeMap<ComponentId, C>,
    id: &ComponentId,
    parsed: Result<C, Vec<DeError>>,
) -> Result<(), Vec<DeError>> {
    parsed.map(|c| drop(into.insert(id.clone(), c)))
}

/// Removes the value at a key path (`a`, `b`, `[2]`, ...); false when it is not there.
fn remove_at(node: &mut Node, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut n = node;
    for seg in parents {
        let next = match (
            &mut n.value,
            seg.strip_prefix('[').and_then(|s| s.strip_suffix(']')),
        ) {
            (Value::Seq(items), Some(i)) => i.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
            (Value::Map(entries), None) => entries
                .iter_mut()
                .find(|(k, _)| k.name == *seg)
                .map(|(_, v)| v),
            _ => None,
        };
        match next {
            Some(x) => n = x,
            None => return false,
        }
    }
    match (
        &mut n.value,
        last.strip_prefix('[').and_then(|s| s.strip_suffix(']')),
    ) {
        (Value::Seq(items), Some(i)) => match i.parse::<usize>() {
            Ok(i) if i < items.len() => {
                items.remove(i);
                true
            }
            _ => false,
        },
        (Value::Map(entries), None) => {
            let before = entries.len();
            entries.retain(|(k, _)| k.name != *last);
            entries.len() < before
        }
        _ => false,
    }
}

pub fn validate_str(
    text: &str,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Validated, Vec<ConfigError>> {
    let mut errors = Errors::new(file);
    let cfg = config::load_str(text, env, &mut errors);
    finish(cfg, errors)
}

fn finish(cfg: Option<Config>, mut errors: Errors) -> Result<Validated, Vec<ConfigError>> {
    let Some(cfg) = cfg else {
        return Err(errors.list);
    };
    let v = check(cfg, crate::registry::FACTORIES, &mut errors);
    if errors.is_empty() {
        Ok(v)
    } else {
        Err(errors.list)
    }
}

fn check(cfg: Config, factories: &[component::Factory], errors: &mut Errors) -> Validated {
    let mut v = Validated {
        receivers: BTreeMap::new(),
        processors: BTreeMap::new(),
        exporters: BTreeMap::new(),
        extensions: BTreeMap::new(),
        connectors: BTreeMap::new(),
        warnings: Vec::new(),
        config: cfg,
    };
    let mut unsupported: Vec<(&'static str, &ComponentDef)> = Vec::new();
    let sections: [(Kind, &Vec<ComponentDef>); 5] = [
        (Kind::Receiver, &v.config.receivers),
        (Kind::Processor, &v.config.processors),
        (Kind::Exporter, &v.config.exporters),
        (Kind::Extension, &v.config.extensions),
        (Kind::Connector, &v.config.connectors),
    ];
    for (kind, defs) in sections {
        for def in defs {
            let Some(f) = crate::registry::find_in(factories, kind, &def.id.kind) else {
                unsupported.push((kind.section(), def));
                continue;
            };
            let what = format!("{}::{}", kind.section(), def.id);
            if f.name != def.id.kind {
                let how = if f.deprecated.contains(&def.id.kind.as_str()) {
                    "a deprecated name"
                } else {
                    "an alias"
                };
                v.warnings.push(format!(
                    "{}:{}: {what}: `{}` is {how} of `{}`",
                    errors.file_of(def.pos),
                    def.pos,
                    def.id.kind,
                    f.name
                ));
            }
            config::take_key_warnings();
            let ok = match &f.parse {
                Parse::Receiver(p) => keep(&mut v.receivers, &def.id, parse_all(&def.node, p)),
                Parse::Processor(p) => keep(&mut v.processors, &def.id, parse_all(&def.node, p)),
                Parse::Exporter(p) => keep(&mut v.exporters, &def.id, parse_all(&def.node, p)),
                Parse::Extension(p) => keep(&mut v.extensions, &def.id, parse_all(&def.node, p)),
                Parse::Connector(p) => keep(&mut v.connectors, &def.id, parse_all(&def.node, p)),
            };
            match ok {
                Ok(()) => {
                    for w in config::take_key_warnings() {
                        let pos = w.pos.unwrap_or(def.node.pos);
                        v.warnings.push(format!(
                            "{}:{pos}: {what}: `{}`: {}",
                            errors.file_of(pos),
                            w.path_string(),
                            w.msg
                        ));
                    }
                }
                Err(es) => es
                    .into_iter()
                    .for_each(|e| errors.de(&what, def.node.pos, e)),
            }
        }
    }
    if !unsupported.is_empty() {
        // One message naming every unsupported type, so a user sees the whole gap at once.
        let mut by_section: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (section, def) in &unsupported {
            by_section
                .entry(section)
                .or_default()
                .push(format!("{} (line {})", def.id.kind, def.pos.line));
        }
        let list = by_section
            .iter()
            .map(|(s, names)| format!("{s}: {}", names.join(", ")))
            .collect::<Vec<_>>()
            .join("; ");
        errors.at(
            unsupported[0].1.pos,
            None,
            None,
            format!(
                "unsupported component types: {list}. `ferrotel components` lists what ferrotel has"
            ),
        );
    }
    let is_unsupported = |section: &str, id: &ComponentId| {
        unsupported
            .iter()
            .any(|(s, d)| *s == section && d.id == *id)
    };
    let is_connector = |id: &ComponentId| v.config.connectors.iter().any(|d| d.id == *id);
    let defined = |kind: Kind, id: &ComponentId| match kind {
        Kind::Receiver => v.config.receivers.iter().any(|d| d.id == *id),
        Kind::Processor => v.config.processors.iter().any(|d| d.id == *id),
        Kind::Exporter => v.config.exporters.iter().any(|d| d.id == *id),
        Kind::Extension => v.config.extensions.iter().any(|d| d.id == *id),
        Kind::Connector => is_connector(id),
    };

    for r in &v.config.service_extensions {
        if !defined(Kind::Extension, &r.id) {
            errors.at(
                r.pos,
                Some("service::extensions"),
                None,
                format!("extension `{}` is not defined in `extensions`", r.id),
            );
        }
    }
    // `storage:` must name a storage extension that the service starts.
    let storages = v
        .config
        .receivers
        .iter()
        .filter_map(|def| {
            let sid = v.receivers.get(&def.id)?.storage()?;
            let pos = def.node.get("storage").map_or(def.pos, |n| n.pos);
            Some((sid, pos, format!("receivers::{}", def.id), "storage"))
        })
        .chain(v.config.exporters.iter().filter_map(|def| {
            let sid = v.exporters.get(&def.id)?.storage()?;
            let pos = def
                .node
                .get("sending_queue")
                .and_then(|q| q.get("storage"))
                .map_or(def.pos, |n| n.pos);
            Some((
                sid,
                pos,
                format!("exporters::{}", def.id),
                "sending_queue::storage",
            ))
        }))
        .collect::<Vec<_>>();
    for (sid, pos, what, key) in storages {
        if !defined(Kind::Extension, sid) {
            errors.at(
                pos,
                Some(&what),
                Some(key),
                format!("extension `{sid}` is not defined in `extensions`"),
            );
        } else if !crate::registry::find_in(factories, Kind::Extension, &sid.kind)
            .is_some_and(|f| f.provides_storage)
        {
            let storages: Vec<_> = factories
                .iter()
                .filter(|f| f.provides_storage)
                .map(|f| f.name)
                .collect();
            errors.at(
                pos,
                Some(&what),
                Some(key),
                format!(
                    "extension `{sid}` is not a storage extension ({})",
                    storages.join(", ")
                ),
            );
        } else if !v.config.service_extensions.iter().any(|r| r.id == *sid) {
            errors.at(
                pos,
                Some(&what),
                Some(key),
                format!(
                    "extension `{sid}` is not listed in `service::extensions`, so it is not started"
                ),
            );
        }
    }
    // `auth: {authenticator: <id>}`, at any depth of a receiver's or exporter's config, must
    // name an extension that is defined and started.
    for (section, defs) in [
        ("receivers", &v.config.receivers),
        ("exporters", &v.config.exporters),
    ] {
        for def in defs {
            let mut found = Vec::new();
            authenticators(&def.node, &mut found);
            for (id, pos) in found {
                let what = format!("{section}::{}", def.id);
                let msg = match ComponentId::parse(&id) {
                    Err(e) => Some(e),
                    Ok(sid) if !defined(Kind::Extension, &sid) => {
                        Some(format!("extension `{sid}` is not defined in `extensions`"))
                    }
                    Ok(sid) if !v.config.service_extensions.iter().any(|r| r.id == sid) => {
                        Some(format!(
                            "extension `{sid}` is not listed in `service::extensions`, so it is not started"
                        ))
                    }
                    Ok(_) => None,
                };
                if let Some(m) = msg {
                    errors.at(pos, Some(&what), Some("auth::authenticator"), m);
                }
            }
        }
    }
    if v.config.pipelines.is_empty() {
        errors.at(
            Pos::at(1, 1),
            Some("service"),
            Some("pipelines"),
            "no pipelines are defined",
        );
    }
    for p in &v.config.pipelines {
        let what = format!("service::pipelines::{}", p.id());
        if p.receivers.is_empty() {
            errors.at(
                p.pos,
                Some(&what),
                Some("receivers"),
                "a pipeline needs at least one receiver",
            );
        }
        if p.exporters.is_empty() {
            errors.at(
                p.pos,
                Some(&what),
                Some("exporters"),
                "a pipeline needs at least one exporter",
            );
        }
        for (kind, key, refs) in [
            (Kind::Receiver, "receivers", &p.receivers),
            (Kind::Processor, "processors", &p.processors),
            (Kind::Exporter, "exporters", &p.exporters),
        ] {
            for (i, r) in refs.iter().enumerate() {
                if refs[..i].iter().any(|o| o.id == r.id) {
                    errors.at(
                        r.pos,
                        Some(&what),
                        Some(key),
                        format!("`{}` is listed twice", r.id),
                    );
                    continue;
                }
                // A connector stands as an exporter of one pipeline and a receiver of others
                // (checked below); one of a type ferrotel lacks is reported as unsupported.
                if kind != Kind::Processor && is_connector(&r.id) && !defined(kind, &r.id) {
                    continue;
                }
                if !defined(kind, &r.id) {
                    if !is_unsupported("connectors", &r.id) {
                        errors.at(
                            r.pos,
                            Some(&what),
                            Some(key),
                            format!("`{}` is not defined in `{key}`", r.id),
                        );
                    }
                    continue;
                }
                if is_unsupported(kind.section(), &r.id) {
                    continue;
                }
                if let Some(f) = crate::registry::find_in(factories, kind, &r.id.kind)
                    && !f.signals.contains(&p.signal)
                {
                    errors.at(
                        r.pos,
                        Some(&what),
                        Some(key),
                        format!("`{}` does not support {}", r.id, p.signal),
                    );
                }
            }
        }
    }
    check_connectors(&v, factories, errors);
    check_ports(&v, errors);
    v
}

/// Each use of a connector must meet a use on the other side with a signal pair it converts,
/// and the pipelines it joins must not loop.
fn check_connectors(v: &Validated, factories: &[component::Factory], errors: &mut Errors) {
    let pipelines = &v.config.pipelines;
    let pairs_of = |id: &ComponentId| {
        v.connectors.contains_key(id).then(|| {
            crate::registry::find_in(factories, Kind::Connector, &id.kind)
                .map_or(&[][..], |f| f.pairs)
        })
    };
    // Pipeline i feeds pipeline j through connector `id` (at `pos` in i's exporters).
    let mut edges: Vec<(usize, usize, ComponentId, Pos)> = Vec::new();
    for (i, p) in pipelines.iter().enumerate() {
        for (key, refs, exporting) in [
            ("exporters", &p.exporters, true),
            ("receivers", &p.receivers, false),
        ] {
            for r in refs.iter() {
                let Some(pairs) = pairs_of(&r.id) else {
                    continue;
                };
                let others: Vec<usize> = pipelines
                    .iter()
                    .enumerate()
                    .filter(|(_, o)| {
                        let (side, pair) = if exporting {
                            (&o.receivers, (p.signal, o.signal))
                        } else {
                            (&o.exporters, (o.signal, p.signal))
                        };
                        side.iter().any(|x| x.id == r.id) && pairs.contains(&pair)
                    })
                    .map(|(j, _)| j)
                    .collect();
                if others.is_empty() {
                    let (role, other) = if exporting {
                        ("an exporter", "a receiver")
                    } else {
                        ("a receiver", "an exporter")
                    };
                    let can: Vec<String> = pairs
                        .iter()
                        .filter(|(f, t)| {
                            if exporting {
                                *f == p.signal
                            } else {
                                *t == p.signal
                            }
                        })
                        .map(|(f, t)| format!("{f} → {t}"))
                        .collect();
                    errors.at(
                        r.pos,
                        Some(&format!("service::pipelines::{}", p.id())),
                        Some(key),
                        format!(
                            "connector `{}` is {role} of this {} pipeline, but no pipeline uses it as {other} with a signal it converts to ({})",
                            r.id,
                            p.signal,
                            if can.is_empty() { "it converts nothing from here".to_string() } else { can.join(", ") }
                        ),
                    );
                }
                if exporting {
                    edges.extend(others.into_iter().map(|j| (i, j, r.id.clone(), r.pos)));
                }
            }
        }
    }
    // A loop through connectors would pass data round forever: refuse it at the connector
    // that closes it.
    fn visit(
        n: usize,
        edges: &[(usize, usize, ComponentId, Pos)],
        state: &mut [u8],
        path: &mut Vec<usize>,
    ) -> Option<(usize, Vec<usize>)> {
        state[n] = 1;
        path.push(n);
        for (k, e) in edges.iter().enumerate().filter(|(_, e)| e.0 == n) {
            match state[e.1] {
                1 => {
                    let start = path.iter().position(|x| *x == e.1).unwrap_or(0);
                    return Some((k, path[start..].to_vec()));
                }
                0 => {
                    if let Some(found) = visit(e.1, edges, state, path) {
                        return Some(found);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        state[n] = 2;
        None
    }
    let mut state = vec![0u8; pipelines.len()];
    for n in 0..pipelines.len() {
        if state[n] != 0 {
            continue;
        }
        if let Some((k, cycle)) = visit(n, &edges, &mut state, &mut Vec::new()) {
            let (from, _, id, pos) = &edges[k];
            let mut names: Vec<String> = cycle
                .iter()
                .map(|i| pipelines[*i].id().to_string())
                .collect();
            names.push(pipelines[cycle[0]].id().to_string());
            errors.at(
                *pos,
                Some(&format!("service::pipelines::{}", pipelines[*from].id())),
                Some("exporters"),
                format!(
                    "connector `{id}` closes a loop of pipelines: {}",
                    names.join(" → ")
                ),
            );
            return;
        }
    }
}

/// Two listeners of this collector on the same port would fail at start: refuse them now.
fn check_ports(v: &Validated, errors: &mut Errors) {
    let mut seen: Vec<(String, u16, String, Pos)> = Vec::new();
    let mut add = |endpoint: &str, owner: String, pos: Pos, errors: &mut Errors| {
        let Some((host, port)) = endpoint.rsplit_once(':') else {
            return;
        };
        let Ok(port) = port.parse::<u16>() else {
            return;
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let wildcard = |h: &str| matches!(h, "" | "0.0.0.0" | "::");
        for (h, p, o, _) in &seen {
            if *p == port && (wildcard(h) || wildcard(&host) || *h == host) {
                errors.at(
                    pos,
                    Some(&owner),
                    None,
                    format!("port {port} is also used by {o}"),
                );
                return;
            }
        }
        seen.push((host, port, owner, pos));
    };
    let used_receivers: Vec<&ComponentId> = {
        let mut ids: Vec<&ComponentId> = v
            .config
            .pipelines
            .iter()
            .flat_map(|p| p.receivers.iter().map(|r| &r.id))
            .collect();
        ids.sort();
        ids.dedup();
        ids
    };
    for id in used_receivers {
        let Some(rc) = v.receivers.get(id) else {
            continue;
        };
        let pos = v
            .config
            .receivers
            .iter()
            .find(|d| d.id == *id)
            .map_or_else(Pos::default, |d| d.pos);
        for ep in rc.endpoints() {
            add(&ep, format!("receivers::{id}"), pos, errors);
        }
    }
    for r in &v.config.service_extensions {
        if let Some(ec) = v.extensions.get(&r.id) {
            for ep in ec.endpoints() {
                add(&ep, format!("extensions::{}", r.id), r.pos, errors);
            }
        }
    }
    for addr in v.config.telemetry.metrics.listen_addresses() {
        add(
            &addr,
            "service::telemetry::metrics".into(),
            Pos::at(1, 1),
            errors,
        );
    }
}

/// Every `auth: {authenticator: <id>}` under `node`, with its position.
fn authenticators(node: &Node, out: &mut Vec<(String, Pos)>) {
    match &node.value {
        crate::config::node::Value::Map(entries) => {
            for (k, v) in entries {
                if k.name == "auth"
                    && let Some(a) = v.get("authenticator")
                    && let crate::config::node::Value::Str(id) = &a.value
                {
                    out.push((id.clone(), a.pos));
                }
                authenticators(v, out);
            }
        }
        crate::config::node::Value::Seq(items) => {
            items.iter().for_each(|n| authenticators(n, out));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::Signal;

    fn errors_of(yaml: &str) -> Vec<String> {
        match validate_str(yaml, "t.yaml", &|_| None) {
            Ok(_) => vec![],
            Err(es) => es.iter().map(ToString::to_string).collect(),
        }
    }

    const BASE: &str = "receivers:\n  otlp:\n    protocols:\n      grpc:\nexporters:\n  debug:\n";

    #[test]
    fn a_minimal_config_is_valid() {
        let e = errors_of(&format!(
            "{BASE}service:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [debug]\n"
        ));
        assert!(e.is_empty(), "{e:?}");
    }

    #[test]
    fn storage_must_name_a_started_storage_extension() {
        let cfg = |ext: &str, listed: &str| {
            format!(
                "receivers:\n  filelog:\n    include: [/tmp/*.log]\n    storage: file_storage/x\nexporters:\n  debug:\nextensions:\n{ext}service:\n  extensions: [{listed}]\n  pipelines:\n    logs:\n      receivers: [filelog]\n      exporters: [debug]\n"
            )
        };
        let fs = "  file_storage/x:\n    directory: /tmp\n";
        assert!(errors_of(&cfg(fs, "file_storage/x")).is_empty());
        assert_eq!(
            errors_of(&cfg(fs, "")),
            [
                "t.yaml:4:14: receivers::filelog: `storage`: extension `file_storage/x` is not listed in `service::extensions`, so it is not started"
            ]
        );
        let e = errors_of(&cfg("  health_check:\n", "health_check"));
        assert_eq!(
            e,
            [
                "t.yaml:4:14: receivers::filelog: `storage`: extension `file_storage/x` is not defined in `extensions`"
            ]
        );
    }

    #[test]
    fn auth_and_queue_storage_must_name_started_extensions() {
        let cfg = |listed: &str| {
            format!(
                "receivers:\n  otlp:\n    protocols:\n      http:\n        auth:\n          authenticator: basicauth\nexporters:\n  otlp_grpc:\n    endpoint: x:4317\n    sending_queue:\n      storage: file_storage\nextensions:\n  basicauth:\n    htpasswd: {{inline: \"a:b\"}}\n  file_storage:\n    directory: /tmp\nservice:\n  extensions: [{listed}]\n  pipelines:\n    logs:\n      receivers: [otlp]\n      exporters: [otlp_grpc]\n"
            )
        };
        assert!(errors_of(&cfg("basicauth, file_storage")).is_empty());
        assert_eq!(
            errors_of(&cfg("")),
            [
                "t.yaml:11:16: exporters::otlp_grpc: `sending_queue::storage`: extension `file_storage` is not listed in `service::extensions`, so it is not started",
                "t.yaml:6:26: receivers::otlp: `auth::authenticator`: extension `basicauth` is not listed in `service::extensions`, so it is not started",
            ]
        );
    }

    #[test]
    fn undefined_component_in_a_pipeline() {
        let e = errors_of(&format!(
            "{BASE}service:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      processors: [batch]\n      exporters: [debug]\n"
        ));
        assert_eq!(
            e,
            vec![
                "t.yaml:11:20: service::pipelines::traces: `processors`: `batch` is not defined in `processors`"
            ]
        );
    }

    #[test]
    fn empty_pipeline_and_unknown_signal() {
        let e = errors_of(&format!(
            "{BASE}service:\n  pipelines:\n    traces:\n      receivers: [otlp]\n    events:\n      receivers: [otlp]\n"
        ));
        assert!(
            e.iter()
                .any(|m| m.contains("t.yaml:9:5") && m.contains("needs at least one exporter")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.contains("t.yaml:11:5") && m.contains("unknown signal \"events\"")),
            "{e:?}"
        );
    }

    #[test]
    fn a_component_used_with_a_signal_it_lacks_is_refused() {
        use crate::component::Factory;
        use crate::registry::FACTORIES;
        // Today every component has every signal; check the rule with a `debug` that lacks logs.
        let table: Vec<Factory> = FACTORIES
            .iter()
            .map(|f| Factory {
                signals: if f.name == "debug" {
                    &[Signal::Traces, Signal::Metrics]
                } else {
                    f.signals
                },
                ..*f
            })
            .collect();
        let yaml = format!(
            "{BASE}service:\n  pipelines:\n    logs:\n      receivers: [otlp]\n      exporters: [debug]\n"
        );
        let mut errors = Errors::new("t.yaml");
        let cfg = config::load_str(&yaml, &|_| None, &mut errors).unwrap();
        check(cfg, &table, &mut errors);
        let msgs: Vec<String> = errors.list.iter().map(ToString::to_string).collect();
        assert_eq!(
            msgs,
            vec![
                "t.yaml:11:19: service::pipelines::logs: `exporters`: `debug` does not support logs"
            ]
        );
    }

    #[test]
    fn port_clash() {
        let e = errors_of(
            "receivers:\n  otlp:\n    protocols:\n      grpc:\n  otlp/2:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:4317\nexporters:\n  debug:\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp, otlp/2]\n      exporters: [debug]\n",
        );
        assert!(
            e.iter()
                .any(|m| m.contains("port 4317 is also used by receivers::otlp")),
            "{e:?}"
        );
    }
}

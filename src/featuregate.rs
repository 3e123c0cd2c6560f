//! `--feature-gates`, as the Collector takes them: `id` or `+id` enables a gate, `-id` disables
//! it, comma-separated and repeatable. Only gates ferrotel knows are accepted; an unknown one is
//! refused by name rather than ignored, since a gate a user relies on must not silently do
//! nothing.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Off unless enabled.
    Alpha,
    /// On unless disabled.
    Beta,
    /// Always on; disabling is refused.
    Stable,
}

#[derive(Debug)]
pub struct Gate {
    pub id: &'static str,
    pub stage: Stage,
    /// What the gate does, in the Collector and here.
    pub description: &'static str,
}

/// The Collector's gates that ferrotel knows.
pub const GATES: &[Gate] = &[
    Gate {
        id: MERGE_APPEND,
        stage: Stage::Alpha,
        description: "Combines component lists (service::extensions and each pipeline's receivers and exporters) from several --config sources instead of replacing them",
    },
    Gate {
        id: "otelcol.printInitialConfig",
        stage: Stage::Alpha,
        description: "The Collector needs it for `print-config`; ferrotel accepts it and prints the config with or without it",
    },
];

pub const MERGE_APPEND: &str = "confmap.enableMergeAppendOption";

/// Which gates are on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gates(BTreeMap<&'static str, bool>);

impl Default for Gates {
    fn default() -> Self {
        Gates(
            GATES
                .iter()
                .map(|g| (g.id, g.stage != Stage::Alpha))
                .collect(),
        )
    }
}

impl Gates {
    /// Applies `--feature-gates` values in order; every unknown or refused gate is named.
    pub fn parse(flags: &[String]) -> Result<Gates, Vec<String>> {
        let mut gates = Gates::default();
        let mut errors = Vec::new();
        for item in flags.iter().flat_map(|f| f.split(',')) {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let (on, id) = match item.strip_prefix('-') {
                Some(id) => (false, id),
                None => (true, item.strip_prefix('+').unwrap_or(item)),
            };
            match GATES.iter().find(|g| g.id == id) {
                None => errors.push(format!(
                    "--feature-gates: no such feature gate `{id}`; `ferrotel featuregate` lists the known ones"
                )),
                Some(g) if g.stage == Stage::Stable && !on => errors.push(format!(
                    "--feature-gates: `{id}` is stable and cannot be disabled"
                )),
                Some(g) => {
                    gates.0.insert(g.id, on);
                }
            }
        }
        if errors.is_empty() {
            Ok(gates)
        } else {
            Err(errors)
        }
    }

    pub fn enabled(&self, id: &str) -> bool {
        self.0.get(id).copied().unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gates_are_enabled_disabled_and_checked_by_name() {
        let g = Gates::parse(&[]).unwrap();
        assert!(!g.enabled(MERGE_APPEND));
        let g = Gates::parse(&[format!("+{MERGE_APPEND},otelcol.printInitialConfig")]).unwrap();
        assert!(g.enabled(MERGE_APPEND) && g.enabled("otelcol.printInitialConfig"));
        let g = Gates::parse(&[MERGE_APPEND.into(), format!("-{MERGE_APPEND}")]).unwrap();
        assert!(!g.enabled(MERGE_APPEND));
        let e = Gates::parse(&["nope.gate,-other".into()]).unwrap_err();
        assert_eq!(e.len(), 2);
        assert!(e[0].contains("no such feature gate `nope.gate`"), "{e:?}");
        assert!(e[1].contains("`other`"), "{e:?}");
    }
}

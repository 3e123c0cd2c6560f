//! Config errors: each located at its source, line, column, component and key, and collected
//! so that `validate` lists every one at once.

use std::fmt;

use super::de::DeError;
use super::node::Pos;

/// One located problem in a config file.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: String,
    pub pos: Option<Pos>,
    /// `receivers::otlp/internal`, `service::pipelines::traces`, ...
    pub component: Option<String>,
    /// Dotted key path inside the component, e.g. `protocols.grpc.endpoint`.
    pub key: Option<String>,
    pub msg: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(p) = self.pos {
            write!(f, ":{}:{}", p.line, p.column)?;
        }
        f.write_str(": ")?;
        if let Some(c) = &self.component {
            write!(f, "{c}: ")?;
        }
        if let Some(k) = &self.key {
            write!(f, "`{k}`: ")?;
        }
        f.write_str(&self.msg)
    }
}

/// Collects errors so that `validate` can list every problem at once.
#[derive(Debug, Default)]
pub struct Errors {
    /// What an error with no position is reported against: the first source, or all of them.
    pub file: String,
    /// The name of each source, indexed by [`Pos::source`], and whether its positions mean
    /// anything (a `--set` flag is one line of its own making: no line and column).
    pub sources: Vec<(String, bool)>,
    pub list: Vec<ConfigError>,
}

impl Errors {
    pub fn new(file: impl Into<String>) -> Self {
        let file = file.into();
        Errors {
            sources: vec![(file.clone(), true)],
            file,
            list: Vec::new(),
        }
    }

    /// Registers one more source (a `--config` file, an `env:` value, a `--set` flag) and
    /// returns the index its positions carry.
    pub fn add_source(&mut self, name: impl Into<String>, placed: bool) -> u16 {
        self.sources.push((name.into(), placed));
        u16::try_from(self.sources.len() - 1).unwrap_or(u16::MAX)
    }

    /// The name of the source a position is in.
    pub fn file_of(&self, pos: Pos) -> &str {
        self.sources
            .get(usize::from(pos.source))
            .map_or(&self.file, |(name, _)| name)
    }

    /// The position as reported: none for a source without lines.
    fn placed(&self, pos: Pos) -> Option<Pos> {
        match self.sources.get(usize::from(pos.source)) {
            Some((_, false)) => None,
            _ => Some(pos),
        }
    }

    pub fn at(
        &mut self,
        pos: Pos,
        component: Option<&str>,
        key: Option<&str>,
        msg: impl Into<String>,
    ) {
        self.list.push(ConfigError {
            file: self.file_of(pos).to_owned(),
            pos: self.placed(pos),
            component: component.map(str::to_owned),
            key: key.map(str::to_owned),
            msg: msg.into(),
        });
    }

    /// An error about the config as a whole or a source that could not be read: no position.
    pub fn unplaced(&mut self, file: &str, msg: impl Into<String>) {
        self.list.push(ConfigError {
            file: file.to_owned(),
            pos: None,
            component: None,
            key: None,
            msg: msg.into(),
        });
    }

    /// Records a deserialization error of a component's config, keeping its position and path.
    pub fn de(&mut self, component: &str, fallback: Pos, e: DeError) {
        let key = e.path_string();
        let pos = e.pos.unwrap_or(fallback);
        self.list.push(ConfigError {
            file: self.file_of(pos).to_owned(),
            pos: self.placed(pos),
            component: Some(component.to_owned()),
            key: (!key.is_empty()).then_some(key),
            msg: e.msg,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

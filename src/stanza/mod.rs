//! The stanza library, as the Collector's `pkg/stanza`: entries and fields ([`entry`]), the
//! `expr` language ([`expr`]), the operators ([`operators`], the stateful `container` and
//! `recombine` in [`stateful`]), their config ([`config`]), text encodings ([`encoding`]) and
//! time parsing. Shared by `filelog` and `syslog`, and by the journald and other log receivers to
//! come.

pub mod config;
pub mod encoding;
pub mod entry;
pub mod expr;
pub mod operators;
pub mod parsers;
pub mod stateful;

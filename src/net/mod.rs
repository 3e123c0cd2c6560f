//! Networking shared by every component: TLS ([`tls`]), the HTTP/gRPC server with its
//! connection limits ([`server`]), compression ([`compression`]), a DNS client for SRV/MX/NS
//! ([`dns`]), client construction ([`client`]) and authentication ([`auth`]).

pub mod auth;
pub mod aws;
pub mod client;
pub mod compression;
pub mod dns;
pub mod server;
pub mod tls;

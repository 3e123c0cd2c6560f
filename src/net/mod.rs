//! Networking shared by every component: TLS ([`tls`]), the HTTP/gRPC server with its
//! connection limits ([`server`]), compression ([`compression`]) and client construction
//! ([`client`]).

pub mod client;
pub mod compression;
pub mod server;
pub mod tls;

pub mod basicauth;
pub mod bearertokenauth;
pub mod file_storage;
pub mod headers_setter;
pub mod health_check;
pub mod healthcheckv2;
pub mod oauth2client;
pub mod oidc;

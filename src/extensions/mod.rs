pub mod file_storage;
pub mod health_check;
pub mod healthcheckv2;

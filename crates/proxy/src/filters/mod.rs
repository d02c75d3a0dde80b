//! Pure functions behind the route filters (no Pingora types).

pub mod cors;
pub mod redirect;
pub mod rewrite;

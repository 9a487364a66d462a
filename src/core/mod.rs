//! The vocabulary every other module speaks, with no I/O: the data model
//! ([`types`]), errors and their stable codes ([`error`]), the caller and the
//! validated namespace name ([`access`]), API keys ([`keys`]), read-time
//! redaction ([`redact`]), search parameters ([`params`]) and the agent registry's
//! and mailboxes' vocabulary ([`agents`]).

pub mod access;
pub mod agents;
pub mod board;
pub mod context;
pub mod error;
pub mod keys;
pub mod params;
pub mod redact;
pub mod types;

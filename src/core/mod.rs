//! The vocabulary every other module speaks, with no I/O: the data model
//! ([`types`]), errors and their stable codes ([`error`]), the caller and the
//! validated namespace name ([`access`]), and search parameters ([`params`]).

pub mod access;
pub mod board;
pub mod context;
pub mod error;
pub mod params;
pub mod types;

//! The rule stage: detection rules loaded from Elastic detection-rules TOML, their KQL queries
//! compiled once, and the new-terms gate that lets only first-seen tuples through.

pub mod extended;
pub mod file;
pub mod kql;
pub mod new_terms;
pub mod ratecap;

//! The rule stage: detection rules loaded from Elastic detection-rules TOML, their KQL or EQL
//! queries compiled once, and the new-terms gate that lets only first-seen tuples through.

pub mod eql;
pub mod extended;
pub mod file;
pub mod kql;
pub mod new_terms;
pub mod ratecap;

//! Command-line front ends of the commands beyond `compile` and `schema`; the work is in the library.

pub mod explain;
pub mod package;

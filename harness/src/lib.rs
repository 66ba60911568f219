//! trapdiff: the harness library behind the `trapdiff` binary.

pub mod backend;
pub mod case_file;
pub mod disasm;
pub mod doctor;
pub mod paths;

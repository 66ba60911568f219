//! trapdiff: the harness library behind the `trapdiff` binary.

pub mod backend;
pub mod bench;
pub mod bisect;
pub mod case_file;
pub mod compare;
pub mod diff;
pub mod disasm;
pub mod doctor;
pub mod fuzz;
pub mod kernel;
pub mod known;
pub mod merge;
pub mod paths;
pub mod progress;
pub mod quirks;
pub mod replay;
pub mod report;
pub mod run;
pub mod show;

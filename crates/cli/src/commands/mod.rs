//! One module a command. A command imports the shared modules of the crate (`manifests`,
//! `output`, `settings`, `grants`, ...), never another command: a test holds it.

pub mod audit;
pub mod crd;
pub mod explain;
pub mod import;
pub mod plan;
pub mod run;
pub mod unmanage;

//! Attaching the terminal to a running process of a container: the runtime's relay.

pub use moat_runtime::attach::{attach, terminal_size};

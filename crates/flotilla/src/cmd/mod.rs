//! One module per subcommand; each exposes an `Args` struct and a `run(args)` function.

pub mod bench;
pub mod server;
pub mod apiclient;
pub mod host;
pub mod os;

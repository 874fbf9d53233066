//! One module per subcommand; each exposes an `Args` struct and a `run(args)` function.

pub mod server;

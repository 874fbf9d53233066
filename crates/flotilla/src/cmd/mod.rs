//! One module per subcommand; each exposes an `Args` struct and a `run(args)` function.

pub mod agent;
pub mod apiclient;
pub mod bench;
pub mod bench_agent;
pub mod bench_dns;
pub mod capacity_scaling;
pub mod dev;
pub mod discovery_dns;
pub mod host;
pub mod host_probe;
pub mod lifecycle_hooks;
pub mod load_balancers;
pub mod logs;
pub mod os;
pub mod server;
pub mod server_election;
pub mod store;
pub mod updater;

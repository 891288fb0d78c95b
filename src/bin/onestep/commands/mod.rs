//! One module per subcommand (the layout of cargo's `src/bin/cargo/commands/`): each holds
//! its clap arguments, its `run`, and the helpers only it uses.

pub mod bench;
pub mod bench_adjust;
pub mod convert;
pub mod models;
pub mod tile_sweep;
pub mod upscale;

//! Tiling: where tiles go (planner) and how overlapping outputs are merged (blend).

pub mod blend;
pub mod latent;
pub mod memory;
pub mod planner;
pub mod vae;

pub use blend::RowBlender;
pub use planner::{Tile, TilePlan};
pub mod metrics;

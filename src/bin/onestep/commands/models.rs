//! `onestep models`: the model catalog, as a table or JSON.

use std::path::PathBuf;

use crate::util::{Result, size};

#[derive(clap::Args)]
pub struct Args {
    /// Where converted models live.
    #[arg(long, default_value = "models")]
    dir: PathBuf,
    /// Print JSON (one array) instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(Args { dir, json }: Args) -> Result<()> {
    let list = onestep_sr::catalog::list(&dir);
    if json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    println!("{:<26} {:>5} {:<8} {:>9}  {:<9} {}", "id", "scale", "arch", "size", "converted", "description");
    for l in &list {
        let e = &l.entry;
        println!(
            "{:<26} {:>5} {:<8} {:>9}  {:<9} {}{}",
            e.id,
            format!("x{}", e.scale),
            e.architecture,
            e.bytes.map_or("-".into(), size),
            if l.path.is_some() { "yes" } else { "no" },
            e.description,
            if e.default { " (default)" } else { "" }
        );
    }
    println!("\nUse one with `onestep upscale IN -o OUT --model ID`. Licences: `onestep models --json`.");
    Ok(())
}

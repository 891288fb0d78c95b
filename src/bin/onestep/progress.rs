//! Progress bars (indicatif) of the commands that load weights and upscale.

use indicatif::{ProgressBar, ProgressStyle};

pub fn bar(style: &str) -> ProgressBar {
    let pb = ProgressBar::new(0);
    pb.set_style(ProgressStyle::with_template(style).expect("valid template"));
    pb
}

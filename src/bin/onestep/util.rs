//! Small things every subcommand shares: the error type, one-line messages, sizes in bytes.

pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// A message on one line (as `main` prints errors).
pub fn one_line(msg: &str) -> String {
    msg.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(": ")
}

/// Bytes in GiB or, under one, MiB.
pub fn size(bytes: u64) -> String {
    let gib = bytes as f64 / (1u64 << 30) as f64;
    if gib >= 1.0 { format!("{gib:.2} GiB") } else { format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64) }
}

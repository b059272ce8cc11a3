//! Statistics and the plain-text tables the bench prints.

use std::time::Duration;

/// The `p`-th quantile (0..=1, nearest rank) of `samples`.
pub fn quantile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The median of `samples`.
pub fn median(samples: &[Duration]) -> Duration {
    quantile(samples, 0.5)
}

/// Milliseconds with two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// Microseconds, no decimals.
pub fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

/// KiB as MiB with one decimal.
#[allow(clippy::cast_precision_loss)]
pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// `a / b` as "N.NNx".
pub fn ratio(a: f64, b: f64) -> String {
    if b == 0.0 {
        return "-".to_owned();
    }
    format!("{:.2}x", a / b)
}

/// `a / b` for durations.
pub fn time_ratio(a: Duration, b: Duration) -> String {
    ratio(a.as_secs_f64(), b.as_secs_f64())
}

/// Throughput in MiB/s.
#[allow(clippy::cast_precision_loss)]
pub fn mib_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / elapsed.as_secs_f64().max(1e-9)
}

/// A section heading.
pub fn section(title: &str) {
    println!("\n{title}");
    println!("{}", "-".repeat(title.chars().count()));
}

/// Columns: the first `left` left-aligned (labels), the others right-aligned (figures).
pub struct Table {
    rows: Vec<Vec<String>>,
    left: usize,
}

impl Table {
    /// A table with this header row.
    pub fn new(header: &[&str]) -> Self {
        Table {
            rows: vec![header.iter().map(|h| (*h).to_owned()).collect()],
            left: 1,
        }
    }

    /// Left-aligns the first `n` columns instead of only the first.
    pub fn left_aligned(mut self, n: usize) -> Self {
        self.left = n;
        self
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Prints it, indented by two spaces.
    pub fn print(&self) {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let width = |c: usize| {
            self.rows
                .iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..columns).map(width).collect();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                let w = widths[c];
                line.push_str(if c == 0 { "  " } else { "   " });
                if c < self.left {
                    line.push_str(&format!("{cell:<w$}"));
                } else {
                    line.push_str(&format!("{cell:>w$}"));
                }
            }
            println!("{}", line.trim_end());
        }
    }
}

//! Per-layer download bars on stderr, drawn only for a person watching a terminal.

use std::io::IsTerminal;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Progress {
    bars: Option<MultiProgress>,
}

impl Progress {
    /// Bars are drawn if `wanted` and stderr is a terminal; otherwise nothing is.
    pub fn new(wanted: bool) -> Self {
        let bars = (wanted && std::io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Self { bars }
    }

    /// A bar for one blob of `total` bytes, labelled with its short digest.
    pub fn bar(&self, label: &str, total: u64) -> ProgressBar {
        let Some(bars) = &self.bars else { return ProgressBar::hidden() };
        let style = ProgressStyle::with_template("{prefix} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        bars.add(ProgressBar::new(total).with_style(style).with_prefix(label.to_owned()))
    }
}

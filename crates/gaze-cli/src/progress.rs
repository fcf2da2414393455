//! Progress on standard error for runs that take more than a moment.
//!
//! Bars and spinners draw only when standard error is a terminal; in a pipe, a file or a test they
//! are hidden and print nothing, so scripts reading gaze's output never see them.
//! The library crates never print: the command line shows progress between the calls it makes
//! (per method, per image, per picture written).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Whether progress is drawn at all: only when standard error is a terminal.
pub fn visible() -> bool {
    std::io::stderr().is_terminal()
}

/// A bar over `len` steps, drawn on standard error when [`visible`], hidden otherwise.
pub fn bar(len: u64, what: &str) -> ProgressBar {
    bar_to(len, what, visible())
}

/// A spinner with elapsed time for one step whose length is unknown (a method running on a batch),
/// drawn on standard error when [`visible`], hidden otherwise.
pub fn spinner(message: impl Into<String>) -> ProgressBar {
    spinner_to(message, visible())
}

fn bar_to(len: u64, what: &str, draw: bool) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), target(draw));
    let template = format!("{{spinner}} {what} [{{bar:30}}] {{pos}}/{{len}} {{elapsed}} {{wide_msg}}");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("=> "));
    }
    if draw {
        bar.enable_steady_tick(Duration::from_millis(120));
    }
    bar
}

fn spinner_to(message: impl Into<String>, draw: bool) -> ProgressBar {
    let spinner = ProgressBar::with_draw_target(None, target(draw));
    if let Ok(style) = ProgressStyle::with_template("{spinner} {wide_msg} {elapsed}") {
        spinner.set_style(style);
    }
    spinner.set_message(message.into());
    if draw {
        spinner.enable_steady_tick(Duration::from_millis(120));
    }
    spinner
}

fn target(draw: bool) -> ProgressDrawTarget {
    if draw {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_unless_drawn_on_a_terminal() {
        let hidden = bar_to(3, "images", false);
        assert!(hidden.is_hidden());
        hidden.inc(2);
        assert_eq!(hidden.position(), 2);
        assert_eq!(hidden.length(), Some(3));
        assert!(spinner_to("running", false).is_hidden());
        // Standard error is captured by the test harness or a pipe, never a terminal, in CI.
        if !std::io::stderr().is_terminal() {
            assert!(bar(3, "images").is_hidden());
            assert!(spinner("running").is_hidden());
        }
    }
}

//! Progress for a person at a terminal: a bar for work that reports how far it is, a
//! spinner for work that does not. Both draw on stderr and only when stderr is a
//! terminal, so scripts see nothing but the command's final line; both clear themselves
//! when dropped, so an `error:` line never lands in the middle of a bar.

use std::future::Future;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Steps of the bar: fine enough for a smooth bar, coarse enough to redraw rarely.
const STEPS: u64 = 1000;
const TICK: Duration = Duration::from_millis(120);

/// A bar from 0 to 100 %.
pub struct Bar(ProgressBar);

impl Bar {
    pub fn new(message: String) -> Self {
        let bar = visible(|| ProgressBar::with_draw_target(Some(STEPS), ProgressDrawTarget::stderr()));
        let style = ProgressStyle::with_template("{msg} [{wide_bar}] {percent:>3}% eta {eta}")
            .map(|style| style.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_message(message);
        bar.enable_steady_tick(TICK);
        Bar(bar)
    }

    pub fn set_message(&self, message: String) {
        self.0.set_message(message);
    }

    /// Moves the bar to `fraction` (0.0 to 1.0) of the way.
    pub fn set(&self, fraction: f64) {
        self.0.set_position(steps(fraction));
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

/// Runs `work` with a spinner saying `message`.
pub async fn spin<T>(message: String, work: impl Future<Output = T>) -> T {
    let _spinner = Spinner::new(message);
    work.await
}

struct Spinner(ProgressBar);

impl Spinner {
    fn new(message: String) -> Self {
        let spinner = visible(|| ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()));
        let style = ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        spinner.set_style(style);
        spinner.set_message(message);
        spinner.enable_steady_tick(TICK);
        Spinner(spinner)
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

/// `make()` on a terminal, a bar that draws nothing elsewhere.
fn visible(make: impl FnOnce() -> ProgressBar) -> ProgressBar {
    if std::io::stderr().is_terminal() { make() } else { ProgressBar::hidden() }
}

/// `fraction` of the way in steps of the bar, whatever the daemon sent.
fn steps(fraction: f64) -> u64 {
    (fraction.clamp(0.0, 1.0) * STEPS as f64).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_become_steps() {
        assert_eq!(steps(0.0), 0);
        assert_eq!(steps(0.4219), 422);
        assert_eq!(steps(1.0), STEPS);
        assert_eq!(steps(7.0), STEPS);
        assert_eq!(steps(-1.0), 0);
        assert_eq!(steps(f64::NAN), 0);
    }

    #[test]
    fn a_hidden_bar_takes_updates() {
        let bar = Bar(ProgressBar::hidden());
        bar.set(0.5);
        assert_eq!(bar.0.position(), 500);
    }
}

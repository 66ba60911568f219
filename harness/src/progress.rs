//! The one progress line on stderr, for `trapdiff run` and `trapdiff fuzz`: redrawn in place
//! on a terminal, a plain line at a slower pace otherwise (CI logs stay short).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct ProgressLine {
    tty: bool,
    every: Duration,
    last: Instant,
    drawn: bool,
}

impl ProgressLine {
    /// A line at most every `tty_every` on a terminal, every `log_every` into a log.
    pub fn new(tty_every: Duration, log_every: Duration) -> ProgressLine {
        let tty = std::io::stderr().is_terminal();
        ProgressLine { tty, every: if tty { tty_every } else { log_every }, last: Instant::now(), drawn: false }
    }

    /// Whether a new line is due (then the next one is due an interval from now).
    pub fn due(&mut self) -> bool {
        let due = self.last.elapsed() >= self.every;
        if due {
            self.last = Instant::now();
        }
        due
    }

    /// Show `line` as the current progress.
    pub fn show(&mut self, line: &str) {
        if self.tty {
            eprint!("\r\x1b[K{line}");
            self.drawn = true;
        } else {
            eprintln!("{line}");
        }
        let _ = std::io::stderr().flush();
    }

    /// A line that stays (a find, a warning), printed over the progress line.
    pub fn note(&mut self, line: &str) {
        if self.drawn {
            eprint!("\r\x1b[K");
            self.drawn = false;
        }
        eprintln!("{line}");
    }

    /// End the progress line, so what follows starts on a line of its own.
    pub fn finish(&mut self) {
        if self.drawn {
            eprintln!();
            self.drawn = false;
        }
    }
}

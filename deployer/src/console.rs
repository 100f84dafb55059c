//! Where progress goes: the terminal, or a buffer a test reads back. Library code writes
//! through a [`Console`], never with `println!`.

use std::{
    fmt::Display,
    io::Write,
    sync::{Arc, Mutex},
};

#[derive(Debug, Clone, Default)]
pub struct Console {
    captured: Option<Arc<Mutex<String>>>,
}

impl Console {
    pub fn stdout() -> Self {
        Self { captured: None }
    }

    /// A console that keeps what it is given, for tests.
    pub fn capture() -> Self {
        Self {
            captured: Some(Arc::default()),
        }
    }

    pub fn line(&self, line: impl Display) {
        match &self.captured {
            Some(buffer) => {
                let mut buffer = buffer.lock().expect("no writer panics holding the lock");
                buffer.push_str(&line.to_string());
                buffer.push('\n');
            }
            None => {
                let mut stdout = std::io::stdout().lock();
                // A closed stdout (a pipe to `head`) must not fail a deployment half-way.
                let _ = writeln!(stdout, "{line}");
            }
        }
    }

    /// Everything written so far (empty for the terminal).
    pub fn text(&self) -> String {
        self.captured
            .as_ref()
            .map(|buffer| buffer.lock().expect("no writer panics").clone())
            .unwrap_or_default()
    }
}

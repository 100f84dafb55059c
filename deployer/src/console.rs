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
    /// A test's answers to [`Console::confirm`], in order; none left is "no".
    answers: Arc<Mutex<Vec<bool>>>,
}

impl Console {
    pub fn stdout() -> Self {
        Self::default()
    }

    /// A console that keeps what it is given, for tests. It answers "no" to every question.
    pub fn capture() -> Self {
        Self {
            captured: Some(Arc::default()),
            answers: Arc::default(),
        }
    }

    /// A capturing console that answers its questions so, in order.
    pub fn capture_answering(answers: &[bool]) -> Self {
        let console = Self::capture();
        *console.answers.lock().expect("no writer panics") =
            answers.iter().rev().copied().collect();
        console
    }

    /// Asks a yes/no question; only `y` or `yes` is yes. On the terminal it reads a line from
    /// stdin off the runtime's threads; a closed stdin (CI without `--yes`) is "no".
    pub async fn confirm(&self, question: &str) -> bool {
        self.line(format!("{question} [y/N]"));
        if self.captured.is_some() {
            let answer = self
                .answers
                .lock()
                .expect("no writer panics")
                .pop()
                .unwrap_or(false);
            self.line(if answer { "> y" } else { "> n" });
            return answer;
        }
        tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            match std::io::stdin().read_line(&mut line) {
                Ok(_) => matches!(line.trim().to_lowercase().as_str(), "y" | "yes"),
                Err(_) => false,
            }
        })
        .await
        .unwrap_or(false)
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

//! The replay report: identification counts and per-destination outcomes.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use revisit_shared::ports::Outcome;
use revisit_shared::worker::BatchOutcome;

/// Outcome counts at one destination.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DestinationReport {
    /// `live` when requests went to the platform, `outbox` when they were only written.
    pub mode: &'static str,
    /// Events sent carrying an email or phone (in clear or hashed).
    pub identifiable: u64,
    /// Events per outcome (`sent`, `accepted`, `retried`, `failed`, `expired`, `withheld`, ...).
    pub outcomes: BTreeMap<&'static str, u64>,
}

/// A line of the log that could not be read.
#[derive(Debug, Clone, Serialize)]
pub struct InvalidLine {
    pub line: usize,
    pub error: String,
}

/// The replay report, printed and written as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub events: u64,
    /// Distinct browser ids in the log.
    pub browsers: u64,
    /// Lines without a browser id, each replayed as a new cookie jar.
    pub anonymous_jars: u64,
    /// Events the collector rejected (kept in the quarantine).
    pub rejected: u64,
    /// Rejections by the collector's message.
    pub rejections: BTreeMap<String, u64>,
    /// Events carrying an email or phone in the browser payload alone.
    pub payload_identified: u64,
    /// Events identifiable with the payload plus the simulated script-set vendor cookie.
    pub script_cookie_identified: u64,
    pub script_cookie_days: i64,
    /// Events carrying an email or phone after server-side enrichment.
    pub enriched_identified: u64,
    pub destinations: BTreeMap<String, DestinationReport>,
    pub invalid_lines: Vec<InvalidLine>,
    pub elapsed_ms: u64,
}

impl Report {
    pub fn new(script_cookie_days: i64) -> Self {
        Self {
            events: 0,
            browsers: 0,
            anonymous_jars: 0,
            rejected: 0,
            rejections: BTreeMap::new(),
            payload_identified: 0,
            script_cookie_identified: 0,
            script_cookie_days,
            enriched_identified: 0,
            destinations: BTreeMap::new(),
            invalid_lines: Vec::new(),
            elapsed_ms: 0,
        }
    }

    pub fn add_destination(&mut self, name: &str, live: bool) {
        let mode = if live { "live" } else { "outbox" };
        self.destinations.insert(
            name.to_owned(),
            DestinationReport {
                mode,
                ..DestinationReport::default()
            },
        );
    }

    pub fn reject(&mut self, message: &str) {
        self.rejected += 1;
        *self.rejections.entry(message.to_owned()).or_default() += 1;
    }

    pub fn invalid_line(&mut self, line: usize, error: &str) {
        self.invalid_lines.push(InvalidLine {
            line,
            error: error.to_owned(),
        });
    }

    pub fn add_outcome(&mut self, outcome: &BatchOutcome) {
        self.enriched_identified += outcome
            .enriched
            .iter()
            .filter(|e| e.is_identified())
            .count() as u64;
        for ((destination, result), count) in &outcome.delivery.counts {
            let entry = self.destinations.entry(destination.clone()).or_default();
            *entry.outcomes.entry(result.as_str()).or_default() += count;
        }
        for (destination, count) in &outcome.delivery.identified {
            self.destinations
                .entry(destination.clone())
                .or_default()
                .identifiable += count;
        }
    }

    /// Logs one line per destination with its mode and outcome counts.
    pub fn log_destinations(&self) {
        for (name, destination) in &self.destinations {
            tracing::info!(
                destination = name.as_str(),
                mode = destination.mode,
                identifiable = destination.identifiable,
                outcomes = ?destination.outcomes,
                "replay delivery outcomes"
            );
        }
    }

    /// The report as a text table.
    pub fn render(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(text, "events                       {:>9}", self.events);
        let _ = writeln!(text, "browsers                     {:>9}", self.browsers);
        let _ = writeln!(
            text,
            "anonymous jars               {:>9}",
            self.anonymous_jars
        );
        let _ = writeln!(text, "rejected                     {:>9}", self.rejected);
        let _ = writeln!(text, "identifiable:");
        let _ = writeln!(
            text,
            "  payload alone              {:>9}",
            self.payload_identified
        );
        let _ = writeln!(
            text,
            "  with {}-day script cookie    {:>9}",
            self.script_cookie_days, self.script_cookie_identified
        );
        let _ = writeln!(
            text,
            "  after enrichment           {:>9}",
            self.enriched_identified
        );
        let columns: Vec<&str> = Outcome::ALL
            .iter()
            .map(|outcome| outcome.as_str())
            .collect();
        let _ = write!(
            text,
            "\n{:<12} {:<7} {:>12}",
            "destination", "mode", "identifiable"
        );
        for column in &columns {
            let _ = write!(text, " {column:>12}");
        }
        let _ = writeln!(text);
        for (name, destination) in &self.destinations {
            let _ = write!(
                text,
                "{name:<12} {:<7} {:>12}",
                destination.mode, destination.identifiable
            );
            for column in &columns {
                let _ = write!(
                    text,
                    " {:>12}",
                    destination.outcomes.get(column).copied().unwrap_or(0)
                );
            }
            let _ = writeln!(text);
        }
        if !self.invalid_lines.is_empty() {
            let _ = writeln!(text, "\ninvalid lines: {}", self.invalid_lines.len());
            for invalid in self.invalid_lines.iter().take(5) {
                let _ = writeln!(text, "  line {}: {}", invalid.line, invalid.error);
            }
        }
        for (reason, count) in &self.rejections {
            let _ = writeln!(text, "rejected {count}: {reason}");
        }
        let _ = write!(text, "\nelapsed {:.2} s", self.elapsed_ms as f64 / 1000.0);
        text
    }
}

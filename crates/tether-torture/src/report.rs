//! A scenario's figures, printed as a table and as one JSON line (the shape
//! tether-bench prints), with each figure's goal and whether it was met.

use std::fmt::Write as _;

/// What a figure should be.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Goal {
    /// Only informative (a count of work done, a duration).
    None,
    /// At most this.
    AtMost(f64),
    /// At least this.
    AtLeast(f64),
}

impl Goal {
    fn met(self, v: f64) -> Option<bool> {
        match self {
            Goal::None => None,
            Goal::AtMost(g) => Some(v <= g),
            Goal::AtLeast(g) => Some(v >= g),
        }
    }

    fn text(self) -> String {
        match self {
            Goal::None => String::new(),
            Goal::AtMost(0.0) => "0".into(),
            Goal::AtMost(g) => format!("<= {}", num(g)),
            Goal::AtLeast(g) => format!(">= {}", num(g)),
        }
    }
}

#[derive(Debug)]
struct Figure {
    name: String,
    value: f64,
    goal: Goal,
}

/// One scenario's results.
#[derive(Debug)]
pub(crate) struct Report {
    scenario: &'static str,
    about: String,
    seed: u64,
    quick: bool,
    figures: Vec<Figure>,
    violations: u64,
}

/// Up to three decimals, none for whole numbers.
fn num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.0}")
    } else if x.abs() >= 100.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.3}")
    }
}

fn json_num(x: f64) -> String {
    if x.is_finite() {
        num(x)
    } else {
        "null".into()
    }
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl Report {
    pub(crate) fn new(scenario: &'static str, about: String, seed: u64, quick: bool) -> Self {
        Report {
            scenario,
            about,
            seed,
            quick,
            figures: Vec::new(),
            violations: 0,
        }
    }

    /// Record a figure.
    pub(crate) fn add(&mut self, name: &str, value: f64, goal: Goal) {
        self.figures.push(Figure {
            name: name.to_string(),
            value,
            goal,
        });
    }

    /// The run's violation count (each was printed as it was found).
    pub(crate) fn violations(&mut self, n: u64) {
        self.violations = n;
    }

    /// Goals missed by the figures.
    pub(crate) fn missed(&self) -> usize {
        self.figures
            .iter()
            .filter(|f| f.goal.met(f.value) == Some(false))
            .count()
    }

    /// Whether the run passed: no violation, every goal met.
    pub(crate) fn passed(&self) -> bool {
        self.violations == 0 && self.missed() == 0
    }

    pub(crate) fn table(&self) -> String {
        let mut rows: Vec<[String; 3]> = vec![["figure".into(), "value".into(), "goal".into()]];
        for f in &self.figures {
            let mark = match f.goal.met(f.value) {
                Some(true) => " ok",
                Some(false) => " MISSED",
                None => "",
            };
            rows.push([
                f.name.clone(),
                num(f.value),
                format!("{}{mark}", f.goal.text()),
            ]);
        }
        rows.push([
            "violations".into(),
            self.violations.to_string(),
            format!("0 {}", if self.violations == 0 { "ok" } else { "MISSED" }),
        ]);
        let w0 = rows.iter().map(|r| r[0].chars().count()).max().unwrap_or(0);
        let w1 = rows.iter().map(|r| r[1].len()).max().unwrap_or(0);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\n== {} — {} — seed {}{} ==",
            self.scenario,
            self.about,
            self.seed,
            if self.quick { ", quick" } else { "" }
        );
        for r in &rows {
            let pad = w0 - r[0].chars().count();
            let line = format!("{}{}  {:>w1$}  {}", r[0], " ".repeat(pad), r[1], r[2]);
            let _ = writeln!(out, "{}", line.trim_end());
        }
        out
    }

    /// One JSON object on one line.
    pub(crate) fn json(&self) -> String {
        let mut s = String::new();
        let _ = write!(
            s,
            "{{\"scenario\":{},\"about\":{},\"seed\":{},\"quick\":{},\"violations\":{},\"passed\":{},\"figures\":[",
            json_str(self.scenario),
            json_str(&self.about),
            self.seed,
            self.quick,
            self.violations,
            self.passed()
        );
        for (i, f) in self.figures.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            let (kind, goal) = match f.goal {
                Goal::None => ("null".to_string(), "null".to_string()),
                Goal::AtMost(g) => ("\"at_most\"".into(), json_num(g)),
                Goal::AtLeast(g) => ("\"at_least\"".into(), json_num(g)),
            };
            let met = match f.goal.met(f.value) {
                Some(b) => b.to_string(),
                None => "null".into(),
            };
            let _ = write!(
                s,
                "{{\"figure\":{},\"value\":{},\"goal\":{kind},\"goal_value\":{goal},\"met\":{met}}}",
                json_str(&f.name),
                json_num(f.value)
            );
        }
        s.push_str("]}");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goals_and_pass() {
        let mut r = Report::new("x", "about \"it\"".into(), 5, true);
        r.add("lost", 0.0, Goal::AtMost(0.0));
        r.add("served %", 100.0, Goal::AtLeast(100.0));
        r.add("seconds", 1.25, Goal::None);
        assert!(r.passed());
        r.add("growth %", 2.0, Goal::AtMost(1.0));
        assert_eq!(r.missed(), 1);
        assert!(!r.passed());
        let j = r.json();
        assert!(j.starts_with("{\"scenario\":\"x\",\"about\":\"about \\\"it\\\"\",\"seed\":5"));
        assert!(j.contains("{\"figure\":\"growth %\",\"value\":2,\"goal\":\"at_most\",\"goal_value\":1,\"met\":false}"));
        assert!(r.table().contains("MISSED"));
    }

    #[test]
    fn violations_fail_the_run() {
        let mut r = Report::new("x", String::new(), 1, false);
        r.violations(1);
        assert!(!r.passed());
        assert!(r.json().contains("\"violations\":1,\"passed\":false"));
    }
}

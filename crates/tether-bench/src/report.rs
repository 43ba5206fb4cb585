//! Figures gathered over rounds, printed as a table and as one JSON line.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::servers::Kind;

/// One figure of one case, its values per server over the rounds.
#[derive(Debug)]
struct Figure {
    name: &'static str,
    higher_better: bool,
    values: BTreeMap<Kind, Vec<f64>>,
}

#[derive(Debug)]
struct Case {
    name: String,
    figures: Vec<Figure>,
}

/// A scenario's results.
#[derive(Debug)]
pub(crate) struct Report {
    scenario: &'static str,
    about: String,
    kinds: Vec<Kind>,
    rounds: usize,
    cases: Vec<Case>,
    /// Column names other than the servers' (see `labels`).
    labels: Vec<(Kind, &'static str)>,
}

/// Median, minimum, maximum.
fn stats(values: &[f64]) -> (f64, f64, f64) {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    (median, v[0], v[n - 1])
}

/// Three significant digits, with k / M for large numbers.
fn num(x: f64) -> String {
    let (v, suffix) = match x.abs() {
        a if a >= 10e6 => (x / 1e6, "M"),
        a if a >= 10e3 => (x / 1e3, "k"),
        _ => (x, ""),
    };
    let digits = match v.abs() {
        a if a >= 100.0 || a == 0.0 => 0,
        a if a >= 10.0 => 1,
        a if a >= 1.0 => 2,
        _ => 3,
    };
    format!("{v:.digits$}{suffix}")
}

fn json_num(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.6}")
    } else {
        "null".into()
    }
}

impl Report {
    pub(crate) fn new(
        scenario: &'static str,
        about: String,
        kinds: &[Kind],
        rounds: usize,
    ) -> Self {
        Report {
            scenario,
            about,
            kinds: kinds.to_vec(),
            rounds,
            cases: Vec::new(),
            labels: Vec::new(),
        }
    }

    /// Name the columns otherwise than by server, for a report whose columns
    /// are not servers (`dtls` compares DTLS with plain UDP, both tether):
    /// the ratios are then `label(tether)/label(other)`.
    pub(crate) fn labels(mut self, labels: &[(Kind, &'static str)]) -> Self {
        self.labels = labels.to_vec();
        self
    }

    fn name(&self, k: Kind) -> &'static str {
        self.labels
            .iter()
            .find(|(l, _)| *l == k)
            .map_or(k.name(), |(_, n)| n)
    }

    /// The ratio column's header and the JSON key of the ratio.
    fn ratio_names(&self, other: Kind) -> (String, String) {
        if self.labels.is_empty() {
            (
                format!("t/{}", other.name()),
                format!("tether_over_{}", other.name()),
            )
        } else {
            let (t, o) = (self.name(Kind::Tether), self.name(other));
            (format!("{t}/{o}"), format!("{t}_over_{o}"))
        }
    }

    /// Record one value. `name` ends in ↑ (higher is better) or ↓.
    pub(crate) fn add(&mut self, case: &str, kind: Kind, name: &'static str, value: f64) {
        let higher_better = !name.ends_with('↓');
        let idx = match self.cases.iter().position(|c| c.name == case) {
            Some(i) => i,
            None => {
                self.cases.push(Case {
                    name: case.to_string(),
                    figures: Vec::new(),
                });
                self.cases.len() - 1
            }
        };
        let figures = &mut self.cases[idx].figures;
        let fig = match figures.iter().position(|f| f.name == name) {
            Some(i) => &mut figures[i],
            None => {
                figures.push(Figure {
                    name,
                    higher_better,
                    values: BTreeMap::new(),
                });
                figures.last_mut().expect("just pushed")
            }
        };
        fig.values.entry(kind).or_default().push(value);
    }

    fn median(fig: &Figure, kind: Kind) -> Option<f64> {
        fig.values.get(&kind).map(|v| stats(v).0)
    }

    fn ratio(fig: &Figure, other: Kind) -> Option<f64> {
        let t = Self::median(fig, Kind::Tether)?;
        let o = Self::median(fig, other)?;
        (o != 0.0).then(|| t / o)
    }

    /// The io_uring servers' ratios to mio, taken round by round (see
    /// `paired`): the columns and JSON keys there are, in order.
    fn paired_kinds(&self) -> impl Iterator<Item = Kind> + '_ {
        [Kind::TetherUring, Kind::Uring].into_iter().filter(|k| {
            self.labels.is_empty() && self.kinds.contains(k) && self.kinds.contains(&Kind::Mio)
        })
    }

    /// The median over the rounds of `kind`'s value over mio's in the same
    /// round. The servers of a round run one after another within seconds,
    /// so a machine that turns slower or faster between rounds moves both
    /// halves of a pair; a ratio of medians taken over rounds from both
    /// states mixes them. `None` unless both have a value in every round.
    fn paired(fig: &Figure, kind: Kind) -> Option<f64> {
        let a = fig.values.get(&kind)?;
        let b = fig.values.get(&Kind::Mio)?;
        if a.len() != b.len() || b.contains(&0.0) {
            return None;
        }
        let r: Vec<f64> = a.iter().zip(b).map(|(x, m)| x / m).collect();
        (!r.is_empty()).then(|| stats(&r).0)
    }

    /// The table: median [min–max] per server, tether's ratios of the
    /// medians, and the io_uring servers' paired ratios to mio.
    pub(crate) fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\n== {} — {} — {} round(s), median [min–max]; ↑ higher is better, ↓ lower ==",
            self.scenario, self.about, self.rounds
        );
        let case_w = self
            .cases
            .iter()
            .map(|c| c.name.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let fig_w = self
            .cases
            .iter()
            .flat_map(|c| c.figures.iter().map(|f| f.name.chars().count()))
            .max()
            .unwrap_or(6)
            .max(6);
        let mut cells: Vec<Vec<String>> = Vec::new();
        for case in &self.cases {
            for (i, fig) in case.figures.iter().enumerate() {
                let mut row = vec![
                    if i == 0 {
                        case.name.clone()
                    } else {
                        String::new()
                    },
                    fig.name.to_string(),
                ];
                for k in &self.kinds {
                    row.push(match fig.values.get(k) {
                        Some(v) => {
                            let (m, lo, hi) = stats(v);
                            if v.len() > 1 {
                                format!("{} [{}–{}]", num(m), num(lo), num(hi))
                            } else {
                                num(m)
                            }
                        }
                        None => "-".into(),
                    });
                }
                for other in [Kind::Mio, Kind::Tokio, Kind::Std] {
                    if self.kinds.contains(&other) && self.kinds.contains(&Kind::Tether) {
                        row.push(Self::ratio(fig, other).map_or("-".into(), |r| format!("{r:.2}")));
                    }
                }
                for k in self.paired_kinds() {
                    row.push(Self::paired(fig, k).map_or("-".into(), |r| format!("{r:.2}")));
                }
                cells.push(row);
            }
        }
        let mut header = vec!["case".to_string(), "figure".to_string()];
        header.extend(self.kinds.iter().map(|k| self.name(*k).to_string()));
        for other in [Kind::Mio, Kind::Tokio, Kind::Std] {
            if self.kinds.contains(&other) && self.kinds.contains(&Kind::Tether) {
                header.push(self.ratio_names(other).0);
            }
        }
        header.extend(self.paired_kinds().map(|k| format!("{}/mio", k.name())));
        let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        widths[0] = widths[0].max(case_w);
        widths[1] = widths[1].max(fig_w);
        for row in &cells {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |row: &[String], out: &mut String| {
            let mut s = String::new();
            for (i, (c, w)) in row.iter().zip(&widths).enumerate() {
                let pad = w - c.chars().count();
                if i < 2 {
                    let _ = write!(s, "{c}{}  ", " ".repeat(pad));
                } else {
                    let _ = write!(s, "{}{c}  ", " ".repeat(pad));
                }
            }
            let _ = writeln!(out, "{}", s.trim_end());
        };
        line(&header, &mut out);
        for row in &cells {
            line(row, &mut out);
        }
        out
    }

    /// One JSON object on one line.
    pub(crate) fn json(&self, quick: bool) -> String {
        let mut s = String::new();
        let _ = write!(
            s,
            "{{\"scenario\":\"{}\",\"about\":\"{}\",\"rounds\":{},\"quick\":{},\"results\":[",
            self.scenario,
            self.about.replace('"', "'"),
            self.rounds,
            quick
        );
        let mut first = true;
        for case in &self.cases {
            for fig in &case.figures {
                if !first {
                    s.push(',');
                }
                first = false;
                let _ = write!(
                    s,
                    "{{\"case\":\"{}\",\"figure\":\"{}\",\"higher_is_better\":{}",
                    case.name,
                    fig.name.trim_end_matches(['↑', '↓']).trim_end(),
                    fig.higher_better
                );
                for (k, v) in &fig.values {
                    let (m, lo, hi) = stats(v);
                    let _ = write!(
                        s,
                        ",\"{}\":{{\"median\":{},\"min\":{},\"max\":{}}}",
                        self.name(*k),
                        json_num(m),
                        json_num(lo),
                        json_num(hi)
                    );
                }
                for other in [Kind::Mio, Kind::Tokio, Kind::Std] {
                    if let Some(r) = Self::ratio(fig, other) {
                        let _ = write!(s, ",\"{}\":{}", self.ratio_names(other).1, json_num(r));
                    }
                }
                for k in self.paired_kinds() {
                    if let Some(r) = Self::paired(fig, k) {
                        let key = k.name().replace('-', "_");
                        let _ = write!(s, ",\"{key}_over_mio_paired\":{}", json_num(r));
                    }
                }
                s.push('}');
            }
        }
        s.push_str("]}");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two rounds, the second on a machine 25 % slower: each round's pair
    /// says 0.8, and so does the paired ratio, whatever the medians mix.
    #[test]
    fn paired_ratios_are_taken_round_by_round() {
        let kinds = [Kind::TetherUring, Kind::Mio, Kind::Uring];
        let mut r = Report::new("pingpong", "t".into(), &kinds, 3);
        for (u, m) in [(4.8, 6.0), (6.0, 7.5), (6.0, 7.5)] {
            r.add("c", Kind::TetherUring, "cpu ↓", u);
            r.add("c", Kind::Mio, "cpu ↓", m);
        }
        // The floor missed a round: no paired ratio for it.
        r.add("c", Kind::Uring, "cpu ↓", 5.0);
        let fig = &r.cases[0].figures[0];
        let p = Report::paired(fig, Kind::TetherUring).unwrap();
        assert!((p - 0.8).abs() < 1e-9, "{p}");
        assert_eq!(Report::paired(fig, Kind::Uring), None);
        let table = r.table();
        assert!(table.contains("tether-uring/mio"), "{table}");
        assert!(table.contains("0.80"), "{table}");
        let json = r.json(false);
        assert!(
            json.contains("\"tether_uring_over_mio_paired\":0.800000"),
            "{json}"
        );
        assert!(!json.contains("uring_over_mio_paired\":null"), "{json}");
    }
}

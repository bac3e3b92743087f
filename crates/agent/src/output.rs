//! The conversation file: every turn plus a summary, as YAML, JSONL or CSV, rewritten
//! atomically after every turn: a temporary file in the same directory, fsynced, renamed over
//! the old one, then the directory fsynced so the rename itself survives a power cut.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::csv_cell::{escape, unescape};

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One YAML document: `summary` then `turns`.
    Yaml,
    /// One JSON object per line: `{"type":"turn",...}` per turn, then `{"type":"summary",...}`.
    Jsonl,
    /// One row per turn (header first); the summary goes to `<file>.summary.yaml`.
    Csv,
}

impl Format {
    pub fn parse(s: &str) -> Result<Format, String> {
        match s.to_ascii_lowercase().as_str() {
            "yaml" | "yml" => Ok(Format::Yaml),
            "jsonl" | "ndjson" | "json" => Ok(Format::Jsonl),
            "csv" => Ok(Format::Csv),
            other => Err(format!("unknown format {other:?} (yaml, csv or jsonl)")),
        }
    }

    /// The format a file name implies, if any.
    pub fn from_path(path: &Path) -> Option<Format> {
        path.extension().and_then(|e| e.to_str()).and_then(|e| Format::parse(e).ok())
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Yaml => "yaml",
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
        }
    }
}

/// One question and its answer, measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    /// 1-based turn number.
    pub index: u32,
    pub question: String,
    pub answer: String,
    /// The template that produced the question; `seed` for the first turn.
    pub template: String,
    /// When the question was sent (RFC 3339, UTC).
    pub started_at: DateTime<Utc>,
    /// Time from sending the question to the end of the answer.
    pub latency_ms: f64,
    /// Time to the first token of the answer.
    pub ttft_ms: Option<f64>,
    pub tokens_in: Option<u64>,
    pub tokens_out: Option<u64>,
    pub tokens_per_sec: Option<f64>,
    /// How long the follow-up side took to write this question (none for the seed).
    pub follow_up_latency_ms: Option<f64>,
    /// Per-hop durations (ms) from `Server-Timing`; empty when the server sends none.
    #[serde(default)]
    pub server_timing: BTreeMap<String, f64>,
}

/// Why a conversation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    TurnLimit,
    TimeLimit,
    EmptyAnswer,
    RefusedAnswer,
    EmptyFollowUp,
    Repetition,
    Error,
    /// SIGINT/SIGTERM: the turn in flight was abandoned, the finished ones are in the file.
    Interrupted,
}

/// One side's endpoint and model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    pub server: String,
    pub model: String,
}

/// Latency statistics over the turns, in ms.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyStats {
    pub mean: Option<f64>,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
}

impl LatencyStats {
    pub fn of(values: &[f64]) -> LatencyStats {
        if values.is_empty() {
            return LatencyStats::default();
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let pct = |p: f64| v[((p * (v.len() - 1) as f64).round() as usize).min(v.len() - 1)];
        LatencyStats {
            mean: Some(v.iter().sum::<f64>() / v.len() as f64),
            p50: Some(pct(0.5)),
            p95: Some(pct(0.95)),
        }
    }
}

/// The settings a conversation ran with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    pub template: String,
    pub template_text: String,
    pub turn_limit: u32,
    pub time_limit: String,
    pub repetition_threshold: f64,
    pub context_tokens: usize,
    pub answer_max_tokens: u32,
    pub follow_up_max_tokens: u32,
    pub temperature: f64,
}

/// The summary block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub seed: String,
    pub turns: u32,
    /// None while the conversation is still running (or was killed).
    pub stop_reason: Option<StopReason>,
    /// Detail of the stop: the error message, the similar turn, ...
    pub stop_detail: Option<String>,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Sum of the runs' wall-clock time (a resumed conversation adds its runs).
    pub total_time_ms: f64,
    pub latency_ms: LatencyStats,
    pub ttft_ms: LatencyStats,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub mean_tokens_per_sec: Option<f64>,
    pub answering: Endpoint,
    pub follow_up: Endpoint,
    pub config: RunConfig,
}

impl Summary {
    /// Recomputes the statistics from the turns.
    pub fn update_stats(&mut self, turns: &[Turn]) {
        self.turns = turns.len() as u32;
        let lat: Vec<f64> = turns.iter().map(|t| t.latency_ms).collect();
        let ttft: Vec<f64> = turns.iter().filter_map(|t| t.ttft_ms).collect();
        self.latency_ms = LatencyStats::of(&lat);
        self.ttft_ms = LatencyStats::of(&ttft);
        self.tokens_in = turns.iter().filter_map(|t| t.tokens_in).sum();
        self.tokens_out = turns.iter().filter_map(|t| t.tokens_out).sum();
        let tps: Vec<f64> = turns.iter().filter_map(|t| t.tokens_per_sec).collect();
        self.mean_tokens_per_sec =
            (!tps.is_empty()).then(|| tps.iter().sum::<f64>() / tps.len() as f64);
        self.updated_at = Utc::now();
    }
}

/// A whole conversation file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub summary: Summary,
    pub turns: Vec<Turn>,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
#[allow(clippy::large_enum_variant)] // one per line, never stored in bulk
enum JsonLine {
    Turn(Turn),
    Summary(Summary),
}

/// A CSV row: a turn with `server_timing` flattened to `name=ms;name=ms`, its texts kept from
/// running as spreadsheet formulas (`csv_cell`).
#[derive(Serialize, Deserialize)]
struct CsvRow {
    index: u32,
    question: String,
    answer: String,
    template: String,
    started_at: DateTime<Utc>,
    latency_ms: f64,
    ttft_ms: Option<f64>,
    tokens_in: Option<u64>,
    tokens_out: Option<u64>,
    tokens_per_sec: Option<f64>,
    follow_up_latency_ms: Option<f64>,
    server_timing: String,
}

impl From<&Turn> for CsvRow {
    fn from(t: &Turn) -> CsvRow {
        CsvRow {
            index: t.index,
            question: escape(&t.question).into_owned(),
            answer: escape(&t.answer).into_owned(),
            template: escape(&t.template).into_owned(),
            started_at: t.started_at,
            latency_ms: t.latency_ms,
            ttft_ms: t.ttft_ms,
            tokens_in: t.tokens_in,
            tokens_out: t.tokens_out,
            tokens_per_sec: t.tokens_per_sec,
            follow_up_latency_ms: t.follow_up_latency_ms,
            server_timing: escape(
                &t.server_timing
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(";"),
            )
            .into_owned(),
        }
    }
}

impl From<CsvRow> for Turn {
    fn from(r: CsvRow) -> Turn {
        let server_timing = unescape(&r.server_timing)
            .split(';')
            .filter_map(|e| e.split_once('='))
            .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
            .collect();
        Turn {
            index: r.index,
            question: unescape(&r.question).to_owned(),
            answer: unescape(&r.answer).to_owned(),
            template: unescape(&r.template).to_owned(),
            started_at: r.started_at,
            latency_ms: r.latency_ms,
            ttft_ms: r.ttft_ms,
            tokens_in: r.tokens_in,
            tokens_out: r.tokens_out,
            tokens_per_sec: r.tokens_per_sec,
            follow_up_latency_ms: r.follow_up_latency_ms,
            server_timing,
        }
    }
}

/// Where the CSV format keeps the summary.
pub fn csv_summary_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".summary.yaml");
    PathBuf::from(s)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all().with_context(|| format!("syncing {}", path.display()))?;
    tmp.persist(path).with_context(|| format!("writing {}", path.display()))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))?;
    Ok(())
}

impl Record {
    /// Serialises the record in `format`.
    pub fn render(&self, format: Format) -> anyhow::Result<Vec<u8>> {
        Ok(match format {
            Format::Yaml => serde_yaml::to_string(self)?.into_bytes(),
            Format::Jsonl => {
                let mut out = Vec::new();
                for t in &self.turns {
                    serde_json::to_writer(&mut out, &JsonLine::Turn(t.clone()))?;
                    out.push(b'\n');
                }
                serde_json::to_writer(&mut out, &JsonLine::Summary(self.summary.clone()))?;
                out.push(b'\n');
                out
            }
            Format::Csv => {
                let mut w = csv::Writer::from_writer(Vec::new());
                if self.turns.is_empty() {
                    w.write_record([
                        "index",
                        "question",
                        "answer",
                        "template",
                        "started_at",
                        "latency_ms",
                        "ttft_ms",
                        "tokens_in",
                        "tokens_out",
                        "tokens_per_sec",
                        "follow_up_latency_ms",
                        "server_timing",
                    ])?;
                }
                for t in &self.turns {
                    w.serialize(CsvRow::from(t))?;
                }
                w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?
            }
        })
    }

    /// Writes the record to `path` atomically (and, for CSV, the summary next to it).
    pub fn write(&self, path: &Path, format: Format) -> anyhow::Result<()> {
        if format == Format::Csv {
            write_atomically(
                &csv_summary_path(path),
                serde_yaml::to_string(&self.summary)?.as_bytes(),
            )?;
        }
        write_atomically(path, &self.render(format)?)
    }

    /// Reads a conversation file written by [`Record::write`].
    pub fn read(path: &Path, format: Format) -> anyhow::Result<Record> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let record = match format {
            Format::Yaml => serde_yaml::from_str(&text)
                .with_context(|| format!("parsing {}", path.display()))?,
            Format::Jsonl => {
                let mut turns = Vec::new();
                let mut summary = None;
                for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                    match serde_json::from_str(line)
                        .with_context(|| format!("{}:{}", path.display(), n + 1))?
                    {
                        JsonLine::Turn(t) => turns.push(t),
                        JsonLine::Summary(s) => summary = Some(s),
                    }
                }
                Record {
                    summary: summary
                        .with_context(|| format!("{} has no summary line", path.display()))?,
                    turns,
                }
            }
            Format::Csv => {
                let sp = csv_summary_path(path);
                let summary = serde_yaml::from_str(
                    &std::fs::read_to_string(&sp)
                        .with_context(|| format!("reading {}", sp.display()))?,
                )
                .with_context(|| format!("parsing {}", sp.display()))?;
                let mut turns = Vec::new();
                for row in csv::Reader::from_reader(text.as_bytes()).deserialize::<CsvRow>() {
                    turns.push(row.with_context(|| format!("parsing {}", path.display()))?.into());
                }
                Record { summary, turns }
            }
        };
        Ok(record)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn sample() -> Record {
        let t = |i: u32| Turn {
            index: i,
            question: format!("question {i}, with \"quotes\",\nand a newline"),
            answer: format!("answer {i}: a, b"),
            template: if i == 1 { "seed".into() } else { "respond".into() },
            started_at: Utc::now(),
            latency_ms: 100.0 * i as f64,
            ttft_ms: Some(10.0),
            tokens_in: Some(20),
            tokens_out: Some(30),
            tokens_per_sec: Some(90.5),
            follow_up_latency_ms: (i > 1).then_some(50.0),
            server_timing: [("llm-server".to_string(), 12.5), ("gateway".to_string(), 3.0)]
                .into_iter()
                .collect(),
        };
        let turns = vec![t(1), t(2), t(3)];
        let mut summary = Summary {
            seed: "question 1".into(),
            turns: 0,
            stop_reason: Some(StopReason::TurnLimit),
            stop_detail: None,
            started_at: Utc::now(),
            updated_at: Utc::now(),
            total_time_ms: 1000.0,
            latency_ms: LatencyStats::default(),
            ttft_ms: LatencyStats::default(),
            tokens_in: 0,
            tokens_out: 0,
            mean_tokens_per_sec: None,
            answering: Endpoint { server: "http://a".into(), model: "m".into() },
            follow_up: Endpoint { server: "http://b".into(), model: "n".into() },
            config: RunConfig {
                template: "respond".into(),
                template_text: "{answer}?".into(),
                turn_limit: 3,
                time_limit: "1m".into(),
                repetition_threshold: 0.8,
                context_tokens: 1000,
                answer_max_tokens: 10,
                follow_up_max_tokens: 10,
                temperature: 0.5,
            },
        };
        summary.update_stats(&turns);
        Record { summary, turns }
    }

    #[test]
    fn stats() {
        let s = LatencyStats::of(&[1.0, 2.0, 3.0, 4.0, 100.0]);
        assert_eq!((s.mean, s.p50, s.p95), (Some(22.0), Some(3.0), Some(100.0)));
        assert_eq!(LatencyStats::of(&[]), LatencyStats::default());
        let r = sample();
        assert_eq!((r.summary.turns, r.summary.tokens_out), (3, 90));
    }

    #[test]
    fn every_format_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let r = sample();
        for f in [Format::Yaml, Format::Jsonl, Format::Csv] {
            let path = dir.path().join(format!("c.{}", f.extension()));
            r.write(&path, f).unwrap();
            let back = Record::read(&path, f).unwrap();
            assert_eq!(back, r, "{f:?}");
            // No temporary files are left behind.
            let names: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            assert!(names.iter().all(|n| n.starts_with("c.")), "{names:?}");
        }
    }

    #[test]
    fn csv_has_one_row_per_turn_and_jsonl_ends_with_the_summary() {
        let r = sample();
        let csv = r.render(Format::Csv).unwrap();
        let rows: Vec<csv::StringRecord> =
            csv::Reader::from_reader(&csv[..]).records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 3);
        assert_eq!(&rows[2][0], "3");
        assert_eq!(&rows[0][11], "gateway=3;llm-server=12.5");
        let jsonl = String::from_utf8(r.render(Format::Jsonl).unwrap()).unwrap();
        let lines: Vec<serde_json::Value> =
            jsonl.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[3]["type"], "summary");
        assert_eq!(lines[3]["stop_reason"], "turn_limit");
        assert_eq!(lines[0]["server_timing"]["llm-server"], 12.5);
    }

    #[test]
    fn csv_texts_never_become_formulas_and_read_back_unchanged() {
        let mut r = sample();
        r.turns[0].question = "=cmd|' /C calc'!A0".into();
        r.turns[0].answer = "@SUM(1+1)".into();
        r.turns[1].answer = "-1+2".into();
        let csv = r.render(Format::Csv).unwrap();
        let rows: Vec<csv::StringRecord> =
            csv::Reader::from_reader(&csv[..]).records().map(Result::unwrap).collect();
        assert_eq!(
            (&rows[0][1], &rows[0][2], &rows[1][2]),
            ("'=cmd|' /C calc'!A0", "'@SUM(1+1)", "'-1+2")
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.csv");
        r.write(&path, Format::Csv).unwrap();
        assert_eq!(Record::read(&path, Format::Csv).unwrap(), r);
    }

    #[test]
    fn formats_from_names() {
        assert_eq!(Format::from_path(Path::new("x/c.yml")), Some(Format::Yaml));
        assert_eq!(Format::from_path(Path::new("c.jsonl")), Some(Format::Jsonl));
        assert_eq!(Format::from_path(Path::new("c")), None);
        assert!(Format::parse("xml").is_err());
    }
}

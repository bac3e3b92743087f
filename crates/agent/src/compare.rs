//! `strata converse compare`: every template over every seed, and a report comparing them
//! (Markdown, CSV, SVG charts).

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Serialize;

use crate::csv_cell::escape;
use crate::output::{Record, StopReason};
use crate::text::jaccard;

/// Measures of one conversation.
#[derive(Debug, Clone, Serialize)]
pub struct ConversationMetrics {
    pub template: String,
    pub seed: String,
    pub file: String,
    pub turns: u32,
    pub stop_reason: String,
    pub mean_answer_words: f64,
    /// Distinct unigrams / unigrams over all answers.
    pub distinct_1: f64,
    /// Distinct bigrams / bigrams over all answers.
    pub distinct_2: f64,
    /// Mean, over answers after the first, of the highest word-set similarity to an earlier answer.
    pub repetition: f64,
    pub mean_latency_ms: f64,
}

impl ConversationMetrics {
    /// The row as written to `conversations.csv`: texts kept from running as formulas.
    fn csv_safe(&self) -> ConversationMetrics {
        ConversationMetrics {
            template: escape(&self.template).into_owned(),
            seed: escape(&self.seed).into_owned(),
            file: escape(&self.file).into_owned(),
            stop_reason: escape(&self.stop_reason).into_owned(),
            ..self.clone()
        }
    }
}

fn tokens(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// distinct-n over several texts: distinct n-grams / all n-grams (0 when there are none).
pub fn distinct_n(texts: &[&str], n: usize) -> f64 {
    let mut all = 0usize;
    let mut seen = HashSet::new();
    for t in texts {
        let w = tokens(t);
        for g in w.windows(n) {
            all += 1;
            seen.insert(g.join(" "));
        }
    }
    if all == 0 {
        0.0
    } else {
        seen.len() as f64 / all as f64
    }
}

fn reason_name(r: Option<StopReason>) -> String {
    r.and_then(|r| serde_json::to_value(r).ok())
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "unfinished".into())
}

fn mean(v: impl IntoIterator<Item = f64>) -> f64 {
    let v: Vec<f64> = v.into_iter().collect();
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// The measures of one conversation file.
pub fn measure(template: &str, file: &Path, record: &Record) -> ConversationMetrics {
    let answers: Vec<&str> = record.turns.iter().map(|t| t.answer.as_str()).collect();
    let repetition = mean(
        (1..answers.len())
            .map(|i| answers[..i].iter().map(|e| jaccard(answers[i], e)).fold(0.0, f64::max)),
    );
    ConversationMetrics {
        template: template.to_string(),
        seed: record.summary.seed.clone(),
        file: file.display().to_string(),
        turns: record.turns.len() as u32,
        stop_reason: reason_name(record.summary.stop_reason),
        mean_answer_words: mean(answers.iter().map(|a| tokens(a).len() as f64)),
        distinct_1: distinct_n(&answers, 1),
        distinct_2: distinct_n(&answers, 2),
        repetition,
        mean_latency_ms: mean(record.turns.iter().map(|t| t.latency_ms)),
    }
}

/// Per-template means.
#[derive(Debug, Clone, Serialize)]
pub struct TemplateMetrics {
    pub template: String,
    pub conversations: usize,
    pub mean_turns: f64,
    pub mean_answer_words: f64,
    pub distinct_1: f64,
    pub distinct_2: f64,
    pub repetition: f64,
    pub mean_latency_ms: f64,
    pub stop_reasons: BTreeMap<String, usize>,
}

pub fn aggregate(templates: &[String], rows: &[ConversationMetrics]) -> Vec<TemplateMetrics> {
    templates
        .iter()
        .map(|t| {
            let r: Vec<&ConversationMetrics> = rows.iter().filter(|m| &m.template == t).collect();
            let mut stop_reasons = BTreeMap::new();
            for m in &r {
                *stop_reasons.entry(m.stop_reason.clone()).or_insert(0) += 1;
            }
            TemplateMetrics {
                template: t.clone(),
                conversations: r.len(),
                mean_turns: mean(r.iter().map(|m| m.turns as f64)),
                mean_answer_words: mean(r.iter().map(|m| m.mean_answer_words)),
                distinct_1: mean(r.iter().map(|m| m.distinct_1)),
                distinct_2: mean(r.iter().map(|m| m.distinct_2)),
                repetition: mean(r.iter().map(|m| m.repetition)),
                mean_latency_ms: mean(r.iter().map(|m| m.mean_latency_ms)),
                stop_reasons,
            }
        })
        .collect()
}

fn bar_chart(path: &Path, title: &str, labels: &[String], values: &[f64]) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (640, 360)).into_drawing_area();
    root.fill(&WHITE)?;
    let max = values.iter().cloned().fold(0.0, f64::max).max(1e-9) * 1.15;
    let n = labels.len() as u32;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d((0u32..n).into_segmented(), 0f64..max)?;
    let labels_owned = labels.to_vec();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_label_formatter(&move |v| match v {
            SegmentValue::CenterOf(i) => labels_owned.get(*i as usize).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .draw()?;
    chart.draw_series(values.iter().enumerate().map(|(i, v)| {
        let i = i as u32;
        let mut bar = Rectangle::new(
            [(SegmentValue::Exact(i), 0.0), (SegmentValue::Exact(i + 1), *v)],
            BLUE.mix(0.6).filled(),
        );
        bar.set_margin(0, 0, 12, 12);
        bar
    }))?;
    root.present()?;
    Ok(())
}

/// Writes `report.md`, `conversations.csv`, `templates.csv` and one SVG chart per measure into `dir`.
/// Returns the Markdown.
pub fn write_report(
    dir: &Path,
    templates: &[String],
    template_texts: &BTreeMap<String, String>,
    rows: &[ConversationMetrics],
    header: &str,
) -> anyhow::Result<String> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let agg = aggregate(templates, rows);
    let mut w = csv::Writer::from_path(dir.join("conversations.csv"))?;
    for r in rows {
        w.serialize(r.csv_safe())?;
    }
    w.flush()?;
    let mut w = csv::Writer::from_path(dir.join("templates.csv"))?;
    w.write_record([
        "template",
        "conversations",
        "mean_turns",
        "mean_answer_words",
        "distinct_1",
        "distinct_2",
        "repetition",
        "mean_latency_ms",
        "stop_reasons",
    ])?;
    for a in &agg {
        let reasons =
            a.stop_reasons.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(";");
        w.write_record([
            escape(&a.template).into_owned(),
            a.conversations.to_string(),
            format!("{:.2}", a.mean_turns),
            format!("{:.1}", a.mean_answer_words),
            format!("{:.3}", a.distinct_1),
            format!("{:.3}", a.distinct_2),
            format!("{:.3}", a.repetition),
            format!("{:.0}", a.mean_latency_ms),
            escape(&reasons).into_owned(),
        ])?;
    }
    w.flush()?;
    let labels: Vec<String> = agg.iter().map(|a| a.template.clone()).collect();
    type Chart = (&'static str, &'static str, fn(&TemplateMetrics) -> f64);
    let charts: [Chart; 5] = [
        ("turns.svg", "Mean conversation length (turns)", |a| a.mean_turns),
        ("answer-words.svg", "Mean answer length (words)", |a| a.mean_answer_words),
        ("distinct-2.svg", "Lexical diversity (distinct-2)", |a| a.distinct_2),
        ("repetition.svg", "Repetition (max similarity to an earlier answer)", |a| a.repetition),
        ("latency.svg", "Mean answer latency (ms)", |a| a.mean_latency_ms),
    ];
    for (file, title, f) in charts {
        let values: Vec<f64> = agg.iter().map(f).collect();
        bar_chart(&dir.join(file), title, &labels, &values)
            .map_err(|e| anyhow::anyhow!("drawing {file}: {e}"))?;
    }
    let mut md = String::new();
    md.push_str(header);
    md.push_str("\n## Templates\n\n| name | text |\n| --- | --- |\n");
    for t in templates {
        let _ = writeln!(
            md,
            "| `{t}` | `{}` |",
            template_texts.get(t).map(String::as_str).unwrap_or("")
        );
    }
    md.push_str("\n## Per template (means over the seeds)\n\n| template | conversations | turns | answer words | distinct-1 | distinct-2 | repetition | latency ms | stop reasons |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for a in &agg {
        let reasons =
            a.stop_reasons.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ");
        let _ = writeln!(
            md,
            "| `{}` | {} | {:.2} | {:.1} | {:.3} | {:.3} | {:.3} | {:.0} | {} |",
            a.template,
            a.conversations,
            a.mean_turns,
            a.mean_answer_words,
            a.distinct_1,
            a.distinct_2,
            a.repetition,
            a.mean_latency_ms,
            reasons
        );
    }
    md.push_str("\n![turns](turns.svg) ![answer words](answer-words.svg)\n![distinct-2](distinct-2.svg) ![repetition](repetition.svg)\n![latency](latency.svg)\n");
    md.push_str("\n## Per conversation\n\n| template | seed | turns | stop | answer words | distinct-2 | repetition | latency ms |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for r in rows {
        let _ = writeln!(
            md,
            "| `{}` | {} | {} | {} | {:.1} | {:.3} | {:.3} | {:.0} |",
            r.template,
            r.seed.replace('|', "\\|"),
            r.turns,
            r.stop_reason,
            r.mean_answer_words,
            r.distinct_2,
            r.repetition,
            r.mean_latency_ms
        );
    }
    std::fs::write(dir.join("report.md"), &md)?;
    Ok(md)
}

/// Where compare writes the conversation of `template` over seed number `n` (from 1).
pub fn conversation_path(dir: &Path, template: &str, n: usize) -> PathBuf {
    dir.join("conversations").join(format!("{template}-{n:03}.jsonl"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_n_counts() {
        assert_eq!(distinct_n(&["a b a b"], 1), 0.5);
        assert!((distinct_n(&["a b a b"], 2) - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(distinct_n(&["a"], 2), 0.0);
        assert_eq!(distinct_n(&["x y", "x z"], 1), 0.75);
    }

    #[test]
    fn report_files_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let rec = crate::output::tests::sample();
        let rows = vec![
            measure("respond", Path::new("a.jsonl"), &rec),
            measure("comment", Path::new("b.jsonl"), &rec),
        ];
        assert_eq!(rows[0].turns, 3);
        assert_eq!(rows[0].stop_reason, "turn_limit");
        let templates = vec!["respond".to_string(), "comment".to_string()];
        let md =
            write_report(dir.path(), &templates, &BTreeMap::new(), &rows, "# Report\n").unwrap();
        assert!(md.contains("| `respond` | 1 | 3.00 |"), "{md}");
        for f in [
            "report.md",
            "conversations.csv",
            "templates.csv",
            "turns.svg",
            "distinct-2.svg",
            "latency.svg",
        ] {
            assert!(dir.path().join(f).is_file(), "{f}");
        }
        let svg = std::fs::read_to_string(dir.path().join("turns.svg")).unwrap();
        assert!(svg.contains("<svg") && svg.contains("respond"));
        let rows: Vec<csv::StringRecord> =
            csv::Reader::from_path(dir.path().join("conversations.csv"))
                .unwrap()
                .records()
                .map(Result::unwrap)
                .collect();
        assert_eq!(rows.len(), 2);
    }

    #[test]
    fn report_csv_texts_never_become_formulas() {
        let dir = tempfile::tempdir().unwrap();
        let mut rec = crate::output::tests::sample();
        rec.summary.seed = "=1+1".into();
        let rows = vec![measure("+t", Path::new("a.jsonl"), &rec)];
        write_report(dir.path(), &["+t".to_string()], &BTreeMap::new(), &rows, "# Report\n")
            .unwrap();
        let conversations: Vec<csv::StringRecord> =
            csv::Reader::from_path(dir.path().join("conversations.csv"))
                .unwrap()
                .records()
                .map(Result::unwrap)
                .collect();
        assert_eq!((&conversations[0][0], &conversations[0][1]), ("'+t", "'=1+1"));
        let templates: Vec<csv::StringRecord> =
            csv::Reader::from_path(dir.path().join("templates.csv"))
                .unwrap()
                .records()
                .map(Result::unwrap)
                .collect();
        assert_eq!(&templates[0][0], "'+t");
    }
}

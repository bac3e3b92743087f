//! Pure text rules: templates, repetition, refusals, history trimming.

use std::collections::HashSet;

use crate::client::Message;

/// Fills a follow-up template: `{answer}` becomes the answer (trimmed).
pub fn render_template(template: &str, answer: &str) -> String {
    template.replace("{answer}", answer.trim())
}

fn words(s: &str) -> HashSet<String> {
    s.split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Jaccard similarity of the two texts' word sets (lower-cased), in 0..=1.
pub fn jaccard(a: &str, b: &str) -> f64 {
    let (a, b) = (words(a), words(b));
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let inter = a.intersection(&b).count() as f64;
    let union = a.union(&b).count() as f64;
    inter / union
}

/// The highest similarity of `answer` to any earlier answer, with that answer's turn index.
pub fn most_similar<'a>(
    answer: &str,
    earlier: impl IntoIterator<Item = (u32, &'a str)>,
) -> Option<(u32, f64)> {
    earlier.into_iter().map(|(i, e)| (i, jaccard(answer, e))).max_by(|a, b| a.1.total_cmp(&b.1))
}

/// Whether the answer begins with one of the refusal prefixes (case-insensitive).
pub fn is_refusal(answer: &str, prefixes: &[String]) -> bool {
    let a = answer.trim_start().to_lowercase().replace('’', "'");
    prefixes.iter().any(|p| !p.is_empty() && a.starts_with(&p.to_lowercase()))
}

/// Estimated tokens of a text.
pub fn estimate_tokens(text: &str, chars_per_token: f64) -> usize {
    (text.chars().count() as f64 / chars_per_token.max(0.1)).ceil() as usize
}

/// The history to send with `next` (appended last): the oldest messages are dropped, a
/// user/assistant pair at a time, until the estimate fits `budget` tokens. `next` is always kept.
pub fn fit_history(
    history: &[Message],
    next: Message,
    budget: usize,
    chars_per_token: f64,
) -> Vec<Message> {
    let cost = |m: &Message| estimate_tokens(&m.content, chars_per_token) + 4;
    let mut start = 0;
    let mut total: usize = history.iter().map(cost).sum::<usize>() + cost(&next);
    while total > budget && start < history.len() {
        let drop = if start + 1 < history.len() { 2 } else { 1 };
        total -= history[start..start + drop].iter().map(cost).sum::<usize>();
        start += drop;
    }
    let mut out = history[start..].to_vec();
    out.push(next);
    out
}

/// Cleans a follow-up model's output into one question: trims whitespace and surrounding quotes.
pub fn clean_question(text: &str) -> String {
    let t = text.trim();
    let t = t.strip_prefix("Question:").unwrap_or(t).trim();
    t.trim_matches('"').trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_the_answer() {
        assert_eq!(
            render_template("Do you have any comments on {answer}?", " the sky is blue \n"),
            "Do you have any comments on the sky is blue?"
        );
        assert_eq!(render_template("no placeholder", "x"), "no placeholder");
    }

    #[test]
    fn repetition_by_word_sets() {
        assert_eq!(jaccard("The sky is blue.", "the SKY is blue"), 1.0);
        assert_eq!(jaccard("a b", "c d"), 0.0);
        assert!((jaccard("a b c", "a b d") - 0.5).abs() < 1e-9);
        let earlier = [(1, "cats are small animals"), (2, "the sky is blue because of scattering")];
        let (turn, sim) =
            most_similar("The sky is blue because of Rayleigh scattering", earlier).unwrap();
        assert_eq!(turn, 2);
        assert!(sim > 0.8, "{sim}");
        assert!(most_similar("x", []).is_none());
    }

    #[test]
    fn refusals() {
        let p = crate::ConverseSettings::default().refusal_prefixes;
        assert!(is_refusal("  I'm sorry, but I can't help with that.", &p));
        assert!(is_refusal("I’m sorry, but I can’t do this", &p));
        assert!(!is_refusal("Sure: the sky is blue.", &p));
    }

    #[test]
    fn history_is_trimmed_oldest_pair_first_and_keeps_the_new_message() {
        let m = |role: &str, n: usize| Message { role: role.into(), content: "x".repeat(n) };
        let history = vec![m("user", 40), m("assistant", 40), m("user", 40), m("assistant", 40)];
        // Each message costs 10 + 4 tokens at 4 chars per token.
        let all = fit_history(&history, m("user", 40), 100, 4.0);
        assert_eq!(all.len(), 5);
        let trimmed = fit_history(&history, m("user", 40), 50, 4.0);
        assert_eq!(trimmed.len(), 3);
        assert_eq!(trimmed[0].role, "user");
        let only = fit_history(&history, m("user", 4000), 50, 4.0);
        assert_eq!(only.len(), 1);
    }

    #[test]
    fn questions_are_cleaned() {
        assert_eq!(clean_question("  \"Why is it blue?\"\n"), "Why is it blue?");
        assert_eq!(clean_question("Question: Why?"), "Why?");
    }
}

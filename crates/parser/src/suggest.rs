//! "Did you mean ...?" suggestions for misspelt keywords, flags and options.
//!
//! The rules follow BuildKit's `util/suggest` package: a candidate is
//! suggested when its edit distance to the word is below 3, the closest
//! candidate wins, and a word that is already one of the candidates gets no
//! suggestion (the error is about something else then).

/// The Levenshtein edit distance between `a` and `b`, counted in Unicode
/// scalar values (insertions, deletions and substitutions all cost 1).
pub fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a.is_empty() {
        return b.len();
    }
    if b.is_empty() {
        return a.len();
    }
    // One row of the classic dynamic-programming table at a time.
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = prev[j] + usize::from(ca != cb);
            cur[j + 1] = substitution.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// Suggestions are only made for candidates closer than this.
const MAX_DISTANCE: usize = 3;

/// The candidate closest to `word`, if one is close enough to be a likely
/// typo (edit distance below 3, compared case-insensitively so that `form`
/// suggests `FROM`). Returns `None` when `word` is exactly one of the
/// candidates. On ties the earlier candidate wins.
///
/// ```
/// use rbuild_parser::suggest::did_you_mean;
/// assert_eq!(did_you_mean("RUNN", &["RUN", "CMD"]), Some("RUN"));
/// assert_eq!(did_you_mean("xyz", &["RUN", "CMD"]), None);
/// ```
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    if candidates.contains(&word) {
        return None;
    }
    let lower = word.to_lowercase();
    let mut best: Option<(usize, &'a str)> = None;
    for &candidate in candidates {
        let distance = levenshtein(&lower, &candidate.to_lowercase());
        if distance < MAX_DISTANCE && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(levenshtein("", ""), 0);
        assert_eq!(levenshtein("abc", ""), 3);
        assert_eq!(levenshtein("", "ab"), 2);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("flaw", "lawn"), 2);
        assert_eq!(levenshtein("run", "runn"), 1);
        assert_eq!(levenshtein("copy", "coppy"), 1);
        assert_eq!(levenshtein("é", "e"), 1);
    }

    #[test]
    fn suggests_closest_candidate() {
        let instructions = ["FROM", "RUN", "COPY", "CMD", "ADD"];
        assert_eq!(did_you_mean("RUNN", &instructions), Some("RUN"));
        assert_eq!(did_you_mean("COPPY", &instructions), Some("COPY"));
        assert_eq!(did_you_mean("form", &instructions), Some("FROM"));
        assert_eq!(did_you_mean("WHATEVER", &instructions), None);
    }

    #[test]
    fn exact_match_gets_no_suggestion() {
        assert_eq!(did_you_mean("link", &["link", "from"]), None);
        // Differing only by case is not an exact match: flags are case-sensitive.
        assert_eq!(did_you_mean("LINK", &["link", "from"]), Some("link"));
    }

    #[test]
    fn ties_prefer_the_first_candidate() {
        assert_eq!(did_you_mean("ab", &["abc", "abd"]), Some("abc"));
        assert_eq!(did_you_mean("ab", &["abd", "abc"]), Some("abd"));
        assert_eq!(did_you_mean("x", &[]), None);
    }
}

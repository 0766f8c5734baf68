//! Byte ranges of the elements of a JSON array of strings, so that each exec-form
//! argument gets its own source span. `serde_json` validates the text first;
//! this scanner only has to find where each string token starts and ends.

/// (start, end) byte offsets of each top-level string element of `text`,
/// which must be a valid JSON array of strings.
pub(crate) fn element_spans(text: &str) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut spans = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'"' {
            let start = i;
            i += 1;
            while i < bytes.len() && bytes[i] != b'"' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            i = (i + 1).min(bytes.len());
            spans.push((start, i));
        } else {
            i += 1;
        }
    }
    spans
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_each_string() {
        let t = r#"[ "a", "b\"c" ,"" ]"#;
        let s = super::element_spans(t);
        let parts: Vec<&str> = s.iter().map(|&(a, b)| &t[a..b]).collect();
        assert_eq!(parts, [r#""a""#, r#""b\"c""#, r#""""#]);
    }
}

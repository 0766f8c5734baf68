//! Splitting a single-line CSV value (`type=cache,target=/x`) into fields,
//! the way BuildKit does for `--mount` and `--device` (Go's `encoding/csv`
//! rules as implemented by `tonistiigi/go-csvvalue`): fields are separated by
//! commas; a field starting with `"` is quoted, may contain commas, and `""`
//! stands for one quote; a quote anywhere else is an error.

/// One field and where it was in the input (character offsets, end exclusive;
/// a quoted field's range includes its quotes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CsvField {
    pub text: String,
    pub start: usize,
    pub end: usize,
}

/// A CSV syntax error: Go's message and the character offset it refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CsvError {
    pub message: String,
    pub offset: usize,
}

const BARE_QUOTE: &str = "bare \" in non-quoted-field";
const BAD_QUOTE: &str = "extraneous or missing \" in quoted-field";

/// Splits `input` into fields.
pub(crate) fn split(input: &str) -> Result<Vec<CsvField>, CsvError> {
    let chars = |byte: usize| input[..byte].chars().count();
    // Go reports columns in bytes, 1-based.
    let error = |byte: usize, what: &str| CsvError {
        message: format!("parse error on line 1, column {}: {what}", byte + 1),
        offset: chars(byte),
    };

    let mut line = input;
    if let Some(stripped) = line.strip_suffix('\n') {
        line = stripped.strip_suffix('\r').unwrap_or(stripped);
    }
    if line.is_empty() {
        return Err(CsvError {
            message: "EOF".into(),
            offset: 0,
        });
    }

    let mut fields = Vec::new();
    let mut pos = 0; // byte offset of `rest` in `line`
    'fields: loop {
        let rest = &line[pos..];
        if !rest.starts_with('"') {
            let field = match rest.find(',') {
                Some(i) => &rest[..i],
                None => rest,
            };
            if let Some(j) = field.find('"') {
                return Err(error(pos + j, BARE_QUOTE));
            }
            fields.push(CsvField {
                text: field.to_owned(),
                start: chars(pos),
                end: chars(pos + field.len()),
            });
            if field.len() == rest.len() {
                break;
            }
            pos += field.len() + 1;
            continue;
        }

        // Quoted field.
        let start = pos;
        pos += 1;
        let mut text = String::new();
        loop {
            let rest = &line[pos..];
            let Some(i) = rest.find('"') else {
                return Err(error(pos, BAD_QUOTE));
            };
            text.push_str(&rest[..i]);
            pos += i + 1;
            let after = &line[pos..];
            if after.starts_with('"') {
                // `""`: an escaped quote.
                text.push('"');
                pos += 1;
            } else if after.starts_with(',') || after.is_empty() {
                fields.push(CsvField {
                    text,
                    start: chars(start),
                    end: chars(pos),
                });
                if after.is_empty() {
                    break 'fields;
                }
                pos += 1;
                continue 'fields;
            } else {
                return Err(error(pos - 1, BAD_QUOTE));
            }
        }
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(input: &str) -> Vec<String> {
        split(input).unwrap().into_iter().map(|f| f.text).collect()
    }

    #[test]
    fn plain_fields() {
        assert_eq!(texts("a=1,b,c=x=y"), ["a=1", "b", "c=x=y"]);
        assert_eq!(texts("a,,b,"), ["a", "", "b", ""]);
        let f = split("type=cache,target=/x").unwrap();
        assert_eq!((f[1].start, f[1].end), (11, 20));
        assert_eq!(texts("é=1,b"), ["é=1", "b"]);
        assert_eq!(split("é=1,b").unwrap()[1].start, 4);
    }

    #[test]
    fn quoted_fields() {
        assert_eq!(texts(r#""a,b",c"#), ["a,b", "c"]);
        assert_eq!(texts(r#""say ""hi""",x"#), [r#"say "hi""#, "x"]);
        assert_eq!(texts(r#""""#), [""]);
        let f = split(r#"x,"a,b""#).unwrap();
        assert_eq!((f[1].start, f[1].end), (2, 7));
    }

    #[test]
    fn errors() {
        let e = split("").unwrap_err();
        assert_eq!(e.message, "EOF");
        let e = split(r#"a,b"c"#).unwrap_err();
        assert_eq!(
            e.message,
            "parse error on line 1, column 4: bare \" in non-quoted-field"
        );
        assert_eq!(e.offset, 3);
        let e = split(r#""abc"#).unwrap_err();
        assert_eq!(
            e.message,
            "parse error on line 1, column 2: extraneous or missing \" in quoted-field"
        );
        let e = split(r#""ab"c"#).unwrap_err();
        assert_eq!(
            e.message,
            "parse error on line 1, column 4: extraneous or missing \" in quoted-field"
        );
        assert_eq!(e.offset, 3);
    }
}

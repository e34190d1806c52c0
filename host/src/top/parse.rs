//! The Prometheus text format, as far as `bulkhead top` needs it: samples with labels.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, k: &str) -> Option<&str> {
        self.labels.get(k).map(String::as_str)
    }
}

/// Every sample of `text` (comments, `# EOF` and malformed lines skipped).
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines().filter_map(line).collect()
}

fn line(l: &str) -> Option<Sample> {
    let l = l.trim();
    if l.is_empty() || l.starts_with('#') {
        return None;
    }
    let (name, labels, rest) = match l.find('{') {
        Some(open) if l[..open].find(' ').is_none() => {
            let (labels, after) = labels(&l[open + 1..])?;
            (&l[..open], labels, after)
        }
        _ => {
            let (name, rest) = l.split_once(' ')?;
            (name, BTreeMap::new(), rest)
        }
    };
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// `k="v",k2="v2"}` → the labels and what follows the `}`.
fn labels(s: &str) -> Option<(BTreeMap<String, String>, &str)> {
    let mut out = BTreeMap::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start_matches([',', ' ']);
        if let Some(after) = rest.strip_prefix('}') {
            return Some((out, after));
        }
        let eq = rest.find('=')?;
        let key = rest[..eq].trim().to_string();
        let mut chars = rest[eq + 1..].char_indices();
        if chars.next()?.1 != '"' {
            return None;
        }
        let mut value = String::new();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                '"' => {
                    end = Some(i);
                    break;
                }
                c => value.push(c),
            }
        }
        let end = end?;
        out.insert(key, value);
        rest = &rest[eq + 1 + end + 1..];
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn samples_with_and_without_labels() {
        let s = parse(
            "# HELP x y\n# TYPE x counter\nbulkhead_requests_total{tenant=\"DL\",status=\"200\"} 12\n\
             bulkhead_ready 1\nh_bucket{tenant=\"a\\\"b\",le=\"+Inf\"} 3\n# EOF\n",
        );
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].name, "bulkhead_requests_total");
        assert_eq!(s[0].label("status"), Some("200"));
        assert_eq!(s[0].value, 12.0);
        assert_eq!((s[1].name.as_str(), s[1].value), ("bulkhead_ready", 1.0));
        assert_eq!(s[2].label("tenant"), Some("a\"b"));
        assert_eq!(s[2].label("le"), Some("+Inf"));
    }
}

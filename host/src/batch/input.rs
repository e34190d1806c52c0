//! Upload lines → rows. NDJSON: one row object per line, exactly the row shape of
//! `POST /v1/eta` (parsed by the same [`api::parse_row`]). CSV: the first line names
//! the features; a cell that parses as a finite number is numeric, an empty cell is
//! missing, anything else is a category. One record per line (no newlines inside quoted
//! cells); blank lines are skipped. Errors name the 1-based line.
//!
//! The same parser checks the upload ([`Ingest`], before the job exists) and feeds the
//! workers ([`ChunkReader`]), chunk by chunk at the same boundaries, so a job that was
//! accepted cannot fail on parsing later.

use super::job::Format;
use crate::serve::api::{self, Bounds};
use crate::serve::backend::{Batch, BatchBuilder};
use crate::serve::error::ApiError;
use axum::http::StatusCode;
use std::io::{BufRead, Write};

/// Longest line accepted.
pub const MAX_LINE_BYTES: usize = 64 << 10;
/// Distinct feature names in one job (a chunk's batch has a column per name, each as
/// long as the chunk: without this bound, rows of ever-new names grow it quadratically).
pub const MAX_DISTINCT_FEATURES: usize = 256;

/// Parses lines of one upload.
#[derive(Debug, Clone)]
pub struct LineParser {
    format: Format,
    bounds: Bounds,
    header: Option<Vec<String>>,
    names: std::collections::HashSet<String>,
}

impl LineParser {
    pub fn new(format: Format, bounds: Bounds) -> LineParser {
        LineParser {
            format,
            bounds,
            header: None,
            names: std::collections::HashSet::new(),
        }
    }

    /// Parses line `no` (1-based). `Ok(true)`: a row was added to `batch`; `Ok(false)`:
    /// not a row (blank, or the CSV header).
    pub fn line(
        &mut self,
        no: u64,
        line: &[u8],
        batch: &mut BatchBuilder,
    ) -> Result<bool, ApiError> {
        let line = trim_eol(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(false);
        }
        let place = || format!("line {no}");
        let text = std::str::from_utf8(line)
            .map_err(|_| ApiError::bad_request(format!("line {no}: not UTF-8")))?;
        let obj = match self.format {
            Format::Ndjson => match serde_json::from_str::<serde_json::Value>(text) {
                Ok(serde_json::Value::Object(o)) => {
                    for k in o.keys() {
                        if !self.names.contains(k) {
                            if self.names.len() >= MAX_DISTINCT_FEATURES {
                                return Err(ApiError::bad_request(format!(
                                    "line {no}: more than {MAX_DISTINCT_FEATURES} distinct feature names in one job"
                                )));
                            }
                            self.names.insert(k.clone());
                        }
                    }
                    o
                }
                Ok(_) => {
                    return Err(ApiError::bad_request(format!(
                        "line {no}: a row is a JSON object"
                    )));
                }
                Err(e) => {
                    return Err(ApiError::bad_request(format!("line {no}: not JSON: {e}")));
                }
            },
            Format::Csv => {
                let cells = split_csv(text)
                    .map_err(|e| ApiError::bad_request(format!("line {no}: {e}")))?;
                let Some(header) = &self.header else {
                    self.header = Some(check_header(no, cells, &self.bounds)?);
                    return Ok(false);
                };
                if cells.len() != header.len() {
                    return Err(ApiError::bad_request(format!(
                        "line {no}: {} cells, the header has {}",
                        cells.len(),
                        header.len()
                    )));
                }
                header
                    .iter()
                    .zip(cells)
                    .map(|(name, cell)| (name.clone(), csv_value(cell)))
                    .collect()
            }
        };
        api::parse_row(batch, &place, obj, &self.bounds)?;
        Ok(true)
    }
}

fn trim_eol(mut l: &[u8]) -> &[u8] {
    while let [rest @ .., b'\n' | b'\r'] = l {
        l = rest;
    }
    l
}

fn check_header(no: u64, cells: Vec<String>, b: &Bounds) -> Result<Vec<String>, ApiError> {
    if cells.len() > b.max_features {
        return Err(ApiError::bad_request(format!(
            "line {no}: the header names {} features, at most {}",
            cells.len(),
            b.max_features
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for c in &cells {
        if !seen.insert(c.as_str()) {
            return Err(ApiError::bad_request(format!(
                "line {no}: the header names `{}` twice",
                c.chars().take(64).collect::<String>()
            )));
        }
    }
    Ok(cells)
}

fn csv_value(cell: String) -> serde_json::Value {
    let t = cell.trim();
    if t.is_empty() {
        return serde_json::Value::Null;
    }
    match t.parse::<f64>() {
        Ok(f) if f.is_finite() => serde_json::Number::from_f64(f).map_or(
            serde_json::Value::String(cell.clone()),
            serde_json::Value::Number,
        ),
        _ => serde_json::Value::String(cell),
    }
}

/// One CSV record: `,`-separated, `"`-quoted cells with `""` for a quote.
fn split_csv(line: &str) -> Result<Vec<String>, String> {
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    cell.push('"');
                }
                '"' => {
                    quoted = false;
                    if !matches!(chars.peek(), None | Some(',')) {
                        return Err("text after a closing quote".into());
                    }
                }
                c => cell.push(c),
            }
            continue;
        }
        match c {
            '"' if at_start => {
                quoted = true;
                at_start = false;
            }
            ',' => {
                cells.push(std::mem::take(&mut cell));
                at_start = true;
            }
            c => {
                cell.push(c);
                at_start = false;
            }
        }
    }
    if quoted {
        return Err("an unclosed quote (a record is one line)".into());
    }
    cells.push(cell);
    Ok(cells)
}

/// Limits of one upload.
#[derive(Debug, Clone, Copy)]
pub struct UploadLimits {
    pub max_bytes: u64,
    pub max_rows: u64,
    pub chunk_rows: u64,
}

/// Checks an upload while writing it to disk, as its bytes arrive.
pub struct Ingest<W: Write> {
    out: W,
    parser: LineParser,
    limits: UploadLimits,
    pending: Vec<u8>,
    line: u64,
    rows: u64,
    bytes: u64,
    chunk: BatchBuilder,
    in_chunk: u64,
}

impl<W: Write> Ingest<W> {
    pub fn new(out: W, format: Format, bounds: Bounds, limits: UploadLimits) -> Ingest<W> {
        Ingest {
            out,
            parser: LineParser::new(format, bounds),
            limits,
            pending: Vec::new(),
            line: 0,
            rows: 0,
            bytes: 0,
            chunk: BatchBuilder::new(),
            in_chunk: 0,
        }
    }

    /// Takes the next bytes of the body.
    pub fn feed(&mut self, data: &[u8]) -> Result<(), ApiError> {
        self.bytes += data.len() as u64;
        if self.bytes > self.limits.max_bytes {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!(
                    "the upload exceeds {} bytes (at line {})",
                    self.limits.max_bytes,
                    self.line + 1
                ),
            ));
        }
        self.out.write_all(data).map_err(io_error)?;
        let mut rest = data;
        while let Some(i) = rest.iter().position(|&b| b == b'\n') {
            let (head, tail) = rest.split_at(i + 1);
            if self.pending.is_empty() {
                self.take_line(head)?;
            } else {
                self.pending.extend_from_slice(head);
                let l = std::mem::take(&mut self.pending);
                self.take_line(&l)?;
            }
            rest = tail;
        }
        if self.pending.len() + rest.len() > MAX_LINE_BYTES {
            return Err(ApiError::bad_request(format!(
                "line {}: longer than {MAX_LINE_BYTES} bytes",
                self.line + 1
            )));
        }
        self.pending.extend_from_slice(rest);
        Ok(())
    }

    fn take_line(&mut self, l: &[u8]) -> Result<(), ApiError> {
        self.line += 1;
        if l.len() > MAX_LINE_BYTES + 2 {
            return Err(ApiError::bad_request(format!(
                "line {}: longer than {MAX_LINE_BYTES} bytes",
                self.line
            )));
        }
        if self.parser.line(self.line, l, &mut self.chunk)? {
            self.rows += 1;
            if self.rows > self.limits.max_rows {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_many_rows",
                    format!(
                        "line {}: more than {} rows in one job",
                        self.line, self.limits.max_rows
                    ),
                ));
            }
            self.in_chunk += 1;
            if self.in_chunk == self.limits.chunk_rows {
                // The worker's chunk boundary: what fits one batch now fits it then.
                std::mem::take(&mut self.chunk).finish();
                self.in_chunk = 0;
            }
        }
        Ok(())
    }

    /// The end of the body: the last line, then the file made durable. Returns the
    /// writer and the number of rows.
    pub fn finish(mut self) -> Result<(W, u64), ApiError> {
        if !self.pending.is_empty() {
            let l = std::mem::take(&mut self.pending);
            self.take_line(&l)?;
        }
        if self.rows == 0 {
            return Err(ApiError::bad_request("the upload has no rows"));
        }
        self.out.flush().map_err(io_error)?;
        Ok((self.out, self.rows))
    }
}

fn io_error(e: std::io::Error) -> ApiError {
    tracing::error!("writing a batch upload: {e}");
    ApiError::new(
        StatusCode::INSUFFICIENT_STORAGE,
        "storage_error",
        "the upload could not be stored",
    )
    .retry_after(5)
}

/// One chunk of a job: its index, its rows as a batch, and each row's line (for
/// re-scoring rows one by one when the model refuses the chunk).
pub struct Chunk {
    pub index: u64,
    pub rows: u64,
    pub batch: Batch,
    pub lines: Vec<(u64, Vec<u8>)>,
}

/// Reads a stored upload back as chunks.
pub struct ChunkReader<R: BufRead> {
    input: R,
    parser: LineParser,
    chunk_rows: u64,
    line: u64,
    next: u64,
}

impl<R: BufRead> ChunkReader<R> {
    pub fn new(input: R, format: Format, bounds: Bounds, chunk_rows: u64) -> ChunkReader<R> {
        ChunkReader {
            input,
            parser: LineParser::new(format, bounds),
            chunk_rows: chunk_rows.max(1),
            line: 0,
            next: 0,
        }
    }

    /// The next chunk; `skip(index)` true: parsed (the CSV header and line numbers must
    /// be followed) but its batch not kept.
    pub fn next_chunk(&mut self, skip: &dyn Fn(u64) -> bool) -> anyhow::Result<Option<Chunk>> {
        let index = self.next;
        let keep = !skip(index);
        let mut batch = BatchBuilder::new();
        let mut lines = Vec::new();
        let mut rows = 0;
        let mut buf = Vec::new();
        while rows < self.chunk_rows {
            buf.clear();
            if self.input.read_until(b'\n', &mut buf)? == 0 {
                break;
            }
            self.line += 1;
            let mut scratch = BatchBuilder::new();
            let target = if keep { &mut batch } else { &mut scratch };
            let is_row = self
                .parser
                .line(self.line, &buf, target)
                .map_err(|e| anyhow::anyhow!("{}", e.reason))?;
            if is_row {
                rows += 1;
                if keep {
                    lines.push((self.line, buf.clone()));
                }
            }
        }
        if rows == 0 {
            return Ok(None);
        }
        self.next += 1;
        Ok(Some(Chunk {
            index,
            rows,
            batch: batch.finish(),
            lines,
        }))
    }

    /// A batch of the single row on `line` (a line this reader returned).
    pub fn one_row(&self, no: u64, line: &[u8]) -> Result<Batch, ApiError> {
        let mut parser = self.parser.clone();
        let mut b = BatchBuilder::new();
        parser.line(no, line, &mut b)?;
        Ok(b.finish())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn limits() -> UploadLimits {
        UploadLimits {
            max_bytes: 1 << 20,
            max_rows: 100,
            chunk_rows: 2,
        }
    }

    fn ingest(format: Format, body: &str, pieces: usize) -> Result<(Vec<u8>, u64), ApiError> {
        let mut i = Ingest::new(Vec::new(), format, Bounds::default(), limits());
        let b = body.as_bytes();
        let step = b.len().div_ceil(pieces).max(1);
        for part in b.chunks(step) {
            i.feed(part)?;
        }
        i.finish()
    }

    #[test]
    fn ndjson_rows_are_counted_across_split_reads() {
        let body = "{\"origin\":\"EWR\",\"distance\":719}\n\n{\"origin\":\"JFK\",\"distance\":null}\r\n{\"origin\":\"LGA\"}";
        for pieces in [1, 3, 7, body.len()] {
            let (stored, rows) = ingest(Format::Ndjson, body, pieces).unwrap();
            assert_eq!(rows, 3);
            assert_eq!(stored, body.as_bytes(), "stored as sent");
        }
    }

    #[test]
    fn a_bad_line_fails_the_upload_naming_it() {
        let e = |f, body: &str| ingest(f, body, 2).unwrap_err();
        let r = e(Format::Ndjson, "{\"a\":1}\n{\"a\":true}\n");
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(r.reason.starts_with("line 2.a:"), "{}", r.reason);
        assert!(
            e(Format::Ndjson, "{\"a\":1}\n\n[1]\n")
                .reason
                .starts_with("line 3:")
        );
        assert!(
            e(Format::Ndjson, "{\"a\":1\n")
                .reason
                .starts_with("line 1: not JSON")
        );
        // Same kinds per chunk as /v1/eta requires per request.
        assert!(
            e(Format::Ndjson, "{\"a\":1}\n{\"a\":\"x\"}\n")
                .reason
                .starts_with("line 2.a: a number here")
        );
        assert!(
            e(Format::Csv, "a,b\n1,2\n3\n")
                .reason
                .starts_with("line 3: 1 cells")
        );
        assert!(e(Format::Csv, "a,a\n1,2\n").reason.contains("twice"));
        assert!(e(Format::Ndjson, "\n\n").reason.contains("no rows"));
    }

    #[test]
    fn limits_are_413_naming_the_line() {
        let mut i = Ingest::new(
            Vec::new(),
            Format::Ndjson,
            Bounds::default(),
            UploadLimits {
                max_rows: 2,
                ..limits()
            },
        );
        let r = i.feed(b"{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n").unwrap_err();
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(r.reason.starts_with("line 3:"), "{}", r.reason);
        let mut i = Ingest::new(
            Vec::new(),
            Format::Ndjson,
            Bounds::default(),
            UploadLimits {
                max_bytes: 10,
                ..limits()
            },
        );
        i.feed(b"{\"a\":1}\n").unwrap();
        let r = i.feed(b"{\"a\":2}\n").unwrap_err();
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(r.reason.contains("line 2"), "{}", r.reason);
    }

    #[test]
    fn csv_cells_are_typed_and_quoted_cells_read() {
        assert_eq!(
            split_csv(r#"a,"b,c","d""e",,"#).unwrap(),
            vec!["a", "b,c", "d\"e", "", ""]
        );
        assert!(split_csv(r#""open"#).is_err());
        let mut r = ChunkReader::new(
            "origin,distance,dep_delay\nEWR,719,\n\"JFK\",1089.5,-4\nLGA,762,3\n".as_bytes(),
            Format::Csv,
            Bounds::default(),
            2,
        );
        let c = r.next_chunk(&|_| false).unwrap().unwrap();
        assert_eq!((c.index, c.rows), (0, 2));
        assert_eq!(c.lines[0].0, 2);
        let row = crate::sandbox::row_of(&c.batch, 1).features;
        let f = |name: &str, value| crate::sandbox::Feature {
            name: name.into(),
            value,
        };
        use crate::sandbox::Value;
        assert!(row.contains(&f("origin", Value::Category("JFK".into()))));
        assert!(row.contains(&f("distance", Value::Number(1089.5))));
        assert!(row.contains(&f("dep_delay", Value::Number(-4.0))));
        let row0 = crate::sandbox::row_of(&c.batch, 0).features;
        assert!(row0.contains(&f("dep_delay", Value::Missing)));
        let c = r.next_chunk(&|_| false).unwrap().unwrap();
        assert_eq!((c.index, c.rows, c.lines[0].0), (1, 1, 4));
        assert!(r.next_chunk(&|_| false).unwrap().is_none());
    }

    #[test]
    fn skipped_chunks_keep_line_numbers() {
        let body = "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n";
        let mut r = ChunkReader::new(body.as_bytes(), Format::Ndjson, Bounds::default(), 2);
        let c = r.next_chunk(&|i| i == 0).unwrap().unwrap();
        assert!(c.lines.is_empty());
        let c = r.next_chunk(&|i| i == 0).unwrap().unwrap();
        assert_eq!((c.index, c.rows, c.lines[0].0), (1, 1, 3));
    }
}

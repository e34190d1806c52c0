//! One column of the WIT `batch`, borrowed: numbers as one `f64` slice (NaN = missing),
//! categories dictionary-coded.

/// One feature value, as the WIT `value` variant (borrowed).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Number(f64),
    Category(&'a str),
    Missing,
}

/// One column. `S` is whatever string type the caller holds (`String` from the WIT
/// bindings, `&str` in tests).
#[derive(Debug)]
pub enum Column<'a, S> {
    /// One per row; NaN marks a missing value.
    Numbers(&'a [f64]),
    /// One code per row into `dictionary`; a code past its end marks a missing value.
    Categories {
        dictionary: &'a [S],
        codes: &'a [u32],
    },
}

// By hand: a derive would require `S: Copy`, but only references are copied.
impl<S> Clone for Column<'_, S> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<S> Copy for Column<'_, S> {}

impl<'a, S: AsRef<str>> Column<'a, S> {
    pub fn len(&self) -> usize {
        match self {
            Column::Numbers(v) => v.len(),
            Column::Categories { codes, .. } => codes.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Row `i`'s value (missing past the end).
    pub fn value(&self, i: usize) -> Value<'a> {
        match *self {
            Column::Numbers(v) => match v.get(i) {
                Some(x) if !x.is_nan() => Value::Number(*x),
                _ => Value::Missing,
            },
            Column::Categories { dictionary, codes } => {
                let code = codes.get(i).map(|&c| c as usize);
                match code.and_then(|c| dictionary.get(c)) {
                    Some(s) => Value::Category(s.as_ref()),
                    None => Value::Missing,
                }
            }
        }
    }
}

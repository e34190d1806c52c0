//! What the policy needs from the proxy, as a trait (Kuadrant wasm-shim style), so the
//! logic runs in native tests with a fake and in Envoy with proxy-wasm host calls.

pub use bulkhead_filter_kit::{SetError, SharedData};

/// The request headers of the current stream.
///
/// Every request reads the map once ([`RequestHeaders::pairs`]): stripping by name prefix
/// has to see every name, and the same read then yields `authorization`, so the hot path
/// makes one read call instead of a map read plus a lookup (each host call returning data
/// costs two crossings of the Wasm boundary: the call and the host's allocation in the VM).
pub trait RequestHeaders {
    /// All request headers, or `None` if the host did not hand out a well-formed map.
    fn pairs(&self) -> Option<HeaderPairs>;
    /// Removes every value of `name`.
    fn remove(&mut self, name: &[u8]);
    /// Replaces every value of `name` with `value`.
    fn set(&mut self, name: &str, value: &str);
}

/// A header map in proxy-wasm's serialized form, read in place: a `u32` count, per pair
/// a `u32` name length and a `u32` value length, then each name and each value followed
/// by a NUL byte (all integers little-endian).
///
/// Names and values stay bytes: HTTP lets values carry obs-text, which is not UTF-8, and
/// the SDK's `String` map API panics on such a value, which fails the plugin's VM and so
/// every later request on that worker. Nothing here allocates per header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderPairs {
    buf: Vec<u8>,
    count: usize,
}

const U32: usize = std::mem::size_of::<u32>();

fn u32_at(buf: &[u8], at: usize) -> Option<usize> {
    let bytes = buf.get(at..at.checked_add(U32)?)?;
    let mut le = [0u8; U32];
    le.copy_from_slice(bytes);
    usize::try_from(u32::from_le_bytes(le)).ok()
}

impl HeaderPairs {
    /// Checks the layout once, so that iterating never meets a short buffer. An empty
    /// buffer is an empty map (the host hands out nothing for one).
    pub fn parse(buf: Vec<u8>) -> Option<Self> {
        if buf.is_empty() {
            return Some(HeaderPairs { buf, count: 0 });
        }
        let count = u32_at(&buf, 0)?;
        let table = count.checked_mul(2 * U32)?.checked_add(U32)?;
        let mut end = table;
        for i in 0..count {
            let at = U32 + i * 2 * U32;
            let name = u32_at(&buf, at)?;
            let value = u32_at(&buf, at + U32)?;
            end = end.checked_add(name)?.checked_add(value)?.checked_add(2)?;
        }
        (end <= buf.len()).then_some(HeaderPairs { buf, count })
    }

    /// The serialized form of `pairs` (what the host would hand out for them).
    pub fn serialize<'a>(pairs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> Self {
        let mut table = Vec::new();
        let mut data = Vec::new();
        let mut count: u32 = 0;
        for (name, value) in pairs {
            for part in [name, value] {
                table.extend_from_slice(&(part.len() as u32).to_le_bytes());
                data.extend_from_slice(part);
                data.push(0);
            }
            count += 1;
        }
        let mut buf = count.to_le_bytes().to_vec();
        buf.append(&mut table);
        buf.append(&mut data);
        HeaderPairs {
            buf,
            count: count as usize,
        }
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The pairs in the host's order; a repeated name comes once per value.
    pub fn iter(&self) -> Pairs<'_> {
        Pairs {
            buf: &self.buf,
            index: 0,
            count: self.count,
            data: U32 + self.count * 2 * U32,
        }
    }

    /// The first value of `name` (compared case-insensitively), as the host's single-value
    /// lookup would answer.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }
}

/// Iterator over [`HeaderPairs`]: `(name, value)`.
#[derive(Clone, Debug)]
pub struct Pairs<'a> {
    buf: &'a [u8],
    index: usize,
    count: usize,
    data: usize,
}

impl<'a> Iterator for Pairs<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.index >= self.count {
            return None;
        }
        let at = U32 + self.index * 2 * U32;
        let name_len = u32_at(self.buf, at)?;
        let value_len = u32_at(self.buf, at + U32)?;
        let name = self.buf.get(self.data..self.data + name_len)?;
        let value_at = self.data + name_len + 1;
        let value = self.buf.get(value_at..value_at + value_len)?;
        self.data = value_at + value_len + 1;
        self.index += 1;
        Some((name, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &[u8])]) -> HeaderPairs {
        HeaderPairs::serialize(pairs.iter().map(|(n, v)| (n.as_bytes(), *v)))
    }

    #[test]
    fn round_trips_and_keeps_non_utf8_values() {
        let m = map(&[
            (":path", b"/"),
            ("x-bin", b"a\xffb"),
            ("empty", b""),
            ("x-bin", b"second"),
        ]);
        let back = HeaderPairs::parse(m.buf.clone()).unwrap();
        assert_eq!(back, m);
        let all: Vec<_> = back.iter().collect();
        assert_eq!(
            all,
            vec![
                (&b":path"[..], &b"/"[..]),
                (b"x-bin", b"a\xffb"),
                (b"empty", b""),
                (b"x-bin", b"second"),
            ]
        );
        assert_eq!(back.get("X-Bin"), Some(&b"a\xffb"[..]));
        assert_eq!(back.get("empty"), Some(&b""[..]));
        assert_eq!(back.get("absent"), None);
        assert_eq!(back.len(), 4);
    }

    #[test]
    fn the_sdk_layout_is_what_is_parsed() {
        // Two pairs as proxy-wasm hosts serialize them (cf. the SDK's own test vector).
        let mut buf = vec![2, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0];
        buf.extend_from_slice(b"a\0bc\0def\0\0");
        let m = HeaderPairs::parse(buf).unwrap();
        let all: Vec<_> = m.iter().collect();
        assert_eq!(all, vec![(&b"a"[..], &b"bc"[..]), (b"def", b"")]);
        assert!(HeaderPairs::parse(Vec::new()).unwrap().is_empty());
    }

    #[test]
    fn malformed_buffers_are_refused_not_read_past() {
        let good = map(&[("authorization", b"Bearer x"), ("x-org-id", b"EVIL")]).buf;
        for cut in 1..good.len() {
            assert!(
                HeaderPairs::parse(good[..cut].to_vec()).is_none(),
                "cut {cut}"
            );
        }
        // A count or a length that would overflow the arithmetic.
        assert!(HeaderPairs::parse(vec![0xff; 12]).is_none());
        let mut huge = good.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(HeaderPairs::parse(huge).is_none());
    }
}

//! The proxy-wasm header-map serialisation: a little-endian u32 count, then a (key size,
//! value size) u32 pair per entry, then every key and value followed by a NUL byte.

pub(crate) fn serialize(pairs: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        4 + pairs
            .iter()
            .map(|(k, v)| 10 + k.len() + v.len())
            .sum::<usize>(),
    );
    out.extend_from_slice(&len_u32(pairs.len()).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&len_u32(k.len()).to_le_bytes());
        out.extend_from_slice(&len_u32(v.len()).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Returns None on a malformed buffer. An empty buffer is an empty map (what the SDK sends
/// for no trailers). Non-UTF-8 bytes are replaced, since header values here are strings.
pub(crate) fn deserialize(bytes: &[u8]) -> Option<Vec<(String, String)>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let read_u32 = |at: usize| -> Option<usize> {
        let raw: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(raw)).ok()
    };
    let count = read_u32(0)?;
    let mut data = 4usize.checked_add(count.checked_mul(8)?)?;
    if data > bytes.len() {
        return None;
    }
    let mut pairs = Vec::with_capacity(count);
    for i in 0..count {
        let key_len = read_u32(4 + i * 8)?;
        let value_len = read_u32(8 + i * 8)?;
        let key = bytes.get(data..data.checked_add(key_len)?)?;
        data = data.checked_add(key_len + 1)?;
        let value = bytes.get(data..data.checked_add(value_len)?)?;
        data = data.checked_add(value_len + 1)?;
        pairs.push((
            String::from_utf8_lossy(key).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        ));
    }
    Some(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let pairs = vec![
            (":method".to_string(), "GET".to_string()),
            ("x-empty".to_string(), String::new()),
        ];
        let bytes = serialize(&pairs);
        assert_eq!(&bytes[..4], &[2, 0, 0, 0]);
        assert_eq!(deserialize(&bytes).unwrap(), pairs);
        assert_eq!(deserialize(&[]).unwrap(), vec![]);
        assert_eq!(deserialize(&serialize(&[])).unwrap(), vec![]);
    }

    #[test]
    fn truncated_is_rejected() {
        let bytes = serialize(&[("a".into(), "b".into())]);
        assert!(deserialize(&bytes[..bytes.len() - 2]).is_none());
        assert!(deserialize(&[5, 0, 0, 0]).is_none());
    }
}

//! HTTP helpers the daemons' servers share.

use axum::http::{HeaderMap, header};

/// A `Range: bytes=A-B` (one range), checked against `size`.
pub fn parse_range(headers: &HeaderMap, size: u64) -> Result<Option<(u64, u64)>, String> {
    let Some(value) = headers.get(header::RANGE) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| "Range is not text".to_string())?;
    let spec = text
        .strip_prefix("bytes=")
        .ok_or_else(|| format!("Range {text:?}: only bytes ranges are served"))?;
    if spec.contains(',') {
        return Err("multiple ranges are not served: ask for one".into());
    }
    let (a, b) = spec
        .split_once('-')
        .ok_or_else(|| format!("Range {text:?} is malformed"))?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", suffix) => {
            let n: u64 = suffix
                .parse()
                .map_err(|_| format!("Range {text:?} is malformed"))?;
            (size.saturating_sub(n), size)
        }
        (a, "") => (
            a.parse()
                .map_err(|_| format!("Range {text:?} is malformed"))?,
            size,
        ),
        (a, b) => {
            let a: u64 = a
                .parse()
                .map_err(|_| format!("Range {text:?} is malformed"))?;
            let b: u64 = b
                .parse()
                .map_err(|_| format!("Range {text:?} is malformed"))?;
            (a, b.saturating_add(1).min(size))
        }
    };
    if start >= end || start >= size {
        return Err(format!(
            "Range {text:?} is outside the piece's {size} bytes"
        ));
    }
    Ok(Some((start, end - start)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn range(value: &str, size: u64) -> Result<Option<(u64, u64)>, String> {
        let mut headers = HeaderMap::new();
        headers.insert(header::RANGE, HeaderValue::from_str(value).expect("header"));
        parse_range(&headers, size)
    }

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(range("bytes=0-9", 100), Ok(Some((0, 10))));
        assert_eq!(range("bytes=90-", 100), Ok(Some((90, 10))));
        assert_eq!(range("bytes=-5", 100), Ok(Some((95, 5))));
        assert_eq!(range("bytes=50-500", 100), Ok(Some((50, 50))));
        assert!(range("bytes=100-", 100).is_err());
        assert!(range("bytes=0-1,5-6", 100).is_err());
        assert!(range("items=0-1", 100).is_err());
    }
}

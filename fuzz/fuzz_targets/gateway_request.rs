//! The retrieval listener's request parsing, as a stranger's request reaches it: the trustless
//! gateway's CID, path, query (`format`, `dag-scope`, `entity-bytes`, `car-dups`, `filename`)
//! and `Accept`, and `Range` on `/piece` and `/ipfs`. What is accepted is self-consistent;
//! a byte range always lies inside the content.
#![no_main]

use axum::http::{HeaderMap, HeaderValue, header};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use nelumbo_markets::retrieval::gateway::{self, Format, Scope};

#[derive(Debug, Arbitrary)]
struct Request {
    cid: String,
    path: String,
    /// The raw query string, decoded as the router decodes it.
    query: String,
    accept: Vec<Vec<u8>>,
    range: Option<Vec<u8>>,
    /// The size of the content the request meets.
    size: u64,
}

fuzz_target!(|request: Request| {
    let mut headers = HeaderMap::new();
    for value in &request.accept {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(header::ACCEPT, value);
        }
    }
    if let Some(range) = &request.range
        && let Ok(value) = HeaderValue::from_bytes(range)
    {
        headers.insert(header::RANGE, value);
    }
    let size = request.size;
    if let Ok(Some((start, len))) = nelumbo_service::parse_range(&headers, size) {
        assert!(len > 0 && start.checked_add(len).is_some_and(|end| end <= size));
    }
    let query: Vec<(String, String)> = url::form_urlencoded::parse(request.query.as_bytes())
        .into_owned()
        .collect();
    let Ok(parsed) = gateway::parse_request(&request.cid, &request.path, &query, &headers) else {
        return;
    };
    if parsed.format == Format::Raw {
        assert!(parsed.path.is_empty(), "a raw block with a path");
    }
    assert!(
        parsed
            .path
            .iter()
            .all(|segment| !segment.is_empty() && !segment.contains('/'))
    );
    if let Some(bytes) = parsed.bytes {
        assert_eq!(parsed.scope, Scope::Entity);
        if let Some((from, to)) = bytes.resolve(size) {
            assert!(
                from <= to && to < size,
                "{bytes:?} of {size} bytes gave {from}..={to}"
            );
        }
    }
    if let Some(name) = &parsed.filename {
        assert!(!name.is_empty() && name.len() <= 255);
        assert!(!name.contains(['/', '\\', '"']) && !name.chars().any(char::is_control));
    }
    let mut out = HeaderMap::new();
    let path = format!("/ipfs/{}/{}", request.cid, request.path);
    gateway::common_headers(&mut out, &path, &[parsed.root]);
    let etag = gateway::car_etag(&parsed, &parsed.root);
    assert!(
        HeaderValue::from_str(&etag).is_ok(),
        "an Etag that is not a header value"
    );
});

//! The web console, served by the daemon from files embedded at build time.
//!
//! `web/dist` (the committed output of `scripts/build-web.sh`) is baked into
//! the binary by build.rs: `/` is its index.html, `/assets/…` the bundles.
//! Nothing here needs the API token: the files hold no data, and the app asks
//! for the token before it calls the API.

use axum::Router;
use axum::http::header::{
    ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH,
    REFERRER_POLICY, VARY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// One embedded file.
pub struct Asset {
    /// Its path under web/dist, as a URL path (`/index.html`, `/assets/main-XXXX.js`).
    pub url: &'static str,
    pub bytes: &'static [u8],
    /// A gzip copy, when smaller than the file.
    pub gzip: Option<&'static [u8]>,
    /// A quoted content hash.
    pub etag: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

const INDEX: &str = "/index.html";

/// No inline script, no other origin; styles may be inline because xterm.js
/// and noVNC style their elements from script.
const CSP: &str = "default-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data:; \
    style-src 'self' 'unsafe-inline'; font-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// `GET /` and one route per embedded file; any other path is left to the caller's fallback.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    ASSETS.iter().fold(Router::new(), |router, asset| {
        let path = if asset.url == INDEX { "/" } else { asset.url };
        router.route(path, get(move |headers: HeaderMap| async move { respond(asset, &headers) }))
    })
}

fn respond(asset: &'static Asset, request: &HeaderMap) -> Response {
    let mut headers = HeaderMap::new();
    let is_index = asset.url == INDEX;
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type(asset.url)));
    // index.html names the hashed bundles, so it is revalidated each load; a bundle never changes under its name.
    let cache = if is_index { "no-cache" } else { "public, max-age=31536000, immutable" };
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(ETAG, HeaderValue::from_static(asset.etag));
    headers.insert(VARY, HeaderValue::from_static("accept-encoding"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if is_index {
        headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
        headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    if request.get_all(IF_NONE_MATCH).iter().any(|tag| etag_matches(tag.as_bytes(), asset.etag)) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    match asset.gzip.filter(|_| accepts_gzip(request)) {
        Some(compressed) => {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            (headers, compressed).into_response()
        }
        None => (headers, asset.bytes).into_response(),
    }
}

fn content_type(url: &str) -> &'static str {
    match url.rsplit_once('.').map(|(_, extension)| extension) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// `If-None-Match` holds a list of tags or `*`.
fn etag_matches(header: &[u8], etag: &str) -> bool {
    let text = String::from_utf8_lossy(header);
    text.split(',').map(|tag| tag.trim().trim_start_matches("W/")).any(|tag| tag == "*" || tag == etag)
}

/// Whether `Accept-Encoding` allows gzip (listed without `q=0`).
fn accepts_gzip(request: &HeaderMap) -> bool {
    request
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let refused = parts.any(|param| {
                param.strip_prefix("q=").and_then(|q| q.trim().parse::<f32>().ok()).is_some_and(|q| q == 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_encoding(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT_ENCODING, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn gzip_is_used_when_accepted_and_not_refused() {
        assert!(accepts_gzip(&with_encoding("gzip, deflate, br, zstd")));
        assert!(accepts_gzip(&with_encoding("br;q=1.0, gzip;q=0.8")));
        assert!(accepts_gzip(&with_encoding("*")));
        assert!(!accepts_gzip(&with_encoding("gzip;q=0")));
        assert!(!accepts_gzip(&with_encoding("gzip; q=0.0")));
        assert!(!accepts_gzip(&with_encoding("br")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn etags_match_in_a_list_weak_or_star() {
        assert!(etag_matches(b"\"a\", \"b\"", "\"b\""));
        assert!(etag_matches(b"W/\"b\"", "\"b\""));
        assert!(etag_matches(b"*", "\"b\""));
        assert!(!etag_matches(b"\"a\"", "\"b\""));
    }

    #[test]
    fn the_index_and_its_bundles_are_embedded() {
        let index = ASSETS.iter().find(|asset| asset.url == INDEX).expect("index.html is embedded");
        let html = String::from_utf8_lossy(index.bytes);
        for asset in ASSETS.iter().filter(|asset| asset.url.starts_with("/assets/") && asset.url.ends_with(".js")) {
            // Lazily loaded chunks are named by other bundles, not by the page; the entry must be.
            if html.contains(asset.url) {
                return;
            }
        }
        panic!("index.html names no embedded script: {html}");
    }
}

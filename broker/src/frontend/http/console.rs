//! The built-in web console: `GET /` and its static files under
//! `GET /console/:file`.
//!
//! The files live in `console/` beside this module and are compiled into
//! the binary (`include_str!`), so `shoald` serves its console with no
//! files to install and no Node toolchain to build it. The console is plain
//! HTML, CSS and JavaScript that reads the same JSON API as any client
//! (`/stats`, `/topics`, `/groups`, the quarantine endpoints): it has no
//! private back door into the broker.
//!
//! Every reply carries a Content-Security-Policy that allows only this
//! origin, so the page cannot load anything from a CDN even by mistake
//! (the browser test would see the blocked request fail), and `no-cache`
//! so a browser picks up a new console after the broker is upgraded.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use hyper::{Response, StatusCode};

use super::json::{HttpError, HttpResponse};

/// One embedded file: its name under `/console/`, media type and contents.
struct Asset {
    name: &'static str,
    media_type: &'static str,
    body: &'static str,
}

/// Every file the console serves; `index.html` is also `GET /`.
const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        media_type: "text/html; charset=utf-8",
        body: include_str!("console/index.html"),
    },
    Asset {
        name: "console.css",
        media_type: "text/css; charset=utf-8",
        body: include_str!("console/console.css"),
    },
    Asset {
        name: "console.js",
        media_type: "text/javascript; charset=utf-8",
        body: include_str!("console/console.js"),
    },
    Asset {
        name: "charts.js",
        media_type: "text/javascript; charset=utf-8",
        body: include_str!("console/charts.js"),
    },
];

/// Only this origin: scripts, styles, API calls and images (charts are
/// inline SVG built through the DOM, so no `data:` or inline script needed).
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// `GET /`.
pub fn index() -> HttpResponse {
    reply(&ASSETS[0])
}

/// `GET /console/:file`, or 404 for a name that is not embedded.
pub fn asset(name: &str) -> Result<HttpResponse, HttpError> {
    ASSETS
        .iter()
        .find(|a| a.name == name)
        .map(reply)
        .ok_or_else(|| HttpError::unknown_route(&hyper::Method::GET, &format!("/console/{name}")))
}

fn reply(asset: &Asset) -> HttpResponse {
    let mut resp = Response::new(Full::new(Bytes::from_static(asset.body.as_bytes())));
    *resp.status_mut() = StatusCode::OK;
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(asset.media_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file the page references is embedded, and none points at
    /// another origin (the console must work without network access).
    #[test]
    fn assets_are_complete_and_local() {
        let index = ASSETS[0].body;
        for a in &ASSETS[1..] {
            assert!(
                index.contains(&format!("/console/{}", a.name)),
                "{} not linked",
                a.name
            );
        }
        for a in ASSETS {
            for origin in ["http://", "https://", "//cdn"] {
                let hits: Vec<&str> = a
                    .body
                    .lines()
                    .filter(|l| l.contains(origin) && !l.contains("www.w3.org/2000/svg"))
                    .collect();
                assert!(hits.is_empty(), "{} references {origin}: {hits:?}", a.name);
            }
        }
        assert!(asset("nope.js").is_err());
    }
}

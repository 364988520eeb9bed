//! The response-header phase: runs when the upstream's headers arrive,
//! before the body phase decides how the body is treated. URLs in headers
//! point back into the proxy; cookies are scoped to the proxy host; the
//! site's security policies are kept, extended for the agent, and stopped
//! from capturing the proxy host (HSTS, Alt-Svc, service workers).

use http::HeaderMap;
use http::header::{self, HeaderName, HeaderValue};

use super::csp;
use super::request::strip_hop_by_hop;
use super::site::Mapper;

/// Headers whose value is, or holds, URLs.
const URL_HEADERS: [HeaderName; 5] = [
    header::LOCATION,
    header::CONTENT_LOCATION,
    header::LINK,
    header::ACCESS_CONTROL_ALLOW_ORIGIN,
    HeaderName::from_static("refresh"),
];

/// Headers that would pin the proxy host to the upstream's policies.
const CAPTURING: [HeaderName; 4] = [
    header::STRICT_TRANSPORT_SECURITY,
    header::ALT_SVC,
    HeaderName::from_static("service-worker-allowed"),
    HeaderName::from_static("public-key-pins"),
];

pub fn translate(headers: &mut HeaderMap, mapper: &Mapper, allow: &csp::Allowance, nonce: &str) {
    strip_hop_by_hop(headers);
    for name in CAPTURING {
        headers.remove(name);
    }
    for name in URL_HEADERS {
        map_all(headers, &name, |v| Some(mapper.map_str(v).into_owned()));
    }
    let tls = mapper.tls;
    map_all(headers, &header::SET_COOKIE, |v| Some(set_cookie(v, tls)));
    for name in [
        header::CONTENT_SECURITY_POLICY,
        header::CONTENT_SECURITY_POLICY_REPORT_ONLY,
    ] {
        map_all(headers, &name, |v| {
            Some(csp::rewrite(&mapper.map_str(v), allow, nonce, false))
        });
    }
    if headers.remove(header::X_FRAME_OPTIONS).is_some() {
        // The console frames the site from its own origin, which
        // X-Frame-Options cannot name: a policy that can says the same.
        let policy = format!("frame-ancestors {}", allow.frame_ancestors().join(" "));
        if let Ok(v) = HeaderValue::from_str(&policy) {
            headers.append(header::CONTENT_SECURITY_POLICY, v);
        }
    }
}

fn map_all(headers: &mut HeaderMap, name: &HeaderName, f: impl Fn(&str) -> Option<String>) {
    let values: Vec<HeaderValue> = headers.get_all(name).iter().cloned().collect();
    if values.is_empty() {
        return;
    }
    headers.remove(name);
    for value in values {
        let mapped = value
            .to_str()
            .ok()
            .and_then(&f)
            .and_then(|m| HeaderValue::from_str(&m).ok());
        headers.append(name, mapped.unwrap_or(value));
    }
}

/// A cookie of the upstream becomes a host-only cookie of the proxy host;
/// `Secure` (and what requires it) only survives when the client reached
/// the proxy over TLS, or the browser would refuse the cookie.
pub fn set_cookie(value: &str, tls: bool) -> String {
    let mut parts = value.split(';');
    let mut out = vec![parts.next().unwrap_or("").trim().to_string()];
    for attr in parts {
        let attr = attr.trim();
        let name = attr
            .split('=')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match name.as_str() {
            "domain" => continue,
            "secure" | "partitioned" if !tls => continue,
            "samesite"
                if !tls
                    && attr
                        .split('=')
                        .nth(1)
                        .is_some_and(|v| v.trim().eq_ignore_ascii_case("none")) =>
            {
                // SameSite=None needs Secure; the console is same-site anyway.
                out.push("SameSite=Lax".into());
                continue;
            }
            _ => {}
        }
        out.push(attr.to_string());
    }
    out.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::site::tests::mapper;

    #[test]
    fn cookies_are_scoped_to_the_proxy_host() {
        assert_eq!(
            set_cookie(
                "sid=1; Domain=.shop.example; Path=/; Secure; HttpOnly; SameSite=None",
                false
            ),
            "sid=1; Path=/; HttpOnly; SameSite=Lax"
        );
        assert_eq!(
            set_cookie("sid=1; domain=shop.example; Secure; SameSite=None", true),
            "sid=1; Secure; SameSite=None"
        );
    }

    #[test]
    fn headers_point_back_into_the_proxy() {
        let m = mapper(false);
        let allow = csp::Allowance {
            origin: "http://a.test:8080".into(),
            prefix: "/__cobrowse/".into(),
            console: Some("http://a.test:8081".into()),
        };
        let mut h = HeaderMap::new();
        h.insert(
            header::LOCATION,
            HeaderValue::from_static("https://shop.example/login?next=%2F"),
        );
        h.insert(
            header::LINK,
            HeaderValue::from_static("<https://shop.example/s.css>; rel=preload; as=style"),
        );
        h.insert(
            "refresh",
            HeaderValue::from_static("3; url=https://shop.example/x"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("https://shop.example"),
        );
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=9999"),
        );
        h.insert(header::ALT_SVC, HeaderValue::from_static("h3=\":443\""));
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("frame-ancestors 'none'; img-src https://shop.example"),
        );
        translate(&mut h, &m, &allow, "N");
        assert_eq!(h[header::LOCATION], "http://a.test:8080/login?next=%2F");
        assert_eq!(
            h[header::LINK],
            "<http://a.test:8080/s.css>; rel=preload; as=style"
        );
        assert_eq!(h["refresh"], "3; url=http://a.test:8080/x");
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "http://a.test:8080");
        assert!(!h.contains_key(header::X_FRAME_OPTIONS));
        let policies: Vec<&str> = h
            .get_all(header::CONTENT_SECURITY_POLICY)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(
            policies,
            [
                "frame-ancestors 'self' http://a.test:8081; img-src http://a.test:8080",
                "frame-ancestors 'self' http://a.test:8081"
            ]
        );
        assert!(
            !h.contains_key(header::STRICT_TRANSPORT_SECURITY) && !h.contains_key(header::ALT_SVC)
        );
    }
}

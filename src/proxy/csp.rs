//! Content-Security-Policy, rewritten rather than dropped: everything the
//! site asked for stays, extended just enough for the agent script and the
//! hub's WebSocket, with framing limited to the proxy's own origin and the
//! operator console's (the console frames the site from its own origin).

/// What a policy must let through, for one response.
#[derive(Debug, Clone)]
pub struct Allowance {
    /// The proxy origin the client reached, `http://host:port`.
    pub origin: String,
    /// The reserved prefix, `/__cobrowse/`.
    pub prefix: String,
    /// The operator console's origin, which frames the site.
    pub console: Option<String>,
}

impl Allowance {
    fn tls(&self) -> bool {
        self.origin.starts_with("https:")
    }

    /// Who may frame the site: the proxy itself and the console.
    pub fn frame_ancestors(&self) -> Vec<String> {
        std::iter::once("'self'".to_string())
            .chain(self.console.clone())
            .collect()
    }

    fn agent_url(&self) -> String {
        format!("{}{}agent.js", self.origin, self.prefix)
    }

    fn hub_sources(&self) -> [String; 2] {
        let host = self.origin.split_once("://").map_or("", |(_, h)| h);
        let ws = if self.tls() { "wss" } else { "ws" };
        [
            format!("{}{}", self.origin, self.prefix),
            format!("{ws}://{host}{}", self.prefix),
        ]
    }
}

/// Rewrites a policy (one header value, possibly several comma-separated
/// policies). `meta`: the policy came from `<meta>`, where frame-ancestors
/// is ignored anyway.
pub fn rewrite(policy: &str, allow: &Allowance, nonce: &str, meta: bool) -> String {
    policy
        .split(',')
        .map(|p| rewrite_one(p.trim(), allow, nonce, meta))
        .collect::<Vec<_>>()
        .join(", ")
}

fn rewrite_one(policy: &str, allow: &Allowance, nonce: &str, meta: bool) -> String {
    let mut directives: Vec<(String, Vec<String>)> = policy
        .split(';')
        .filter_map(|d| {
            let mut words = d.split_ascii_whitespace();
            let name = words.next()?.to_ascii_lowercase();
            Some((name, words.map(str::to_string).collect()))
        })
        .collect();
    let has = |ds: &[(String, Vec<String>)], n: &str| ds.iter().position(|(name, _)| name == n);

    // The directive that governs `<script src>`: the most specific present.
    if let Some(i) = has(&directives, "script-src-elem")
        .or_else(|| has(&directives, "script-src"))
        .or_else(|| has(&directives, "default-src"))
    {
        let values = &mut directives[i].1;
        let keyed = values.iter().any(|v| {
            let v = v.to_ascii_lowercase();
            v == "'strict-dynamic'" || v.starts_with("'nonce-") || v.starts_with("'sha")
        });
        values.retain(|v| !v.eq_ignore_ascii_case("'none'"));
        if keyed {
            // With nonces or hashes in force a URL is not enough ('strict-
            // dynamic' ignores URLs); the injected tag carries this nonce.
            values.push(format!("'nonce-{nonce}'"));
        } else {
            // A nonce here would switch off the site's 'unsafe-inline'.
            values.push(allow.agent_url());
        }
    }
    if let Some(i) = has(&directives, "connect-src").or_else(|| has(&directives, "default-src")) {
        let values = &mut directives[i].1;
        values.retain(|v| !v.eq_ignore_ascii_case("'none'"));
        values.extend(allow.hub_sources());
    }
    if let Some(i) = has(&directives, "frame-ancestors").filter(|_| !meta) {
        directives[i].1 = allow.frame_ancestors();
    }
    if !allow.tls() {
        // Served over plain HTTP, the proxy's own URLs must not be upgraded
        // to an https origin that does not exist.
        directives.retain(|(name, _)| {
            name != "upgrade-insecure-requests" && name != "block-all-mixed-content"
        });
    }
    directives
        .into_iter()
        .map(|(name, values)| {
            if values.is_empty() {
                name
            } else {
                format!("{name} {}", values.join(" "))
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow() -> Allowance {
        Allowance {
            origin: "http://p.test:8080".into(),
            prefix: "/__cobrowse/".into(),
            console: None,
        }
    }

    #[test]
    fn nonce_policies_get_a_nonce_and_keep_theirs() {
        let out = rewrite(
            "script-src 'nonce-site' 'strict-dynamic'; object-src 'none'",
            &allow(),
            "N",
            false,
        );
        assert_eq!(
            out,
            "script-src 'nonce-site' 'strict-dynamic' 'nonce-N'; object-src 'none'"
        );
    }

    #[test]
    fn url_policies_get_the_agent_url_so_unsafe_inline_keeps_working() {
        let out = rewrite("default-src 'self' 'unsafe-inline'", &allow(), "N", false);
        assert_eq!(
            out,
            "default-src 'self' 'unsafe-inline' http://p.test:8080/__cobrowse/agent.js http://p.test:8080/__cobrowse/ ws://p.test:8080/__cobrowse/"
        );
    }

    #[test]
    fn none_is_replaced_and_connect_src_allows_the_hub() {
        let out = rewrite(
            "script-src 'none'; connect-src 'none'; img-src *",
            &allow(),
            "N",
            false,
        );
        assert_eq!(
            out,
            "script-src http://p.test:8080/__cobrowse/agent.js; connect-src http://p.test:8080/__cobrowse/ ws://p.test:8080/__cobrowse/; img-src *"
        );
    }

    #[test]
    fn framing_only_by_the_proxy_itself() {
        let out = rewrite(
            "frame-ancestors https://partner.test; upgrade-insecure-requests",
            &allow(),
            "N",
            false,
        );
        assert_eq!(out, "frame-ancestors 'self'");
        let tls = Allowance {
            origin: "https://p.test".into(),
            prefix: "/x/".into(),
            console: None,
        };
        let with_console = Allowance {
            console: Some("http://p.test:8081".into()),
            ..allow()
        };
        assert_eq!(
            rewrite("frame-ancestors 'none'", &with_console, "N", false),
            "frame-ancestors 'self' http://p.test:8081"
        );
        assert_eq!(
            rewrite("upgrade-insecure-requests", &tls, "N", false),
            "upgrade-insecure-requests"
        );
    }

    #[test]
    fn policies_without_script_rules_are_kept() {
        assert_eq!(
            rewrite("img-src 'self', style-src 'self'", &allow(), "N", false),
            "img-src 'self', style-src 'self'"
        );
    }
}

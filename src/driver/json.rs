//! Blanks masked keys in the JSON served to followers: the account endpoint
//! of a single-page app renders no `<input>`, so the HTML mask never sees its
//! card number. A JSON body is parsed whole (bounded), every object member
//! whose key is masked has its value replaced by `""`, and the result is
//! written again. What cannot be parsed is not served to a follower at all.

use http::HeaderMap;

use crate::config::normalise_key as normalise;
use crate::proxy::compress;
use crate::proxy::error::Unmaskable;
use crate::proxy::stream::Pipeline;

/// Keys masked on every site, normalised: passwords, PINs, card security
/// codes and card numbers in the spellings APIs use.
pub const ALWAYS_MASKED: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "pass",
    "newpassword",
    "oldpassword",
    "currentpassword",
    "confirmpassword",
    "passwordconfirmation",
    "pin",
    "pincode",
    "cvc",
    "cvc2",
    "cvv",
    "cvv2",
    "csc",
    "securitycode",
    "cardsecuritycode",
    "cardverificationcode",
    "cardnumber",
    "cardno",
    "cardnum",
    "ccnumber",
    "ccnum",
    "creditcard",
    "creditcardnumber",
    "pan",
    "primaryaccountnumber",
];

/// `body` decoded from its `Content-Encoding`, refused past `max` decoded
/// bytes (checked as it grows, so a small compressed body cannot expand
/// without bound) or in an encoding the proxy cannot decode.
pub fn decode(headers: &HeaderMap, body: &[u8], max: usize) -> Result<Vec<u8>, Unmaskable> {
    let codings = compress::parse_content_encoding(headers).ok_or(Unmaskable::Encoding)?;
    let mut pipeline = Pipeline::bounded(max as u64);
    for coding in codings.iter().rev() {
        pipeline = pipeline.decode(*coding);
    }
    let mut out = Vec::new();
    for chunk in body.chunks(1024) {
        match pipeline.push(chunk) {
            Ok(piece) => out.extend(piece),
            Err(_) if pipeline.over_limit() => return Err(Unmaskable::TooLarge),
            Err(_) => return Err(Unmaskable::Encoding),
        }
    }
    match pipeline.finish() {
        Ok(piece) => out.extend(piece),
        Err(_) if pipeline.over_limit() => return Err(Unmaskable::TooLarge),
        Err(_) => return Err(Unmaskable::Encoding),
    }
    if out.len() > max {
        return Err(Unmaskable::TooLarge);
    }
    Ok(out)
}

/// The prefix some APIs put before JSON against cross-site script
/// inclusion (`)]}'` and a line break); kept as it came.
const XSSI_PREFIX: &[u8] = b")]}'";

/// `body` with the value of every masked key blanked, at any depth.
/// `configured` keys are normalised already (config.rs does it).
pub fn mask(body: &[u8], configured: &[String], max_bytes: usize) -> Result<Vec<u8>, Unmaskable> {
    if body.len() > max_bytes {
        return Err(Unmaskable::TooLarge);
    }
    let (prefix, json) = match body.strip_prefix(XSSI_PREFIX) {
        Some(rest) => {
            let line = rest
                .iter()
                .position(|&b| b == b'\n')
                .map_or(rest.len(), |i| i + 1);
            body.split_at(XSSI_PREFIX.len() + line)
        }
        None => body.split_at(0),
    };
    // A body of only whitespace is no JSON document, but carries nothing.
    if json.iter().all(u8::is_ascii_whitespace) {
        return Ok(body.to_vec());
    }
    // Checked whole first, so the rewrite below only ever sees valid JSON.
    serde_json::from_slice::<serde::de::IgnoredAny>(json).map_err(|_| Unmaskable::NotJson)?;
    let mut out = prefix.to_vec();
    out.reserve(json.len());
    blank(json, &mut out, configured);
    Ok(out)
}

fn is_masked(key: &str, configured: &[String]) -> bool {
    let key = normalise(key);
    ALWAYS_MASKED.contains(&key.as_str()) || configured.contains(&key)
}

/// Copies valid JSON `json` to `out` byte for byte, except the value of a
/// masked member: `""` instead (`null` stays `null`). Whatever it held (a
/// number, an object with the parts of a card), nothing of it is kept. The
/// rest keeps its exact bytes, so key order and number formats are the
/// site's own.
fn blank(json: &[u8], out: &mut Vec<u8>, configured: &[String]) {
    /// An open container; for an object, whether a key comes next.
    enum Open {
        Object { key_next: bool },
        Array,
    }
    let mut open: Vec<Open> = Vec::new();
    let mut i = 0;
    while i < json.len() {
        match json[i] {
            b'{' => open.push(Open::Object { key_next: true }),
            b'[' => open.push(Open::Array),
            b'}' | b']' => {
                open.pop();
            }
            b',' => {
                if let Some(Open::Object { key_next }) = open.last_mut() {
                    *key_next = true;
                }
            }
            b'"' => {
                let end = string_end(json, i);
                out.extend_from_slice(&json[i..end]);
                let key = match open.last_mut() {
                    Some(Open::Object { key_next }) if *key_next => {
                        *key_next = false;
                        serde_json::from_slice::<String>(&json[i..end]).ok()
                    }
                    _ => None,
                };
                i = end;
                if key.is_some_and(|k| is_masked(&k, configured)) {
                    // Up to and past the colon, then the value is replaced.
                    while json[i] != b':' {
                        out.push(json[i]);
                        i += 1;
                    }
                    out.push(b':');
                    i += 1;
                    while json[i].is_ascii_whitespace() {
                        i += 1;
                    }
                    let end = value_end(json, i);
                    out.extend_from_slice(if &json[i..end] == b"null" {
                        b"null"
                    } else {
                        b"\"\""
                    });
                    i = end;
                }
                continue;
            }
            _ => {}
        }
        out.push(json[i]);
        i += 1;
    }
}

/// The index just past the string that starts at `start` (a `"`).
fn string_end(json: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < json.len() {
        match json[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    json.len()
}

/// The index just past the value that starts at `start`.
fn value_end(json: &[u8], start: usize) -> usize {
    match json[start] {
        b'"' => string_end(json, start),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = start;
            while i < json.len() {
                match json[i] {
                    b'"' => {
                        i = string_end(json, i);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return i + 1;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            json.len()
        }
        _ => {
            start
                + json[start..]
                    .iter()
                    .position(|b| matches!(b, b',' | b'}' | b']') || b.is_ascii_whitespace())
                    .unwrap_or(json.len() - start)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(text: &str, configured: &[&str]) -> String {
        let configured: Vec<String> = configured.iter().map(|k| normalise(k)).collect();
        String::from_utf8(mask(text.as_bytes(), &configured, 1 << 20).unwrap()).unwrap()
    }

    #[test]
    fn usual_keys_are_blanked_whatever_their_spelling() {
        let out = masked(
            r#"{"name":"Pat","cardNumber":"4111111111111111","card_number":4111111111111112,"CC-Number":"4111111111111113",
               "payment":{"cvc":"123","CVV2":"456","Pin":7351,"expiry":"12/30"},"users":[{"password":"hunter2","pwd":"x","passwd":"y"}],
               "new_password":"n3w","card":null}"#,
            &[],
        );
        for secret in [
            "4111111111111111",
            "4111111111111112",
            "4111111111111113",
            "123",
            "456",
            "7351",
            "hunter2",
            "n3w",
            "\"x\"",
            "\"y\"",
        ] {
            assert!(!out.contains(secret), "{secret} leaked: {out}");
        }
        assert!(
            out.contains(r#""name":"Pat""#)
                && out.contains(r#""expiry":"12/30""#)
                && out.contains(r#""card":null"#),
            "{out}"
        );
        assert!(
            out.contains(r#""cardNumber":"""#),
            "the key stays, its value is blanked: {out}"
        );
    }

    #[test]
    fn configured_keys_and_whole_values() {
        let out = masked(
            r#"{"Account-Number":"DE89 3704","iban":{"country":"DE","check":"89"},"shippingPin":"ok"}"#,
            &["accountNumber", "IBAN"],
        );
        assert_eq!(out, r#"{"Account-Number":"","iban":"","shippingPin":"ok"}"#);
    }

    #[test]
    fn unparsable_or_too_large_is_refused() {
        assert_eq!(mask(b"{\"password\":", &[], 100), Err(Unmaskable::NotJson));
        assert_eq!(mask(b"<html>", &[], 100), Err(Unmaskable::NotJson));
        assert_eq!(mask(&[b' '; 101], &[], 100), Err(Unmaskable::TooLarge));
        assert_eq!(mask(b"  ", &[], 100).unwrap(), b"  ");
    }

    #[test]
    fn compressed_bodies_are_decoded_within_the_bound() {
        let mut gzip = Pipeline::default().then(compress::Codec::encoder(compress::Coding::Gzip));
        let mut bomb = gzip.push(&[b' '; 100_000]).unwrap();
        bomb.extend(gzip.finish().unwrap());
        // Ten times smaller than what it decodes to, at the codec's fast level.
        assert!(bomb.len() < 10_000, "{}", bomb.len());
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_ENCODING,
            http::HeaderValue::from_static("gzip"),
        );
        assert_eq!(decode(&headers, &bomb, 10_000), Err(Unmaskable::TooLarge));
        assert_eq!(decode(&headers, &bomb, 100_000).unwrap().len(), 100_000);
        headers.insert(
            http::header::CONTENT_ENCODING,
            http::HeaderValue::from_static("snappy"),
        );
        assert_eq!(decode(&headers, b"{}", 100), Err(Unmaskable::Encoding));
    }

    #[test]
    fn the_xssi_prefix_is_kept() {
        assert_eq!(
            masked(")]}',\n{\"pin\":\"1\"}", &[]),
            ")]}',\n{\"pin\":\"\"}"
        );
    }
}

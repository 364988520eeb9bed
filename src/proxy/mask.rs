//! Blanks masked fields in the documents served to followers, so a value the
//! server rendered into a password, payment or configured field is not
//! exposed to operators either. The agent masks what the customer types; this
//! masks what the upstream wrote.

use lol_html::html_content::Element;
use lol_html::{AsciiCompatibleEncoding, ElementContentHandlers, HtmlRewriter, Selector, Settings};

/// Fields masked on every site, whatever the configuration says: passwords,
/// payment fields by their autocomplete tokens (`cc-number`, `cc-csc`...,
/// possibly after a section token such as `billing`), and the secrets the
/// other autocomplete tokens name (`current-password`, `new-password`,
/// `one-time-code`). The same list as the agent's (`inject/mask.js`).
pub const ALWAYS_MASKED: &[&str] = &[
    "input[type=\"password\" i]",
    "[autocomplete*=\"cc-\" i]",
    "[autocomplete*=\"password\" i]",
    "[autocomplete*=\"one-time-code\" i]",
];

/// Selectors for the masked elements and the fields inside them. A
/// configured selector list (`.a, .b`) is taken apart first: appending
/// ` input` to the list would reach only into its last member.
pub fn selectors(configured: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let bases = ALWAYS_MASKED
        .iter()
        .map(|s| s.to_string())
        .chain(configured.iter().flat_map(|list| members(list)));
    for base in bases {
        for inside in ["", " input", " textarea", " option"] {
            out.push(format!("{base}{inside}"));
        }
    }
    out
}

/// The members of a selector list: split at the commas outside quotes,
/// brackets and parentheses (and not escaped).
fn members(list: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut depth, mut quote, mut escaped, mut start) = (0usize, None, false, 0);
    for (i, c) in list.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' | '\'' if quote == Some(c) => quote = None,
            _ if quote.is_some() => {}
            '"' | '\'' => quote = Some(c),
            '[' | '(' => depth += 1,
            ']' | ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(list[start..i].trim().to_string());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(list[start..].trim().to_string());
    out.retain(|s| !s.is_empty());
    out
}

/// Removes the value a masked field carries in the document.
pub fn blank<H: lol_html::HandlerTypes>(el: &mut Element<'_, '_, H>) {
    match el.tag_name().as_str() {
        "input" => el.remove_attribute("value"),
        "textarea" => el.set_inner_content("", lol_html::html_content::ContentType::Text),
        "option" => el.remove_attribute("selected"),
        _ => {}
    }
}

/// `document` (in `encoding`) with every masked field's value removed;
/// `None` if it cannot be rewritten, which the caller treats as "cannot
/// serve a kept copy".
pub fn mask_document(
    document: &[u8],
    encoding: &'static encoding_rs::Encoding,
    configured: &[String],
) -> Option<Vec<u8>> {
    let encoding = AsciiCompatibleEncoding::new(encoding).unwrap_or_else(|| {
        AsciiCompatibleEncoding::new(encoding_rs::UTF_8).expect("UTF-8 is ASCII-compatible")
    });
    let mut settings = Settings::new()
        .with_encoding(encoding)
        .with_strict(false)
        .with_adjust_charset_on_meta_tag(true);
    for selector in selectors(configured) {
        // Configured selectors were checked at start; a combination that
        // still fails to parse is skipped rather than failing the page.
        let Ok(parsed) = selector.parse::<Selector>() else {
            continue;
        };
        let handlers = ElementContentHandlers::default().element(|el: &mut Element<'_, '_>| {
            blank(el);
            Ok(())
        });
        settings =
            settings.append_element_content_handler((std::borrow::Cow::Owned(parsed), handlers));
    }
    let mut out = Vec::with_capacity(document.len());
    let mut rewriter = HtmlRewriter::new(settings, |chunk: &[u8]| out.extend_from_slice(chunk));
    rewriter.write(document).ok()?;
    rewriter.end().ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(html: &str, configured: &[&str]) -> String {
        let configured: Vec<String> = configured.iter().map(|s| s.to_string()).collect();
        String::from_utf8(mask_document(html.as_bytes(), encoding_rs::UTF_8, &configured).unwrap())
            .unwrap()
    }

    #[test]
    fn passwords_and_payment_fields_are_blanked() {
        let out = mask(
            r#"<form><input type=PASSWORD value="hunter2"><input autocomplete="billing cc-number" value="4111111111111111"><input name=q value="shoes"></form>"#,
            &[],
        );
        assert!(!out.contains("hunter2") && !out.contains("4111"), "{out}");
        assert!(out.contains(r#"value="shoes""#), "{out}");
    }

    #[test]
    fn secrets_named_by_autocomplete_are_blanked() {
        let out = mask(
            r#"<input autocomplete="one-time-code" value="481516"><input autocomplete="section-a current-password" value="tr0ub4dor"><input autocomplete="name" value="Ada">"#,
            &[],
        );
        assert!(
            !out.contains("481516") && !out.contains("tr0ub4dor"),
            "{out}"
        );
        assert!(out.contains(r#"value="Ada""#), "{out}");
    }

    #[test]
    fn every_member_of_a_configured_selector_list_masks_its_fields() {
        let out = mask(
            r#"<div class="a"><textarea>first</textarea></div><p class=b><input value="second"></p><span data-x="c, d"><input value="third"></span><input value="shown">"#,
            &[".a, .b", "[data-x=\"c, d\"]"],
        );
        assert!(
            !out.contains("first") && !out.contains("second") && !out.contains("third"),
            "{out}"
        );
        assert!(out.contains(r#"value="shown""#), "{out}");
        assert_eq!(
            members(r#"a[t=",("], b:not(.c), d\,e"#),
            [r#"a[t=",("]"#, "b:not(.c)", r"d\,e"]
        );
    }

    #[test]
    fn configured_selectors_blank_fields_inside_them() {
        let out = mask(
            r#"<div class="secret"><textarea>diary</textarea><select><option selected>Blood type AB</option></select></div><input id="ssn" value="078-05-1120"><textarea>visible</textarea>"#,
            &[".secret", "#ssn"],
        );
        assert!(
            !out.contains("diary") && !out.contains("078-05") && !out.contains("selected"),
            "{out}"
        );
        assert!(out.contains("visible"), "{out}");
    }
}

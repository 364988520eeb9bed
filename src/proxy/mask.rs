//! Blanks masked fields in the documents served to followers, so a value the
//! server rendered into a password, payment or configured field is not
//! exposed to operators either. The agent masks what the customer types; this
//! masks what the upstream wrote.

use lol_html::html_content::Element;
use lol_html::{AsciiCompatibleEncoding, ElementContentHandlers, HtmlRewriter, Selector, Settings};

/// Fields masked on every site, whatever the configuration says: passwords,
/// and payment fields by their autocomplete tokens (`cc-number`, `cc-csc`...,
/// possibly after a section token such as `billing`).
pub const ALWAYS_MASKED: &[&str] = &["input[type=\"password\" i]", "[autocomplete*=\"cc-\" i]"];

/// Selectors for the masked elements and the fields inside them.
pub fn selectors(configured: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for base in ALWAYS_MASKED
        .iter()
        .map(|s| s.to_string())
        .chain(configured.iter().cloned())
    {
        for inside in ["", " input", " textarea", " option"] {
            out.push(format!("{base}{inside}"));
        }
    }
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

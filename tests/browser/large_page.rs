//! A call on a large page: the agent publishes the customer's page in
//! slices that yield to the page, finds radio groups in one pass and inner
//! scroll positions from the elements it saw scroll, and the operator still
//! gets every control and every scroll position.

use super::*;
use crate::support::origin::{Origin, full};

/// Groups of three radios per form (one name per group, checked first by
/// default), text fields, checkboxes and selects in two forms, radios
/// outside any form, and boxes that scroll: one scrolled by the page's own
/// script while it is parsed, one inside a shadow root. The page notes each
/// box it saw scroll (its own listeners, from the start), so the test knows
/// when the browser has delivered the scrolls.
fn large_page() -> String {
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Large</title>\
         <style>.box{height:60px;width:200px;overflow:auto;white-space:nowrap}.box p{margin:0;height:40px}</style>\
         <script>window.seen = new Set(); document.addEventListener('scroll', (e) => { if (e.target.id) seen.add(e.target.id); }, true);</script>\
         </head><body>\n",
    );
    let box_of = |id: &str| {
        let rows: String = (0..30)
            .map(|i| format!("<p>Row {i} of a box wide enough to scroll sideways as well</p>"))
            .collect();
        format!("<div class=\"box\" id=\"{id}\">{rows}</div>\n")
    };
    html.push_str(&box_of("early"));
    // Scrolled by the page itself before the document has finished.
    html.push_str("<script>document.getElementById('early').scrollTop = 130;</script>\n");
    for form in ["a", "b"] {
        html.push_str(&format!("<form id=\"{form}\" action=\"/submit\">\n"));
        for g in 0..300 {
            for v in ["x", "y", "z"] {
                let checked = if v == "x" { " checked" } else { "" };
                html.push_str(&format!(
                    "<label><input type=\"radio\" name=\"r{g}\" value=\"{v}\"{checked}>{v}</label>"
                ));
            }
            html.push_str(&format!(
                "<input name=\"t{g}\" value=\"\"><input type=\"checkbox\" name=\"c{g}\">\
                 <select name=\"s{g}\"><option>one</option><option>two</option></select><br>\n"
            ));
        }
        html.push_str("</form>\n");
    }
    for g in 0..50 {
        html.push_str(&format!(
            "<input type=\"radio\" name=\"loose{g}\" value=\"p\"><input type=\"radio\" name=\"loose{g}\" value=\"q\">\n"
        ));
    }
    for id in ["one", "two", "three"] {
        html.push_str(&box_of(id));
    }
    html.push_str(
        "<div id=\"host\"></div><script>\
         const root = document.getElementById('host').attachShadow({mode: 'open'});\
         root.addEventListener('scroll', (e) => seen.add(e.target.id), true);\
         root.innerHTML = '<style>.box{height:60px;width:200px;overflow:auto}.box p{margin:0;height:40px}</style><div class=\"box\" id=\"inner\">' + '<p>Row</p>'.repeat(30) + '</div>';\
         </script>\n",
    );
    html.push_str("</body></html>\n");
    html
}

/// Every control's state and every box's scroll position, in document order.
const STATE: &str = r#"(() => {
    const root = document.getElementById('host').shadowRoot;
    const boxes = [...document.querySelectorAll('.box'), root.getElementById('inner')];
    return JSON.stringify([
        [...document.querySelectorAll('input, select, textarea')].map((e) => e.type === 'radio' || e.type === 'checkbox' ? e.checked : e.value),
        boxes.map((b) => [b.id, Math.round(b.scrollTop), Math.round(b.scrollLeft)]),
    ]);
})()"#;

#[tokio::test]
async fn a_call_on_a_large_page_shares_every_control_and_scroll_position() {
    let page = large_page();
    let origin = Origin::start(move |_req| {
        let page = page.clone();
        async move {
            http::Response::builder()
                .header("content-type", "text/html; charset=utf-8")
                .body(full(page))
                .unwrap()
        }
    })
    .await;
    let server = Cobrowse::with_config(&Cobrowse::config_for(&origin.url(), "")).await;
    let browser = Browser::launch().await;
    let operator = browser.tab("operator", 1400, 1000).await;
    let customer = browser.tab("customer", 1000, 760).await;
    operator_waits(&operator, &server, OPERATOR_USER, &[&customer]).await;
    customer.goto(&server.url("/large.html")).await;

    // Before the call the customer fills in much of the page (in both
    // forms, radio groups of the same names) and scrolls boxes.
    customer
        .eval(
            r#"(() => {
        for (const f of ['a', 'b']) {
            const form = document.getElementById(f);
            for (let g = 0; g < 300; g++) {
                if (g % 3 === 1) form.querySelector(`input[name="r${g}"][value="${f === 'a' ? 'y' : 'z'}"]`).checked = true;
                if (g % 4 === 0) form.querySelector(`input[name="t${g}"]`).value = `${f} ${g}`;
                if (g % 5 === 0) form.querySelector(`input[name="c${g}"]`).checked = true;
                if (g % 7 === 0) form.querySelector(`select[name="s${g}"]`).value = 'two';
            }
        }
        for (let g = 0; g < 50; g += 2) document.querySelector(`input[name="loose${g}"][value="q"]`).checked = true;
        document.getElementById('one').scrollTop = 200;
        document.getElementById('two').scrollLeft = 90;
        document.getElementById('three').scrollTo(40, 300);
        document.getElementById('host').shadowRoot.getElementById('inner').scrollTop = 250;
        return true;
    })()"#,
        )
        .await;
    until(
        &customer,
        "the page to see its boxes scrolled",
        "['early', 'one', 'two', 'three', 'inner'].every((id) => seen.has(id))",
        &[&customer, &operator],
        &server,
    )
    .await;
    let want = customer.eval(STATE).await;
    let want = want.as_str().expect("the customer's state").to_string();
    assert!(
        want.contains(r#"["one",200,0]"#) && want.contains(r#"["early",130,0]"#),
        "{want}"
    );

    customer_calls(&customer, &server, &[&operator]).await;
    operator_responds(&operator, &server, &[&customer]).await;
    // Until the operator's page shows the same; on failure, where it differs.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let got = operator.eval_on(CONTENT, &in_frame(STATE)).await;
        if got.as_str() == Some(want.as_str()) {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            let got = got.as_str().unwrap_or("").to_string();
            let at = want
                .bytes()
                .zip(got.bytes())
                .take_while(|(a, b)| a == b)
                .count();
            panic!(
                "the operator's page differs from the customer's at byte {at}:\n customer: …{}\n operator: …{}\n{}",
                &want[at.saturating_sub(80)..(at + 80).min(want.len())],
                &got[at.saturating_sub(80).min(got.len())..(at + 80).min(got.len())],
                harness::context(&[&customer, &operator], &server).await
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // Nothing changed on the customer's side meanwhile.
    assert_eq!(customer.eval(STATE).await.as_str(), Some(want.as_str()));
}

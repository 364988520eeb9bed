//! A small real shop for the one-driver tests: a login with an HttpOnly
//! session cookie, a cart, and an order form posting to an endpoint that
//! counts orders. Pages carry per-request content (a token and a serial), so
//! a follower that fetched its own copy would visibly differ.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::origin::{Origin, OriginBody, full};

/// The card number the server renders into the order form: a masked field
/// whose value must never reach an operator.
pub const CARD_ON_FILE: &str = "4111111111111111";
/// A PIN the server renders into a password field.
pub const PIN_ON_FILE: &str = "7351";
/// The card's security code, in the account API's JSON.
pub const CVC_ON_FILE: &str = "913";

#[derive(Default)]
pub struct ShopState {
    pub orders: AtomicUsize,
    /// Money transfers made by `GET /transfer?to=...` (a GET with a side
    /// effect, as some sites have).
    pub transfers: AtomicUsize,
    /// Requests seen, as "METHOD path".
    pub log: Mutex<Vec<String>>,
    serial: AtomicUsize,
    /// session id -> (user, cart items)
    sessions: Mutex<HashMap<String, (String, Vec<String>)>>,
}

pub struct Shop {
    pub origin: Origin,
    pub state: Arc<ShopState>,
}

impl Shop {
    pub async fn start() -> Shop {
        let state = Arc::new(ShopState::default());
        let s = state.clone();
        let origin = Origin::start(move |req| {
            let s = s.clone();
            async move { handle(&s, req).await }
        })
        .await;
        Shop { origin, state }
    }

    pub fn orders(&self) -> usize {
        self.state.orders.load(Ordering::SeqCst)
    }

    pub fn log(&self) -> Vec<String> {
        self.state.log.lock().unwrap().clone()
    }

    pub fn transfers(&self) -> usize {
        self.state.transfers.load(Ordering::SeqCst)
    }

    /// How many requests the shop saw as `line` ("METHOD path").
    pub fn count(&self, line: &str) -> usize {
        self.log().iter().filter(|l| *l == line).count()
    }
}

/// A page carrying a server-rendered PIN in a password field: what the
/// proxy must never pass unmasked to a follower.
fn pin_page(title: &str, serial: usize) -> String {
    format!(
        "<!doctype html><html><head><meta charset=utf-8><title>{title}</title></head><body><h1>{title}</h1>\
         <label>PIN <input name=pin type=password value={PIN_ON_FILE}></label><span id=serial>{serial}</span></body></html>"
    )
}

fn html(status: StatusCode, body: String) -> Response<OriginBody> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .body(full(body))
        .unwrap()
}

fn page(title: &str, body: &str, serial: usize) -> Response<OriginBody> {
    let html = format!(
        "<!doctype html><html><head><meta charset=utf-8><title>{title}</title><link rel=stylesheet href=/shop.css></head>\
         <body><h1>{title}</h1>{body}<footer>page serial <span id=serial>{serial}</span></footer></body></html>"
    );
    Response::builder()
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .body(full(html))
        .unwrap()
}

fn redirect(to: &str) -> Response<OriginBody> {
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, to)
        .body(full(""))
        .unwrap()
}

fn session_of(req: &Request<Incoming>) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| kv.trim().strip_prefix("sid=").map(str::to_string))
}

async fn form_fields(req: Request<Incoming>) -> HashMap<String, String> {
    let bytes = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    url::form_urlencoded::parse(&bytes).into_owned().collect()
}

async fn handle(s: &ShopState, req: Request<Incoming>) -> Response<OriginBody> {
    let path = req.uri().path().to_string();
    s.log
        .lock()
        .unwrap()
        .push(format!("{} {}", req.method(), path));
    let serial = s.serial.fetch_add(1, Ordering::SeqCst);
    let sid = session_of(&req);
    let user = sid
        .as_ref()
        .and_then(|id| s.sessions.lock().unwrap().get(id).map(|(u, _)| u.clone()));

    match (req.method().clone(), path.as_str()) {
        (Method::GET, "/") | (Method::GET, "/login") => page(
            "Sign in",
            "<form method=post action=/login><label>User <input name=user></label>\
             <label>Password <input name=password type=password></label><button>Sign in</button></form>",
            serial,
        ),
        (Method::POST, "/login") => {
            let fields = form_fields(req).await;
            let name = fields.get("user").cloned().unwrap_or_default();
            let id = format!("{:032x}", rand_id());
            s.sessions.lock().unwrap().insert(id.clone(), (name, vec![]));
            let mut r = redirect("/account");
            r.headers_mut().insert(header::SET_COOKIE, format!("sid={id}; Path=/; HttpOnly; SameSite=Lax").parse().unwrap());
            r
        }
        // Public pages that try the proxy's fail-closed rules for followers.
        (Method::GET, "/partial") => {
            // A server that answers 206 whatever was asked.
            let mut r = html(StatusCode::PARTIAL_CONTENT, pin_page("Partial", serial));
            r.headers_mut().insert(header::CONTENT_RANGE, "bytes 0-99999/100000".parse().unwrap());
            r
        }
        (Method::GET, "/ranged") => match req.headers().get(header::RANGE) {
            Some(_) => {
                let page = pin_page("Ranged", serial);
                let mut r = html(StatusCode::PARTIAL_CONTENT, page.clone());
                r.headers_mut().insert(header::CONTENT_RANGE, format!("bytes 0-{}/{}", page.len() - 1, page.len()).parse().unwrap());
                r
            }
            None => html(StatusCode::OK, pin_page("Ranged", serial)),
        },
        (Method::GET, "/big") => {
            // A page whose rewrite outgrows a small html_memory_limit.
            let huge = "x".repeat(200_000);
            html(StatusCode::OK, pin_page("Big", serial).replace("<label>", &format!("<div data-x=\"{huge}\">big</div><label>")))
        }
        (Method::GET, "/odd") => {
            let mut r = html(StatusCode::OK, pin_page("Odd", serial));
            r.headers_mut().insert(header::CONTENT_ENCODING, "x-custom".parse().unwrap());
            r
        }
        (Method::GET, "/tracked") => {
            let mut r = html(StatusCode::OK, pin_page("Tracked", serial));
            r.headers_mut().insert(header::SET_COOKIE, "tracker=abc; Path=/".parse().unwrap());
            r
        }
        (Method::GET, "/search") => {
            // A GET form with a password field: the customer's navigation
            // carries it in the query.
            let q = url::form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes()).find(|(k, _)| k == "q").map(|(_, v)| v.into_owned());
            html(StatusCode::OK, format!("<!doctype html><title>Search</title><p id=results>Results for {}</p><span id=serial>{serial}</span>", q.unwrap_or_default()))
        }
        (Method::GET, "/offers.json") => Response::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .body(full(format!(r#"{{"offer":"tea","card_number":"{CARD_ON_FILE}","serial":{serial}}}"#)))
            .unwrap(),
        (Method::GET, "/broken.json") => Response::builder()
            .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
            .body(full(format!(r#"{{"cardNumber":"{CARD_ON_FILE}""#)))
            .unwrap(),
        (Method::GET, "/shop.css") if user.is_some() => Response::builder()
            .header(header::CONTENT_TYPE, "text/css")
            .body(full("body { background: rgb(250, 250, 240); }"))
            .unwrap(),
        (_, _) if user.is_none() => Response::builder().status(StatusCode::FORBIDDEN).body(full("sign in first")).unwrap(),
        (Method::GET, "/account") => page(
            "Account",
            &format!("<p id=welcome>Welcome, {}</p><p><a id=to-cart href=/cart>Your cart</a> <a id=to-wallet href=/wallet>Wallet</a></p>", user.unwrap()),
            serial,
        ),
        (Method::GET, "/wallet") => {
            // A single-page app's view: its script reads the account API.
            // The session cookie is renewed on every view, as rolling
            // sessions do.
            let mut r = page(
                "Wallet",
                "<p>Card <span id=card></span> code <span id=cvc></span> as of <span id=api-serial></span></p>\
                 <p><a id=to-wallet-again href=/wallet>Refresh</a></p>\
                 <script>fetch('/api/account').then((r) => r.json()).then((a) => {\
                   document.querySelector('#card').textContent = a.cardNumber;\
                   document.querySelector('#cvc').textContent = a.cvc;\
                   document.querySelector('#api-serial').textContent = a.serial; });</script>",
                serial,
            );
            r.headers_mut().insert(header::SET_COOKIE, format!("sid={}; Path=/; HttpOnly; SameSite=Lax", sid.as_ref().unwrap()).parse().unwrap());
            r
        }
        (Method::GET, "/api/account") => Response::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CACHE_CONTROL, "no-store")
            .body(full(format!(r#"{{"holder":"{}","cardNumber":"{CARD_ON_FILE}","cvc":"{CVC_ON_FILE}","serial":{serial}}}"#, user.unwrap())))
            .unwrap(),
        (Method::GET, "/transfer") => {
            let to = req.uri().query().unwrap_or_default().to_string();
            let n = s.transfers.fetch_add(1, Ordering::SeqCst) + 1;
            page("Transferred", &format!("<p id=transfer>Transfer {n}: {to}</p>"), serial)
        }
        (Method::GET, "/cart") => {
            let items = s.sessions.lock().unwrap().get(sid.as_ref().unwrap()).map(|(_, c)| c.clone()).unwrap_or_default();
            let list: String = items.iter().map(|i| format!("<li>{i}</li>")).collect();
            page(
                "Cart",
                &format!(
                    "<ul id=items>{list}</ul><form method=post action=/cart/add><input type=hidden name=item value=Teapot>\
                     <button id=add>Add a teapot</button></form><p><a id=to-order href=/order>Check out</a></p>"
                ),
                serial,
            )
        }
        (Method::POST, "/cart/add") => {
            let fields = form_fields(req).await;
            if let Some((_, cart)) = s.sessions.lock().unwrap().get_mut(sid.as_ref().unwrap()) {
                cart.push(fields.get("item").cloned().unwrap_or_default());
            }
            redirect("/cart")
        }
        (Method::GET, "/order") => page(
            "Order",
            &format!(
                "<form id=order method=post action=/order>\
                 <label>Name on card <input name=holder id=holder></label>\
                 <label>Card <input name=card autocomplete=cc-number value={CARD_ON_FILE}></label>\
                 <label>PIN <input name=pin type=password value={PIN_ON_FILE}></label>\
                 <button id=place>Place order</button></form>"
            ),
            serial,
        ),
        (Method::POST, "/order") => {
            let fields = form_fields(req).await;
            let n = s.orders.fetch_add(1, Ordering::SeqCst) + 1;
            page(
                "Order confirmed",
                &format!(
                    "<p id=confirmation>Order {n} for {} confirmed</p><p><a id=to-order-again href=/order>Order again</a></p>",
                    fields.get("holder").cloned().unwrap_or_default()
                ),
                serial,
            )
        }
        _ => Response::builder().status(StatusCode::NOT_FOUND).body(full("not found")).unwrap(),
    }
}

fn rand_id() -> u128 {
    use std::hash::{BuildHasher, RandomState};
    let a = RandomState::new().hash_one(std::time::SystemTime::now());
    let b = RandomState::new().hash_one(a);
    (u128::from(a) << 64) | u128::from(b)
}

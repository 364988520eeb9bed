// The hub as the browser side knows it, written once and joined by
// src/assets.rs into the agent, the sharing engine and the console, after
// the generated `VOCABULARY` (the command vocabulary and close codes of
// src/hub/protocol.rs):
//   - the store's rule: the latest command per key, a navigation dropping
//     what was stored below its frame;
//   - the navigation rule: the only URLs a `navigate` command may load;
//   - binding this browser to its participant, for the proxy;
//   - the link: one WebSocket to the hub for this browser's role, with its
//     reconnection backoff and the close code that ends it.

// The store as this participant knows it (docs/protocol.md, the hub's
// rules): the latest command per key, in the order keys were last written;
// a navigation drops what was stored below its frame, as the hub does.
function commandStore() {
    const map = new Map();
    return {
        put(cmd) {
            map.delete(cmd.key);
            map.set(cmd.key, cmd);
            if (cmd.fn === VOCABULARY.navigate) {
                for (const k of [...map.keys()]) if (k.startsWith(cmd.key + '/')) map.delete(k);
            }
        },
        get: (key) => map.get(key),
        values: () => [...map.values()],
        clear: () => map.clear(),
        // What is stored for a frame or part: its own key and every key below.
        under: (prefix) => [...map.values()].filter((c) => c.key === prefix || c.key.startsWith(prefix + '/')),
    };
}

// Whether `url` is a path on the site of `base` (an absolute URL on it): the
// only kind of URL a navigation command may load, whoever sent it (never a
// `javascript:` URL or another site). The hub refuses other targets
// (`navigation_target` in src/hub/protocol.rs); this is the same rule where
// it is applied. Tabs and newlines vanish in URL parsing (`/\t/evil.example`
// is `//evil.example`), so the URL is parsed, never compared as text alone.
function sitePath(url, base) {
    if (typeof url !== 'string' || url[0] !== '/' || /[\u0000-\u0020\u007f]/.test(url)) return false;
    try { return new URL(url, base).origin === new URL(base).origin; } catch (e) { return false; }
}

// Tells the proxy which participant this browser is (`credential`: the
// session and the single-use token the hub gave the connection in
// `joined`), so it applies the one-driver rules to the page's own requests
// (docs/driver.md, docs/protocol.md "Binding a browser"); `null` clears it.
// A failure leaves the browser unbound: sharing still works, and the proxy
// treats its requests as a stranger's.
function bindBrowser(prefix, credential) {
    const body = credential ? JSON.stringify(credential) : '';
    return fetch(prefix + 'bind', { method: 'POST', credentials: 'same-origin', headers: { 'content-type': 'application/json' }, body })
        .catch(() => { /* unbound, as said above */ });
}

// The link to the hub for `role` (`customer` or `operator`): one WebSocket at
// a time, on this page's host under `prefix`. `on` says what the page does:
//   open()        the socket opened: say who this is (call, resume, ready);
//   message(msg)  a message from the hub (JSON parsed; other text dropped);
//   closed(how)   the socket closed: `replaced` (the session was resumed
//                 elsewhere; do not come back), `retrying` (a new socket
//                 follows after a backoff) or `gone` (no retry);
//   wanted()      whether the page still wants the link (asked on close and
//                 again before each retry);
//   quiet()       optional: closes to ignore (the page is being left).
// At most `retries` retries in a row; an opened socket starts the count anew.
function hubLink(role, prefix, on, retries = Infinity) {
    const hub = {
        ws: null,
        retries: 0,
        open() { return !!hub.ws && hub.ws.readyState === 1; },
        // Sends `msg` (text as is, anything else as JSON) when the socket is
        // open; says whether it did.
        send(msg) {
            if (!hub.open()) return false;
            hub.ws.send(typeof msg === 'string' ? msg : JSON.stringify(msg));
            return true;
        },
        connect() {
            const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
            const ws = new WebSocket(`${proto}//${location.host}${prefix}ws?role=${role}`);
            hub.ws = ws;
            ws.onopen = () => {
                hub.retries = 0;
                on.open();
            };
            ws.onmessage = (ev) => {
                let msg;
                try { msg = JSON.parse(ev.data); } catch (e) { return; }
                on.message(msg);
            };
            ws.onclose = (ev) => {
                if (hub.ws !== ws || (on.quiet && on.quiet())) return;
                hub.ws = null;
                if (ev.code === VOCABULARY.close.resumedElsewhere) return on.closed('replaced');
                if (!on.wanted() || hub.retries >= retries) return on.closed('gone');
                // A network blip or a server restart: come back while the
                // page still wants the link.
                const delay = Math.min(8000, 250 * 2 ** hub.retries++);
                setTimeout(() => { if (!hub.ws && on.wanted()) hub.connect(); }, delay);
                on.closed('retrying');
            };
        },
        // Closes the socket; its close is not reported.
        close() {
            const ws = hub.ws;
            hub.ws = null;
            if (ws) try { ws.close(); } catch (e) { /* closed already */ }
        },
    };
    return hub;
}

// What participants are told while the hub refuses for want of its store
// (the error `unavailable`: a shared store that does not answer), never the
// store's own words; and the watch that takes it back once the store
// answers: `{prefix}healthz`, asked every two seconds while the message
// shows, or the next answer of the hub that needed the store (`recovered`).
// `changed(down)` is called on each change.
const UNAVAILABLE = 'Sharing is unavailable right now; try again in a moment.';
function storeOutage(prefix, changed) {
    let timer = 0;
    const outage = {
        down: false,
        refused() {
            if (outage.down) return;
            outage.down = true;
            changed(true);
            watch();
        },
        recovered() {
            if (!outage.down) return;
            outage.down = false;
            clearTimeout(timer);
            changed(false);
        },
    };
    function watch() {
        clearTimeout(timer);
        timer = setTimeout(async () => {
            if (!outage.down) return;
            const r = await fetch(`${prefix}healthz`, { cache: 'no-store', credentials: 'omit' }).catch(() => null);
            if (r && r.ok) outage.recovered();
            else if (outage.down) watch();
        }, 2000);
    }
    return outage;
}

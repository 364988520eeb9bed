// The sharing engine (share.js), loaded by agent.js when a session starts
// (a customer's call or resume, an operator's content frame). It runs in the
// root window of the shared page tree and works on every same-origin frame
// below it: the detectors turn local changes into difference commands keyed
// by frame path and part, the appliers apply the commands that arrive.
//
// This part: what the engine knows (the frames attached, the state last sent or
// applied per key), sending, attaching and detaching frames, publishing the
// customer's page, and the entry points the agent calls. Joined last:
// attaching the frames already known starts the detectors.

let applying = 0;
// The last state sent or applied per key: a detector that finds the
// same state again (the page reacting to an applied command, maybe
// asynchronously) sends nothing.
const last = new Map();
const attached = new Map();
let stopped = false;

function sig(fn, args) {
    return JSON.stringify([fn, args]);
}

// Sends a difference command unless it is the state last sent or applied
// for its key (`force`: send anyway). Only functions of the vocabulary
// leave this browser, and an operator without control sends only those
// that show (the hub's gate, `ALWAYS_ALLOWED` in src/hub/protocol.rs; the
// detectors ask `mayAct` first, so this only holds the line).
function send(key, fn, args, force) {
    if (!Object.hasOwn(VOCABULARY.functions, fn)) {
        console.warn('cobrowse: a command outside the vocabulary was not sent:', fn);
        return;
    }
    if (!VOCABULARY.alwaysAllowed.includes(fn) && !link.mayAct()) return;
    const s = sig(fn, args);
    if (!force && last.get(key) === s) return;
    last.set(key, s);
    link.send({ key, fn, args });
}

function forget(prefix) {
    for (const k of [...last.keys()]) if (k.startsWith(prefix + '/')) last.delete(k);
}

const me = () => link.me || link.role;

// Operators act only with the customer's permission; the hub refuses
// the command anyway, this just says why at once.
function mayAct(quiet) {
    if (link.mayAct()) return true;
    if (!quiet) link.notice('View only: the customer has not given you control.');
    return false;
}

function attach(w) {
    if (stopped || attached.has(w)) return;
    const path = framePath(w);
    if (!path) return;
    const doc = w.document;
    const off = [];
    // Names this document instance: a reload, or a page reached by
    // POST at the same URL, is a new document followers must load.
    attached.set(w, { path, off, doc: Math.random().toString(36).slice(2) });
    listenRoot(doc, off);
    const cb = cbOf(w);
    for (const R of cb ? cb.shadows : []) listenRoot(R, off);
    listenFrame(w, off);
    listen(w, 'pagehide', () => detach(w), {}, off);

    if (CB.operator) {
        const url = sharedUrl(w);
        const known = link.known(path);
        if (known != null && known !== url) {
            // The operator navigated this frame.
            if (mayAct()) {
                link.setKnown(path, url);
                send(path, VOCABULARY.navigate, [url, 'load', null], true);
            } else if (onThisSite(w, known)) {
                w.location.replace(known);
            }
            return;
        }
        // The document shown is the one the stored navigation named.
        const nav = link.stored(path).find((c) => c.key === path && c.fn === VOCABULARY.navigate);
        if (nav && nav.args[3]) shownDocs().set(path, nav.args[3]);
        applyStored(path);
        markMasked(w);
    } else {
        applyStored(path);
        if (link.joined) publishFrame(w);
    }
}

function detach(w) {
    const a = attached.get(w);
    if (!a) return;
    for (const f of a.off) f();
    attached.delete(w);
}

// What was stored for a frame before it (re)loaded here.
function applyStored(path) {
    for (const cmd of link.stored(path)) {
        if (cmd.fn === VOCABULARY.navigate) continue;
        if (parseKey(cmd.key).frame !== path) continue;
        receive(cmd);
    }
}

// ---- publishing the customer's page ------------------------------------

// A frame's state is published in slices of about this long, yielding to
// the page between them: a page of thousands of controls would otherwise
// freeze for the length of the whole pass when a call starts.
const SLICE_MS = 5;

// The hub refuses more than `rate` messages a second from a connection (in
// bursts of twice that): a publication spends at most half, so a large
// page's state is not refused, and what the customer does meanwhile still
// goes through. The allowance is shared by every frame's publication.
const RATE = Math.max(1, Number(CB.config && CB.config.rate) || 200);
let allowance = RATE;
let allowanceAt = 0;
function allowed() {
    const now = performance.now();
    allowance = Math.min(RATE, allowance + ((now - allowanceAt) / 1000) * (RATE / 2));
    allowanceAt = now;
    if (allowance < 1) return false;
    allowance -= 1;
    return true;
}
// How long until the allowance has room for one more.
function allowanceWait() {
    return Math.ceil(((1 - allowance) * 1000) / (RATE / 2));
}

// Frames whose state is being published, one after the other in the order
// asked (the root first); each has its navigation sent already.
const publishing = [];
let draining = false;

function publishFrame(w) {
    const a = attached.get(w);
    if (!a) return;
    const path = a.path;
    const url = sharedUrl(w);
    link.setKnown(path, url);
    forget(path);
    // At once: the navigation drops what is stored below the frame, so it
    // goes before anything the detectors send for the frame from now on.
    send(path, VOCABULARY.navigate, [url, 'load', historyState(w), a.doc], true);
    // A later publication of the frame replaces one still under way.
    a.publication = (a.publication || 0) + 1;
    publishing.push({ w, a, n: a.publication });
    if (!draining) drain();
}

async function drain() {
    draining = true;
    try {
        while (publishing.length) await publishState(publishing.shift());
    } finally {
        draining = false;
    }
}

// Gives the page its turn: the scheduler where there is one, else a
// message (timers are throttled in background tabs; messages are not).
function yieldToPage() {
    const s = ROOT.scheduler;
    if (s && typeof s.yield === 'function') return s.yield();
    return new Promise((resolve) => {
        const ch = new MessageChannel();
        ch.port1.onmessage = () => resolve();
        ch.port2.postMessage(null);
    });
}

// The frame's controls that differ from their defaults, its scroll
// positions and (for the root) the viewport. Each control is read when its
// slice runs, so what the customer changed meanwhile is sent as it is now;
// the detectors have sent it already, and the store keeps the latest per key.
async function publishState({ w, a, n }) {
    const live = () => !stopped && attached.get(w) === a && a.publication === n;
    if (!live()) return;
    const path = a.path;
    let until = performance.now() + SLICE_MS;
    const due = () => performance.now() > until;
    // Yields to the page; where the allowance ran out (`paced`), until it
    // has room again.
    let paced = false;
    const pause = async () => {
        if (paced) await new Promise((resolve) => setTimeout(resolve, allowanceWait()));
        else await yieldToPage();
        paced = false;
        until = performance.now() + SLICE_MS;
        return live();
    };

    const controls = allControls(w);
    const radios = new Set();
    let next = 0;
    const slice = () => {
        for (; next < controls.length && !due(); next++) {
            const el = controls[next];
            if (!el.isConnected || ours(el)) continue;
            let first = null;
            if (el.type === 'radio' && el.name) {
                const group = radioGroup(el);
                if (!group.length || radios.has(group[0])) continue;
                if (group.every((r) => r.checked === r.defaultChecked)) {
                    radios.add(group[0]);
                    continue;
                }
                first = group[0];
            } else if (masked(el) ? !isFilled(el) : isDefault(el)) {
                continue;
            }
            // Out of allowance: this control again once there is room.
            if (!allowed()) { paced = true; return; }
            if (first) radios.add(first);
            const d = describe(el, path);
            send(d.key, d.fn, d.args, true);
        }
    };
    const index = radioIndexOf(w);
    try {
        for (;;) {
            // Changes the observer has not delivered yet count too.
            if (index.watch.takeRecords().length) index.groups = null;
            inRadioIndex(index, slice);
            if (next >= controls.length) break;
            if (!(await pause())) return;
        }
    } finally {
        index.watch.disconnect();
    }

    if (w.scrollX || w.scrollY) send(`${path}/@scroll`, 'scroll', [Math.round(w.scrollX), Math.round(w.scrollY)], true);
    // Inner scroll positions: the elements the agent saw scroll since the
    // document started (agent.js), not every element of the page.
    const doc = w.document;
    for (const el of scrolledIn(w)) {
        if (!el.isConnected || el.ownerDocument !== doc || el === doc.documentElement || el === doc.body || ours(el)) continue;
        if (!el.scrollTop && !el.scrollLeft) continue;
        while (due() || !allowed()) {
            paced = !due();
            if (!(await pause())) return;
        }
        send(`${path}/${partKey(el)}/@scroll`, 'scroll', [Math.round(el.scrollLeft), Math.round(el.scrollTop)], true);
    }
    if (w === ROOT) sendViewport();
}

function scrolledIn(w) {
    const cb = cbOf(w);
    return cb && cb.scrolled ? [...cb.scrolled] : [];
}

function publish() {
    for (const w of attached.keys()) if (w === ROOT) publishFrame(w);
    for (const w of attached.keys()) if (w !== ROOT) publishFrame(w);
}

const engine = {
    attach(w) {
        const doc = w.document;
        if (doc.readyState === 'loading') doc.addEventListener('DOMContentLoaded', () => attach(w), { once: true });
        else attach(w);
    },
    event(w, kind, detail) {
        if (kind === 'history') onHistory(w, detail);
        else if (kind === 'shadow') {
            const a = attached.get(w);
            if (a) listenRoot(detail, a.off);
        }
    },
    receive,
    publish,
    status() {
        if (CB.operator && !link.mayAct()) for (const w of attached.keys()) markMasked(w);
    },
    tools() {
        overlay().drawing(!!link.tools.draw);
        if (!link.tools.pointer) send(`top/@pointer/${me()}`, 'pointer', [null, null]);
    },
    clear() {
        overlay().clear();
        send('top/@draw', 'clear', [], true);
    },
    stop() {
        stopped = true;
        for (const w of [...attached.keys()]) detach(w);
        stopDetectors();
        if (ov) { ov.remove(); ov = null; }
    },
    // For tests and the console: what the engine sees.
    keyOf(el) { const p = pathOf(el); return p && `${p}/${partKey(el)}`; },
    resolve: resolveKey,
    overlay,
};

for (const w of CB.frames) {
    try { if (!w.closed && cbOf(w)) engine.attach(w); } catch (e) { CB.frames.delete(w); }
}
// Drawing stays on across the operator's page changes.
if (link.tools.draw) overlay().drawing(true);

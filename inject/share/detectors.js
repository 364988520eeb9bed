// Detectors: one per event kind, each turning a local change into
// difference commands (engine.js's `send`). Each listens in the capture
// phase on a document or shadow root (`listenRoot`), and every listener it
// adds is removed again when its frame detaches (the `off` list).

// Events from inside shadow roots are handled by the listener on the
// innermost root that holds their target, once.
function ownTarget(e, R) {
    const t = e.composedPath()[0] || e.target;
    return t && t.getRootNode && t.getRootNode() === R ? t : null;
}

function onControl(e, R) {
    if (applying || stopped) return;
    const el = controlOf(ownTarget(e, R));
    if (!el || ours(el)) return;
    if (e.isComposing) return; // sent at compositionend
    const path = pathOf(el);
    if (!path) return;
    if (CB.operator && (masked(el) || !mayAct())) {
        revert(el, path);
        if (masked(el)) link.notice('That field is private to the customer.');
        return;
    }
    const d = describe(el, path);
    send(d.key, d.fn, d.args);
}

function onComposition(e, R) {
    const el = controlOf(ownTarget(e, R));
    if (!el) return;
    if (e.type === 'compositionstart') composing.add(el);
    else {
        // The committed text is the latest change to the field: it
        // wins over a remote value that arrived during composition.
        composing.delete(el);
        deferred.delete(el);
        onControl(e, R);
    }
}
const composing = new WeakSet();
const deferred = new WeakMap();

// One driver: an operator's link clicks and form submissions are not
// performed where they happen (a second browser would repeat the
// customer's side effects: the POST, the order). They are sent to the
// customer's browser, which performs them; the navigation that
// follows reaches everyone. Each returns true when it took the action
// over (and prevented the local default).
const driverActions = {
    follow(anchor, e) {
        if (e.button !== 0 || e.ctrlKey || e.metaKey || e.shiftKey || e.altKey) return false;
        if (anchor.hasAttribute('download') || (anchor.target || '').toLowerCase() === '_blank') return false;
        const raw = (anchor.getAttribute('href') || '').trim();
        // In-page anchors and script URLs navigate nowhere.
        if (raw.startsWith('#') || /^javascript:/i.test(raw)) return false;
        e.preventDefault();
        const path = pathOf(anchor);
        if (path && mayAct()) send(`${path}/${partKey(anchor)}/@follow`, 'follow', [maskOf(anchor).blankUrl(anchor.href)], true);
        return true;
    },
    submit(form, submitter, e) {
        e.preventDefault();
        const path = pathOf(form);
        const index = submitter ? [...form.elements].indexOf(submitter) : -1;
        if (path && mayAct()) send(`${path}/${partKey(form)}/@submit`, 'submit', [index], true);
        return true;
    },
};

// Submissions without a click (Enter in a lone field, a script's
// requestSubmit) are the operator's too.
function onSubmit(e, R) {
    if (stopped || !CB.operator) return;
    const form = ownTarget(e, R);
    if (!form || form.localName !== 'form' || ours(form)) return;
    // A follower never submits. A script's submission here mirrors
    // one the driver's script makes itself, so only the operator's
    // own is forwarded.
    if (applying || !e.isTrusted) return e.preventDefault();
    driverActions.submit(form, e.submitter || null, e);
}

// Clicks that drive the page's own scripts (menus, tabs, toggles).
// Form controls, links and submissions are shared by their effect
// (value, navigation), so their clicks are not repeated.
function onClick(e, R) {
    if (applying || stopped || !e.isTrusted) return;
    const t = ownTarget(e, R);
    if (!t || t.nodeType !== 1 || ours(t)) return;
    const anchor = t.closest('a[href]');
    if (anchor) {
        // A link the page's script handles itself (tabs, accordions:
        // the default prevented, the URL unchanged) drives the page
        // like a button; a link that navigates is shared by the
        // navigation it makes.
        if (CB.operator && driverActions.follow(anchor, e)) return;
        const w = anchor.ownerDocument.defaultView;
        const before = here(w);
        setTimeout(() => {
            if (!e.defaultPrevented || here(w) !== before || stopped) return;
            const path = pathOf(anchor);
            if (path && mayAct()) send(`${path}/${partKey(t)}/@click`, 'click', [], true);
        }, 0);
        return;
    }
    const submitter = t.closest('button, input[type="submit"], input[type="image"]');
    if (submitter && submitter.form && (submitter.type === 'submit' || submitter.type === 'image')) {
        if (CB.operator) driverActions.submit(submitter.form, submitter, e);
        return;
    }
    if (t.closest('input, select, textarea, label, option, [contenteditable=""], [contenteditable="true"]')) return;
    if (t.localName === 'html' || t.localName === 'body') return;
    // What is chosen inside a masked region (a custom menu) is as
    // private as a masked control's value.
    if (maskOf(t).within(t)) return;
    const path = pathOf(t);
    if (!path || !mayAct()) return;
    send(`${path}/${partKey(t)}/@click`, 'click', [], true);
    sweepSoon(t.ownerDocument.defaultView);
}

// Keyboard-driven apps act on Enter and Escape in a field (add the
// item, cancel the edit). The key goes after the value it acts on.
const DRIVING_KEYS = { Enter: 13, Escape: 27 };
function onKey(e, R) {
    if (applying || stopped || !e.isTrusted || e.isComposing || !(e.key in DRIVING_KEYS)) return;
    const el = controlOf(ownTarget(e, R));
    if (!el || ours(el) || masked(el)) return;
    const path = pathOf(el);
    if (!path || !mayAct(true)) return;
    const d = describe(el, path);
    send(d.key, d.fn, d.args);
    send(`${path}/${partKey(el)}/@key`, 'key', [e.key, e.code], true);
    sweepSoon(el.ownerDocument.defaultView);
}

// Commit events as this browser fired them: a text field's `change`
// (Enter, or leaving a changed field) and leaving any control
// (`blur`), which apps use to add an entry or save an edit in place.
// Followers get values as `input` only, so they fire `change` and
// `blur` exactly when the sender's browser did, once. The page's own
// scripts firing these are repeated by the same scripts there.
function onCommit(e, R) {
    if (applying || stopped || !e.isTrusted) return;
    const el = controlOf(ownTarget(e, R));
    if (!el || !el.isConnected || ours(el) || masked(el)) return;
    if (e.type === 'change' && !commitsByChange(el)) return;
    const path = pathOf(el);
    if (!path || !mayAct(true)) return;
    const args = e.type === 'change' ? ['change', el.value] : ['blur'];
    send(`${path}/${partKey(el)}/@commit`, 'commit', args, true);
}

// The controls whose `change` fires apart from their value changing
// (at commit): inputs shared by `value` and textareas. Selects,
// checkboxes and radios fire it with the change, which the value
// command (or the replayed click) repeats.
function commitsByChange(el) {
    if (el.localName === 'textarea') return true;
    return el.localName === 'input' && !['checkbox', 'radio', 'file'].includes(el.type);
}

// A double click drives the page like a click (edit in place); the
// clicks before it are shared as clicks.
function onDoubleClick(e, R) {
    if (applying || stopped || !e.isTrusted) return;
    const t = ownTarget(e, R);
    if (!t || t.nodeType !== 1 || !t.isConnected || ours(t) || maskOf(t).within(t)) return;
    if (t.localName === 'html' || t.localName === 'body') return;
    const path = pathOf(t);
    if (!path || !mayAct(true)) return;
    send(`${path}/${partKey(t)}/@dblclick`, 'dblclick', [], true);
}

// Widgets change values from their scripts without an input event (a
// spinner's buttons, a custom select menu). After a local click, the
// frame's controls are compared with what was last shared, so the
// store holds the result for those who join later.
function sweepSoon(w) {
    setTimeout(() => {
        const a = attached.get(w);
        if (!a || stopped || !mayAct(true)) return;
        withRadioIndex(w, () => {
            for (const el of allControls(w)) {
                if (ours(el) || (CB.operator && masked(el))) continue;
                const d = describe(el, a.path);
                const was = last.get(d.key);
                if (was === undefined ? (masked(el) ? !isFilled(el) : isDefault(el)) : was === sig(d.fn, d.args)) continue;
                send(d.key, d.fn, d.args);
            }
        });
    }, 50);
}

// Scroll fires many times a frame: one command per animation frame
// with the last position.
const scrollPending = new Map();
let scrollFrame = 0;
function onScroll(e, R) {
    if (stopped) return;
    const t = e.target;
    let key;
    let read;
    if (t.nodeType === 9) {
        const w = t.defaultView;
        const a = attached.get(w);
        if (!a) return;
        key = `${a.path}/@scroll`;
        read = () => [Math.round(w.scrollX), Math.round(w.scrollY)];
    } else {
        if (t.getRootNode() !== R || ours(t)) return;
        const path = pathOf(t);
        if (!path) return;
        key = `${path}/${partKey(t)}/@scroll`;
        read = () => [Math.round(t.scrollLeft), Math.round(t.scrollTop)];
    }
    scrollPending.set(key, read);
    if (!scrollFrame) scrollFrame = ROOT.requestAnimationFrame(flushScroll);
}
function flushScroll() {
    scrollFrame = 0;
    const all = [...scrollPending];
    scrollPending.clear();
    for (const [key, read] of all) {
        const args = read();
        if (last.get(key) === sig('scroll', args)) continue;
        if (!mayAct(true)) continue;
        send(key, 'scroll', args);
    }
}

// Caret and selection of the focused text field, one per participant.
let caretFrame = 0;
function onCaret() {
    if (stopped || caretFrame) return;
    caretFrame = ROOT.requestAnimationFrame(() => {
        caretFrame = 0;
        if (!mayAct(true)) return;
        const key = `top/@caret/${me()}`;
        const el = focusedField();
        if (!el) { send(key, 'caret', [null]); return; }
        const path = pathOf(el);
        if (!path) return;
        send(key, 'caret', [`${path}/${partKey(el)}`, el.selectionStart, el.selectionEnd]);
    });
}
function focusedField() {
    let doc = ROOT.document;
    let el = doc.activeElement;
    // Down through frames and shadow roots to the element with focus.
    for (;;) {
        if (el && (el.localName === 'iframe' || el.localName === 'frame')) {
            try { doc = el.contentDocument; el = doc && doc.activeElement; continue; } catch (e) { return null; }
        }
        const sr = el && shadowRootOf(el);
        if (sr && sr.activeElement) { el = sr.activeElement; continue; }
        break;
    }
    if (!el || ours(el)) return null;
    const textual = el.localName === 'textarea' || (el.localName === 'input' && CARET_TYPES.has(el.type));
    return textual && !masked(el) ? el : null;
}

function onHistory(w, kind) {
    const a = attached.get(w);
    if (!a || stopped) return;
    const url = sharedUrl(w);
    const known = link.known(a.path);
    if (known === url) return;
    if (!mayAct()) {
        // View only: back to the shared page.
        if (known) applyNavigate(w, a.path, [known, 'replace', null]);
        return;
    }
    link.setKnown(a.path, url);
    forget(a.path);
    send(a.path, VOCABULARY.navigate, [url, kind, historyState(w)], true);
}

let resizeFrame = 0;
function onResize() {
    if (resizeFrame) return;
    resizeFrame = ROOT.requestAnimationFrame(() => { resizeFrame = 0; sendViewport(); });
}
function sendViewport() {
    send('top/@viewport', 'viewport', [ROOT.innerWidth, ROOT.innerHeight]);
}

// The shared pointer: one command per animation frame while on.
// Moves in nested frames are mapped to root coordinates when sent
// (once per frame), not on every event.
let mouse = null;
let mouseFrame = 0;
function onMouse(e, w) {
    if (!link.tools.pointer || stopped) return;
    mouse = { w, x: e.clientX, y: e.clientY };
    if (!mouseFrame) {
        mouseFrame = ROOT.requestAnimationFrame(() => {
            mouseFrame = 0;
            let at;
            try { at = toRoot(mouse.w, mouse.x, mouse.y); } catch (err) { return; /* the frame went away */ }
            send(`top/@pointer/${me()}`, 'pointer', at.map(Math.round));
        });
    }
}

// ---- one detector per event kind --------------------------------------------

const CAPTURE = { capture: true, passive: true };

// Each detector adds its listeners to every document and shadow root of a
// frame (`root`) and to the frame itself (`frame`) through `on`, which
// records their removal for when the frame detaches; `stop` drops what it
// has pending (a coalesced send waiting for the next animation frame) when
// the engine stops, so nothing is sent after the session ends. History
// changes reach the engine from the agent's patches (`onHistory`).
const DETECTORS = [
    {
        kind: 'control',
        root(R, on) {
            on(R, 'input', (e) => onControl(e, R), CAPTURE);
            on(R, 'change', (e) => onControl(e, R), CAPTURE);
        },
    },
    {
        kind: 'composition',
        root(R, on) {
            on(R, 'compositionstart', (e) => onComposition(e, R), CAPTURE);
            on(R, 'compositionend', (e) => onComposition(e, R), CAPTURE);
        },
    },
    {
        kind: 'click',
        // An operator's clicks may be taken over for the driver, which
        // needs a listener that can prevent the default.
        root(R, on) { on(R, 'click', (e) => onClick(e, R), CB.operator ? { capture: true } : CAPTURE); },
    },
    {
        kind: 'submit',
        root(R, on) { if (CB.operator) on(R, 'submit', (e) => onSubmit(e, R), { capture: true }); },
    },
    {
        kind: 'key',
        root(R, on) { on(R, 'keydown', (e) => onKey(e, R), CAPTURE); },
    },
    {
        kind: 'commit',
        root(R, on) {
            on(R, 'change', (e) => onCommit(e, R), CAPTURE);
            on(R, 'blur', (e) => onCommit(e, R), CAPTURE);
        },
    },
    {
        kind: 'dblclick',
        root(R, on) { on(R, 'dblclick', (e) => onDoubleClick(e, R), CAPTURE); },
    },
    {
        kind: 'scroll',
        root(R, on) { on(R, 'scroll', (e) => onScroll(e, R), CAPTURE); },
        stop() {
            if (scrollFrame) ROOT.cancelAnimationFrame(scrollFrame);
            scrollFrame = 0;
            scrollPending.clear();
        },
    },
    {
        kind: 'caret',
        root(R, on) { for (const t of ['select', 'keyup', 'mouseup', 'focusin', 'focusout']) on(R, t, onCaret, CAPTURE); },
        frame(w, on) { on(w.document, 'selectionchange', onCaret, { passive: true }); },
        stop() {
            if (caretFrame) ROOT.cancelAnimationFrame(caretFrame);
            caretFrame = 0;
        },
    },
    {
        kind: 'pointer',
        // Followed in every frame, not only the root: a frame's document
        // gets its own mouse events.
        frame(w, on) { on(w.document, 'mousemove', (e) => onMouse(e, w), CAPTURE); },
        stop() {
            if (mouseFrame) ROOT.cancelAnimationFrame(mouseFrame);
            mouseFrame = 0;
        },
    },
    {
        kind: 'viewport',
        frame(w, on) { if (w === ROOT && !CB.operator) on(w, 'resize', onResize, { passive: true }); },
        stop() {
            if (resizeFrame) ROOT.cancelAnimationFrame(resizeFrame);
            resizeFrame = 0;
        },
    },
];

function listen(target, type, fn, opts, off) {
    target.addEventListener(type, fn, opts);
    off.push(() => target.removeEventListener(type, fn, opts));
}

// The detectors' listeners on a document or shadow root of a frame.
function listenRoot(R, off) {
    const on = (target, type, fn, opts) => listen(target, type, fn, opts, off);
    for (const d of DETECTORS) if (d.root) d.root(R, on);
}

// The detectors' listeners on the frame's window and document themselves.
function listenFrame(w, off) {
    const on = (target, type, fn, opts) => listen(target, type, fn, opts, off);
    for (const d of DETECTORS) if (d.frame) d.frame(w, on);
}

function stopDetectors() {
    for (const d of DETECTORS) if (d.stop) d.stop();
}

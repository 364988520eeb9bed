// Appliers: difference commands that arrive are applied so the page's own
// scripts notice them (native setters, then the events a user's change
// fires), with the detectors off while they run (`applying`) and the state
// applied remembered per key (`last`), so nothing echoes back.

// Puts back the shared state of a control the operator may not
// change: what the store holds for it, else its default.
function revert(el, path) {
    const d = describe(el, path);
    const stored = masked(el) ? null : link.stored(d.key).filter((c) => c.key === d.key).pop();
    const w = el.ownerDocument.defaultView;
    applying++;
    try {
        if (stored) {
            last.delete(d.key);
            apply(w, parseKey(d.key), el, stored);
        } else if (el.type === 'checkbox' || el.type === 'radio') {
            for (const r of el.type === 'radio' && el.name ? radioGroup(el) : [el]) setNative(r, 'checked', r.defaultChecked);
            fire(el, 'change');
        } else if (el.localName === 'select') {
            for (const o of el.options) o.selected = o.defaultSelected;
            fire(el, 'change');
        } else if (isControl(el)) {
            applyValue(el, el.defaultValue);
        }
    } finally {
        applying--;
    }
}

// Whether this browser is the driver: the customer's tab that joined
// first (other tabs of the customer follow, like operators).
function drives() {
    if (CB.operator) return false;
    const first = (link.participants || []).find((p) => p.role === 'customer');
    return !first || first.id === link.me;
}

// The driver performs what an operator asked for, as if clicked here.
function perform(el, aspect, [arg]) {
    if (aspect === '@follow') {
        if (el.localName === 'a' || el.localName === 'area') el.click();
        return;
    }
    if (el.localName !== 'form') return;
    const submitter = arg >= 0 ? el.elements[arg] : null;
    if (typeof el.requestSubmit === 'function') el.requestSubmit(submitter && submitter.form === el ? submitter : undefined);
    else el.submit();
}

// The operator's address bar (`go`, docs/agent.md): the driver loads a
// path of this site or moves through its own history, as if the customer
// had; the navigation that follows reaches everyone. A `go` is performed
// once: one seen again (in a replay that resynchronises, on this page or
// the next) is not repeated.
function go(w, [what, url], cmd) {
    const DONE = 'cobrowse.go';
    const seq = cmd.seq;
    let done = link.wentTo || null;
    try { done = JSON.parse(w.sessionStorage.getItem(DONE)) || done; } catch (e) { /* storage off: this page's memory */ }
    if (typeof seq !== 'number' || (done && done.session === cmd.session && seq <= done.seq)) return;
    link.wentTo = { session: cmd.session, seq };
    try { w.sessionStorage.setItem(DONE, JSON.stringify(link.wentTo)); } catch (e) { /* kept on the link */ }
    if (what === 'back') w.history.back();
    else if (what === 'forward') w.history.forward();
    else if (what === 'reload') w.location.reload();
    else if (what === 'load' && onThisSite(w, url)) w.location.assign(url);
    else console.warn('cobrowse: an address off this site was not opened:', JSON.stringify(url));
}

function replayKey(el, [key, code]) {
    const w = el.ownerDocument.defaultView;
    for (const type of ['keydown', 'keyup']) {
        const ev = new w.KeyboardEvent(type, { key, code, bubbles: true, cancelable: true, composed: true });
        // Older libraries read keyCode/which, which the constructor cannot set.
        for (const prop of ['keyCode', 'which']) Object.defineProperty(ev, prop, { get: () => DRIVING_KEYS[key] || 0 });
        el.dispatchEvent(ev);
    }
}

function replayCommit(el, [type, value]) {
    const w = el.ownerDocument.defaultView;
    if (type === 'change') {
        if (!commitsByChange(el)) return;
        // The committed value goes first, so the change carries it
        // even when a value command was deduplicated away.
        if (typeof value === 'string' && el.value !== value) {
            setNative(el, 'value', value);
            fire(el, 'input');
        }
        fire(el, 'change');
        return;
    }
    if (type !== 'blur') return;
    // Where the control has focus here too, it loses it as it did
    // there; otherwise the app still hears that it was left.
    let heard = false;
    const hear = () => { heard = true; };
    el.addEventListener('blur', hear, { once: true });
    if (el.getRootNode().activeElement === el) el.blur();
    el.removeEventListener('blur', hear);
    if (heard) return;
    el.dispatchEvent(new w.FocusEvent('blur', { composed: true }));
    el.dispatchEvent(new w.FocusEvent('focusout', { bubbles: true, composed: true }));
}

// Operators see that a masked field exists, never its value, and
// cannot type into it.
function markMasked(w) {
    for (const el of allControls(w)) if (masked(el)) lock(el);
}

function lock(el) {
    if ('readOnly' in el) el.readOnly = true;
    el.setAttribute('aria-readonly', 'true');
}

function receive(cmd) {
    if (stopped) return;
    const k = parseKey(cmd.key);
    const w = frameWindow(k.frame);
    if (!w || !attached.has(w)) return; // applied from the store once it attaches
    const el = k.part.length ? resolvePart(w.document, k.part) : null;
    if (el && composing.has(el) && cmd.fn !== 'caret') { deferred.set(el, cmd); return; }
    last.set(cmd.key, sig(cmd.fn, cmd.args));
    applying++;
    try {
        apply(w, k, el, cmd);
    } catch (e) {
        console.warn('cobrowse: could not apply', cmd.key, cmd.fn, e);
    } finally {
        applying--;
    }
}

function fire(el, type) {
    const w = el.ownerDocument.defaultView;
    el.dispatchEvent(new w.Event(type, { bubbles: true, composed: type === 'input' }));
}

// Through the prototype's setter, so frameworks that track the value
// on the instance (React) see a change.
function setNative(el, prop, value) {
    const w = el.ownerDocument.defaultView;
    const proto = el.localName === 'textarea' ? w.HTMLTextAreaElement.prototype
        : el.localName === 'select' ? w.HTMLSelectElement.prototype : w.HTMLInputElement.prototype;
    Object.getOwnPropertyDescriptor(proto, prop).set.call(el, value);
}

function applyValue(el, value) {
    if (el.value === value) return;
    const focused = el.getRootNode().activeElement === el;
    let start = null;
    let end = null;
    if (focused) {
        try { start = el.selectionStart; end = el.selectionEnd; } catch (e) { /* no selection on this type */ }
    }
    setNative(el, 'value', value);
    if (focused && start != null) {
        const n = String(value).length;
        try { el.setSelectionRange(Math.min(start, n), Math.min(end, n)); } catch (e) { /* no selection */ }
    }
    fire(el, 'input');
    // A text field's `change` is a commit of its own (`@commit`).
    if (!commitsByChange(el)) fire(el, 'change');
}

function apply(w, k, el, cmd) {
    const a = attached.get(w);
    const aspect = k.aspect[0];
    const args = cmd.args || [];
    if (cmd.fn === VOCABULARY.navigate && !k.part.length) return applyNavigate(w, a.path, args);
    if (aspect === '@scroll' && cmd.fn === 'scroll') {
        // Instant even where the site asks for smooth scrolling: the
        // positions an animation passes through would be shared back.
        const to = { left: args[0], top: args[1], behavior: 'instant' };
        if (k.part.length) { if (el) el.scrollTo(to); } else w.scrollTo(to);
        return;
    }
    if (aspect === '@viewport') return;
    if (aspect === '@caret') return showCaret(k.aspect[1], args);
    if (aspect === '@pointer') return overlay().pointer(k.aspect[1], args);
    if (aspect === '@draw') return cmd.fn === 'clear' ? overlay().clear() : overlay().stroke(cmd.key, k.aspect[1], args);
    if (aspect === '@click') { if (el) press(el); return; }
    if (aspect === '@follow' || aspect === '@submit') { if (el && drives()) perform(el, aspect, args); return; }
    if (aspect === '@go' && !k.part.length) { if (drives()) go(w, args, cmd); return; }
    if (aspect === '@key') { if (el && !masked(el)) replayKey(el, args); return; }
    if (aspect === '@commit') { if (el && !masked(el)) replayCommit(el, args); return; }
    if (aspect === '@dblclick') { if (el) pressTwice(el); return; }
    if (!el) return;
    if (cmd.fn === 'masked') {
        // Masked on the driver's page (a field a secret was pasted
        // into, say): masked here too, for the life of this page.
        maskOf(el).keep(el);
        if (CB.operator) {
            lock(el);
            overlay().badge(el, args[0] ? 'Private field: filled' : 'Private field: empty', cmd.key);
        }
        return;
    }
    // Values for masked fields are never applied on the customer's side.
    if (masked(el)) return;
    switch (cmd.fn) {
        case 'value':
            if (isControl(el)) applyValue(el, String(args[0] ?? ''));
            break;
        case 'check':
            if (el.checked !== !!args[0]) el.click();
            break;
        case 'radio': {
            const group = radioGroup(el);
            let on = group[args[1]];
            if (!on || on.value !== args[0]) on = group.find((r) => r.value === args[0]);
            if (on) { if (!on.checked) on.click(); } else {
                for (const r of group) if (r.checked) { setNative(r, 'checked', false); fire(r, 'change'); }
            }
            break;
        }
        case 'select':
            for (const o of el.options) o.selected = args[0].includes(o.value);
            fire(el, 'input');
            fire(el, 'change');
            break;
        case 'files':
            overlay().badge(el, args[0].length ? `Chosen: ${args[0].join(', ')}` : '', cmd.key);
            break;
        case 'html':
            if (el.innerHTML !== args[0]) {
                el.innerHTML = sanitize(w, args[0]);
                fire(el, 'input');
            }
            break;
        default:
            break;
    }
}

// A click as the page's scripts see one: widgets act on the press
// (spinners, drag handles) as often as on the click.
function press(el) {
    const w = el.ownerDocument.defaultView;
    const r = el.getBoundingClientRect();
    const at = { bubbles: true, cancelable: true, composed: true, view: w, button: 0, clientX: r.left + r.width / 2, clientY: r.top + r.height / 2 };
    const Pointer = w.PointerEvent || w.MouseEvent;
    el.dispatchEvent(new Pointer('pointerdown', { ...at, buttons: 1, pointerId: 1, isPrimary: true }));
    el.dispatchEvent(new w.MouseEvent('mousedown', { ...at, buttons: 1 }));
    el.dispatchEvent(new Pointer('pointerup', { ...at, pointerId: 1, isPrimary: true }));
    el.dispatchEvent(new w.MouseEvent('mouseup', at));
    el.click();
}

function pressTwice(el) {
    const w = el.ownerDocument.defaultView;
    const r = el.getBoundingClientRect();
    el.dispatchEvent(new w.MouseEvent('dblclick', { bubbles: true, cancelable: true, composed: true, view: w, detail: 2, button: 0, clientX: r.left + r.width / 2, clientY: r.top + r.height / 2 }));
}

// Which document each frame shows, kept on the link so it outlives
// this page's agent.
function shownDocs() {
    if (!link.shownDocs) link.shownDocs = new Map();
    return link.shownDocs;
}

// A navigation is applied only to a path on the site `w` shows (the hub's
// rule, `sitePath` in hub.js).
function onThisSite(w, url) {
    return sitePath(url, w.location.href);
}

function applyNavigate(w, path, [url, how, state, doc]) {
    if (!onThisSite(w, url)) {
        console.warn('cobrowse: a navigation off this site was not applied:', JSON.stringify(url));
        return;
    }
    link.setKnown(path, url);
    forget(path);
    const fresh = how === 'load' && doc && shownDocs().get(path) !== doc;
    if (doc) shownDocs().set(path, doc);
    // The driver's own URL may carry masked values its shared form
    // has blanked: either form is this page.
    if (here(w) === url || sharedUrl(w) === url) {
        // Same URL, new document: load it again (a follower's load is
        // a GET, answered with the driver's kept document).
        if (fresh) w.location.reload();
        return;
    }
    const cb = cbOf(w);
    const base = (u) => u.split('#')[0];
    if (how === 'load' || !cb) { w.location.replace(url); return; }
    if (how === 'hash' && base(url) === base(sharedUrl(w)) && url.includes('#')) {
        w.location.hash = url.slice(url.indexOf('#'));
        return;
    }
    // History navigation inside a single-page app: change the URL the
    // way the app did, then tell its router as the browser would.
    const push = how === 'replace' ? cb.nativeReplaceState : cb.nativePushState;
    push.call(w.history, state ?? null, '', url);
    w.dispatchEvent(new w.PopStateEvent('popstate', { state: state ?? null }));
}

// Remote HTML for a contenteditable region: keep the markup, drop
// anything that would run.
function sanitize(w, html) {
    const t = w.document.createElement('template');
    t.innerHTML = html;
    for (const bad of t.content.querySelectorAll('script, iframe, object, embed, style, link, meta')) bad.remove();
    for (const el of t.content.querySelectorAll('*')) {
        for (const at of [...el.attributes]) {
            if (/^on/i.test(at.name) || /^\s*javascript:/i.test(at.value)) el.removeAttribute(at.name);
        }
    }
    return t.innerHTML;
}

function showCaret(who, [key, start, end]) {
    const el = key ? resolveKey(key) : null;
    overlay().caret(who, el, start, end);
    if (!el || el.getRootNode().activeElement === el) return;
    try { el.setSelectionRange(start, end); } catch (e) { /* not a text field */ }
}

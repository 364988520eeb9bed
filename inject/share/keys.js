// Keys (docs/protocol.md, "Keys"): the frame path of a window, the part of
// an element within its document, and the way back from a key to the
// window and element it names on this terminal. The same document gives the
// same key on every terminal, so a command finds the same element.

const enc = encodeURIComponent;
const dec = decodeURIComponent;

function cbOf(w) {
    try { return w.__cobrowse || null; } catch (e) { return null; }
}

function framePath(w) {
    if (w === ROOT) return 'top';
    let fe;
    try { fe = w.frameElement; } catch (e) { return null; }
    if (!fe) return null;
    const parent = framePath(w.parent);
    return parent && `${parent}/${frameSegment(fe)}`;
}

// A frame inside a shadow root is named within that root, after its
// host's part and `#shadow`, so it resolves through the same host on
// every terminal (closed roots too: the agent recorded them).
function frameSegment(fe) {
    const R = fe.getRootNode();
    const host = R.host ? `${partKey(R.host)}/#shadow/` : '';
    const tag = fe.localName;
    if (fe.id) return `${host}${tag}#${enc(fe.id)}`;
    const name = fe.getAttribute('name');
    if (name) return `${host}${tag}[name=${enc(name)}]`;
    return `${host}${tag}[${[...R.querySelectorAll('iframe,frame')].indexOf(fe)}]`;
}

const FRAME_SEG = /^(iframe|frame)(#|\[)/;

// Where the next frame level of `segs` from `i` ends: right after a
// frame segment, or after a host's part, `#shadow` and a frame
// segment; -1 when the rest is not a frame level.
function frameLevelEnd(segs, i) {
    if (i < segs.length && FRAME_SEG.test(segs[i])) return i + 1;
    for (let j = i; j < segs.length - 1 && !segs[j].startsWith('@'); j++) {
        if (segs[j] === '#shadow' && FRAME_SEG.test(segs[j + 1])) return j > i ? j + 2 : -1;
    }
    return -1;
}

// Splits a key into frame path, part segments and aspect (`@scroll`,
// `@caret/p3`...).
function parseKey(key) {
    const segs = key.split('/');
    let i = 1;
    for (let end; (end = frameLevelEnd(segs, i)) > 0;) i = end;
    const frame = segs.slice(0, i).join('/');
    let j = i;
    while (j < segs.length && !segs[j].startsWith('@')) j++;
    return { frame, part: segs.slice(i, j), aspect: segs.slice(j) };
}

function uniqueId(R, id) {
    try { return R.querySelectorAll(`#${CSS.escape(id)}`).length === 1; } catch (e) { return false; }
}

const NAMED = new Set(['input', 'select', 'textarea', 'form', 'button', 'iframe', 'object', 'output', 'fieldset']);

function siblingIndex(el) {
    let n = 0;
    for (let s = el.previousElementSibling; s; s = s.previousElementSibling) if (s.localName === el.localName) n++;
    return n;
}

// The element's part: from the nearest anchor (an id, a name within
// its form, the body) down by position among same-tag siblings.
function pathWithin(el, R) {
    const segs = [];
    for (let cur = el; cur; cur = cur.parentElement) {
        const tag = cur.localName;
        if (cur.id && uniqueId(R, cur.id)) { segs.unshift(`${tag}#${enc(cur.id)}`); break; }
        const name = NAMED.has(tag) && cur.getAttribute('name');
        if (name) {
            const form = tag !== 'form' && cur.form && cur.form.getRootNode() === R && cur.form.contains(cur) ? cur.form : null;
            const scope = form || R;
            const same = [...scope.querySelectorAll(`${tag}[name="${CSS.escape(name)}"]`)];
            let seg = `${tag}[name=${enc(name)}]`;
            if (same.length > 1 && cur.type !== 'radio') seg += `[${same.indexOf(cur)}]`;
            segs.unshift(seg);
            if (form) segs.unshift(...pathWithin(form, R).split('/'));
            break;
        }
        if (tag === 'body' || tag === 'head' || tag === 'html') { segs.unshift(tag); break; }
        segs.unshift(`${tag}[${siblingIndex(cur)}]`);
    }
    return segs.join('/');
}

function partKey(el) {
    const R = el.getRootNode();
    if (R.host) return `${partKey(R.host)}/#shadow/${pathWithin(el, R)}`;
    return pathWithin(el, R);
}

function shadowRootOf(host) {
    if (host.shadowRoot) return host.shadowRoot;
    const cb = cbOf(host.ownerDocument.defaultView);
    return cb ? cb.shadowOf.get(host) || null : null;
}

function resolvePart(doc, segs) {
    let R = doc;
    let ctx = doc;
    let el = null;
    for (let i = 0; i < segs.length; i++) {
        const seg = segs[i];
        if (seg === '#shadow') {
            if (!el) return null;
            R = ctx = shadowRootOf(el);
            if (!R) return null;
            el = null;
            continue;
        }
        let m;
        if ((m = /^([^#[\]]+)#(.+)$/.exec(seg))) {
            el = R.getElementById ? R.getElementById(dec(m[2])) : R.querySelector(`#${CSS.escape(dec(m[2]))}`);
        } else if ((m = /^([^#[\]]+)\[name=([^\]]*)\](?:\[(\d+)\])?$/.exec(seg))) {
            const list = ctx.querySelectorAll(`${m[1]}[name="${CSS.escape(dec(m[2]))}"]`);
            el = list[m[3] ? +m[3] : 0] || null;
        } else if ((m = /^([^#[\]]+)\[(\d+)\]$/.exec(seg))) {
            el = [...ctx.children].filter((c) => c.localName === m[1])[+m[2]] || null;
        } else if (seg === 'body' || seg === 'head' || seg === 'html') {
            el = seg === 'html' ? doc.documentElement : doc[seg];
        } else {
            return null;
        }
        if (!el) return null;
        ctx = el;
    }
    return el;
}

function frameWindow(path) {
    const segs = path.split('/');
    let w = ROOT;
    for (let i = 1; i < segs.length;) {
        const end = frameLevelEnd(segs, i);
        if (end < 0) return null;
        let scope = w.document;
        if (end - i > 1) {
            // A frame in a shadow root: find the host, then its root.
            const host = resolvePart(w.document, segs.slice(i, end - 2));
            scope = host && shadowRootOf(host);
            if (!scope) return null;
        }
        const seg = segs[end - 1];
        let fe;
        let m;
        if ((m = /^(\w+)#(.+)$/.exec(seg))) fe = scope.getElementById(dec(m[2]));
        else if ((m = /^(\w+)\[name=(.*)\]$/.exec(seg))) fe = scope.querySelector(`${m[1]}[name="${CSS.escape(dec(m[2]))}"]`);
        else if ((m = /^(\w+)\[(\d+)\]$/.exec(seg))) fe = scope.querySelectorAll('iframe,frame')[+m[2]];
        if (!fe || !fe.contentWindow) return null;
        w = fe.contentWindow;
        i = end;
    }
    return w;
}

function pathOf(node) {
    const w = node.ownerDocument ? node.ownerDocument.defaultView : node.defaultView;
    const a = w && attached.get(w);
    return a ? a.path : null;
}

function resolveKey(key) {
    const k = parseKey(key);
    const w = frameWindow(k.frame);
    return w && attached.has(w) ? resolvePart(w.document, k.part) : null;
}

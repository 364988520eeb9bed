// The sharing engine, loaded by agent.js when a session starts (a customer's
// call or resume, an operator's content frame). It runs in the root window of
// the shared page tree and works on every same-origin frame below it:
// detecting local changes, turning them into difference commands keyed by
// frame path and part (docs/protocol.md, "Keys"), and applying the commands
// that arrive so the page's own scripts notice them.
(function share() {
    'use strict';
    const CB = window.__cobrowse;
    if (!CB || CB.engineFactory) return;
    const CONFIG = CB.config;
    const enc = encodeURIComponent;
    const dec = decodeURIComponent;
    const PALETTE = ['#d7263d', '#1b7f5f', '#2e5fab', '#c25a00', '#7b2cbf', '#00838f'];
    const FADE_MS = 3000;

    CB.engineFactory = function engineFactory(ROOT, link) {
        // ---- keys -----------------------------------------------------------

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

        // ---- what is shared ---------------------------------------------------

        const TEXTLESS = new Set(['button', 'submit', 'reset', 'image', 'hidden']);
        // The input types with a selection API (email and number have none).
        const CARET_TYPES = new Set(['text', 'search', 'url', 'tel', 'password']);

        function isControl(el) {
            if (!el || el.nodeType !== 1) return false;
            const tag = el.localName;
            if (tag === 'input') return !TEXTLESS.has(el.type);
            return tag === 'textarea' || tag === 'select';
        }

        // The element whose state an event changed: a form control, or the
        // editing host of a contenteditable region.
        function controlOf(node) {
            if (!node || node.nodeType !== 1) return null;
            if (isControl(node)) return node;
            return node.isContentEditable ? CB.mask.editingHost(node) : null;
        }

        // The masking rule of the document that holds `node` (mask.js): each
        // document's agent has followed its elements since it started, so
        // an element masked once stays masked.
        function maskOf(node) {
            const doc = node.nodeType === 9 ? node : node.ownerDocument;
            const cb = doc && cbOf(doc.defaultView);
            return (cb && cb.mask) || CB.mask;
        }

        function masked(el) {
            if (maskOf(el).masked(el)) return true;
            // A radio group is one key: masked when any of its radios is.
            return el.localName === 'input' && el.type === 'radio' && !!el.name && radioGroup(el).some((r) => maskOf(r).masked(r));
        }

        function radioGroup(el) {
            const R = el.getRootNode();
            const scope = el.form && el.form.getRootNode() === R ? el.form : R;
            return [...scope.querySelectorAll(`input[type="radio"][name="${CSS.escape(el.name)}"]`)];
        }

        // A control's state as a command: key, fn, args.
        function describe(el, path) {
            const key = `${path}/${partKey(el)}`;
            if (masked(el)) return { key, fn: 'masked', args: [isFilled(el)] };
            if (el.isContentEditable && !isControl(el)) return { key, fn: 'html', args: [el.innerHTML] };
            if (el.localName === 'input') {
                if (el.type === 'checkbox') return { key, fn: 'check', args: [el.checked] };
                if (el.type === 'radio') {
                    if (!el.name) return { key, fn: 'check', args: [el.checked] };
                    // One key per group (its first radio's), naming the
                    // checked one by value and by place: values need not be
                    // unique (without a value attribute every radio says "on").
                    const group = radioGroup(el);
                    const i = group.findIndex((r) => r.checked);
                    return { key: `${path}/${partKey(group[0])}`, fn: 'radio', args: [i >= 0 ? group[i].value : null, i] };
                }
                if (el.type === 'file') return { key, fn: 'files', args: [[...(el.files || [])].map((f) => f.name)] };
            }
            if (el.localName === 'select' && el.multiple) {
                return { key, fn: 'select', args: [[...el.options].filter((o) => o.selected).map((o) => o.value)] };
            }
            return { key, fn: 'value', args: [el.value] };
        }

        function isFilled(el) {
            return el.isContentEditable && !isControl(el) ? el.textContent !== '' : el.value !== '';
        }

        function isDefault(el) {
            if (el.isContentEditable && !isControl(el)) return true;
            if (el.localName === 'select') return [...el.options].every((o) => o.selected === o.defaultSelected || (!el.multiple && o.index === 0 && o.selected && !el.querySelector('option[selected]')));
            if (el.type === 'checkbox' || el.type === 'radio') return el.checked === el.defaultChecked;
            if (el.type === 'file') return !el.files || el.files.length === 0;
            return el.value === el.defaultValue;
        }

        // ---- sending ---------------------------------------------------------

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

        function send(key, fn, args, force) {
            const s = sig(fn, args);
            if (!force && last.get(key) === s) return;
            last.set(key, s);
            link.send({ key, fn, args });
        }

        function forget(prefix) {
            for (const k of [...last.keys()]) if (k.startsWith(prefix + '/')) last.delete(k);
        }

        function here(w) {
            const l = w.location;
            return l.pathname + l.search + l.hash;
        }

        // The frame's URL as it is shared: parameters that carry masked
        // fields' values keep their names with empty values.
        function sharedUrl(w) {
            return maskOf(w.document).blankUrl(here(w));
        }

        function historyState(w) {
            try {
                const s = w.history.state;
                return s === undefined ? null : maskOf(w.document).scrub(JSON.parse(JSON.stringify(s)));
            } catch (e) {
                return null;
            }
        }

        const me = () => link.me || link.role;

        // Operators act only with the customer's permission; the hub refuses
        // the command anyway, this just says why at once.
        function mayAct(quiet) {
            if (link.mayAct()) return true;
            if (!quiet) link.notice('View only: the customer has not given you control.');
            return false;
        }

        // ---- detectors ---------------------------------------------------------

        function pathOf(node) {
            const w = node.ownerDocument ? node.ownerDocument.defaultView : node.defaultView;
            const a = w && attached.get(w);
            return a ? a.path : null;
        }

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

        // The operator's address bar (`go`, docs/agent.md): the driver
        // loads a path of this site or moves through its own history, as if
        // the customer had; the navigation that follows reaches everyone.
        // A `go` is performed once: one seen again (in a replay that
        // resynchronises, on this page or the next) is not repeated.
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

        function replayKey(el, [key, code]) {
            const w = el.ownerDocument.defaultView;
            for (const type of ['keydown', 'keyup']) {
                const ev = new w.KeyboardEvent(type, { key, code, bubbles: true, cancelable: true, composed: true });
                // Older libraries read keyCode/which, which the constructor cannot set.
                for (const prop of ['keyCode', 'which']) Object.defineProperty(ev, prop, { get: () => DRIVING_KEYS[key] || 0 });
                el.dispatchEvent(ev);
            }
        }

        // Widgets change values from their scripts without an input event (a
        // spinner's buttons, a custom select menu). After a local click, the
        // frame's controls are compared with what was last shared, so the
        // store holds the result for those who join later.
        function sweepSoon(w) {
            setTimeout(() => {
                const a = attached.get(w);
                if (!a || stopped || !mayAct(true)) return;
                for (const el of allControls(w)) {
                    if (ours(el) || (CB.operator && masked(el))) continue;
                    const d = describe(el, a.path);
                    const was = last.get(d.key);
                    if (was === undefined ? (masked(el) ? !isFilled(el) : isDefault(el)) : was === sig(d.fn, d.args)) continue;
                    send(d.key, d.fn, d.args);
                }
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
            send(a.path, 'navigate', [url, kind, historyState(w)], true);
        }

        // Our own elements (widget, overlay) are not part of the page.
        function ours(el) {
            const top = el.getRootNode().host || el;
            return !!(top.closest && top.closest('cobrowse-widget, cobrowse-overlay'));
        }

        function listen(target, type, fn, opts, off) {
            target.addEventListener(type, fn, opts);
            off.push(() => target.removeEventListener(type, fn, opts));
        }

        function listenRoot(R, off) {
            const cap = { capture: true, passive: true };
            listen(R, 'input', (e) => onControl(e, R), cap, off);
            listen(R, 'change', (e) => onControl(e, R), cap, off);
            listen(R, 'compositionstart', (e) => onComposition(e, R), cap, off);
            listen(R, 'compositionend', (e) => onComposition(e, R), cap, off);
            // An operator's clicks and submissions may be taken over for the
            // driver, which needs a listener that can prevent the default.
            listen(R, 'click', (e) => onClick(e, R), CB.operator ? { capture: true } : cap, off);
            if (CB.operator) listen(R, 'submit', (e) => onSubmit(e, R), { capture: true }, off);
            listen(R, 'keydown', (e) => onKey(e, R), cap, off);
            listen(R, 'scroll', (e) => onScroll(e, R), cap, off);
            for (const t of ['select', 'keyup', 'mouseup', 'focusin', 'focusout']) listen(R, t, onCaret, cap, off);
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
            listen(doc, 'selectionchange', onCaret, { passive: true }, off);
            listen(w, 'pagehide', () => detach(w), {}, off);
            const cb = cbOf(w);
            for (const R of cb ? cb.shadows : []) listenRoot(R, off);
            // The pointer is followed in every frame, not only the root:
            // a frame's document gets its own mouse events.
            listen(doc, 'mousemove', (e) => onMouse(e, w), { capture: true, passive: true }, off);
            if (w === ROOT && !CB.operator) listen(w, 'resize', onResize, { passive: true }, off);

            if (CB.operator) {
                const url = sharedUrl(w);
                const known = link.known(path);
                if (known != null && known !== url) {
                    // The operator navigated this frame.
                    if (mayAct()) {
                        link.setKnown(path, url);
                        send(path, 'navigate', [url, 'load', null], true);
                    } else if (onThisSite(w, known)) {
                        w.location.replace(known);
                    }
                    return;
                }
                // The document shown is the one the stored navigation named.
                const nav = link.stored(path).find((c) => c.key === path && c.fn === 'navigate');
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
                if (cmd.fn === 'navigate') continue;
                if (parseKey(cmd.key).frame !== path) continue;
                receive(cmd);
            }
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

        function allControls(w) {
            const roots = [w.document, ...((cbOf(w) || {}).shadows || [])];
            const out = [];
            for (const R of roots) out.push(...R.querySelectorAll('input, textarea, select, [contenteditable]'));
            return out.filter((el) => controlOf(el) === el);
        }

        // ---- publishing the customer's page ------------------------------------

        function publishFrame(w) {
            const a = attached.get(w);
            if (!a) return;
            const path = a.path;
            const url = sharedUrl(w);
            link.setKnown(path, url);
            forget(path);
            send(path, 'navigate', [url, 'load', historyState(w), a.doc], true);
            const radios = new Set();
            for (const el of allControls(w)) {
                if (ours(el)) continue;
                if (el.type === 'radio' && el.name) {
                    const group = radioGroup(el);
                    if (radios.has(group[0])) continue;
                    radios.add(group[0]);
                    if (group.every((r) => r.checked === r.defaultChecked)) continue;
                } else if (masked(el) ? !isFilled(el) : isDefault(el)) {
                    continue;
                }
                const d = describe(el, path);
                send(d.key, d.fn, d.args, true);
            }
            if (w.scrollX || w.scrollY) send(`${path}/@scroll`, 'scroll', [Math.round(w.scrollX), Math.round(w.scrollY)], true);
            for (const el of w.document.querySelectorAll('*')) {
                if ((el.scrollTop || el.scrollLeft) && el !== w.document.documentElement && el !== w.document.body && !ours(el)) {
                    send(`${path}/${partKey(el)}/@scroll`, 'scroll', [Math.round(el.scrollLeft), Math.round(el.scrollTop)], true);
                }
            }
            if (w === ROOT) sendViewport();
        }

        function publish() {
            for (const w of attached.keys()) if (w === ROOT) publishFrame(w);
            for (const w of attached.keys()) if (w !== ROOT) publishFrame(w);
        }

        let resizeFrame = 0;
        function onResize() {
            if (resizeFrame) return;
            resizeFrame = ROOT.requestAnimationFrame(() => { resizeFrame = 0; sendViewport(); });
        }
        function sendViewport() {
            send('top/@viewport', 'viewport', [ROOT.innerWidth, ROOT.innerHeight]);
        }

        // ---- applying -----------------------------------------------------------

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
            fire(el, 'change');
        }

        function apply(w, k, el, cmd) {
            const a = attached.get(w);
            const aspect = k.aspect[0];
            const args = cmd.args || [];
            if (cmd.fn === 'navigate' && !k.part.length) return applyNavigate(w, a.path, args);
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

        // Which document each frame shows, kept on the link so it outlives
        // this page's agent.
        function shownDocs() {
            if (!link.shownDocs) link.shownDocs = new Map();
            return link.shownDocs;
        }

        // Whether `url` is a path on the site `w` shows: the only kind of
        // URL a navigation command may load, whoever sent it (never a
        // `javascript:` URL or another site). The hub refuses other targets
        // (`navigation_target` in src/hub/protocol.rs); this is the same rule
        // where it is applied. Tabs and newlines vanish in URL parsing
        // (`/\t/evil.example` is `//evil.example`), so the URL is parsed,
        // never compared as text alone.
        function onThisSite(w, url) {
            if (typeof url !== 'string' || url[0] !== '/' || /[\u0000-\u0020\u007f]/.test(url)) return false;
            try { return new w.URL(url, w.location.href).origin === w.location.origin; } catch (e) { return false; }
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

        function resolveKey(key) {
            const k = parseKey(key);
            const w = frameWindow(k.frame);
            return w && attached.has(w) ? resolvePart(w.document, k.part) : null;
        }

        function showCaret(who, [key, start, end]) {
            const el = key ? resolveKey(key) : null;
            overlay().caret(who, el, start, end);
            if (!el || el.getRootNode().activeElement === el) return;
            try { el.setSelectionRange(start, end); } catch (e) { /* not a text field */ }
        }

        // ---- pointer, drawing, badges: one overlay over the root document ----

        function colorOf(id) {
            const i = link.participants.findIndex((p) => p.id === id);
            let h = 0;
            for (const c of String(id)) h = (h * 31 + c.charCodeAt(0)) >>> 0;
            return PALETTE[(i >= 0 ? i : h) % PALETTE.length];
        }
        function nameOf(id) {
            const p = link.participants.find((x) => x.id === id);
            return p ? p.name || (p.role === 'customer' ? 'Customer' : 'Operator') : 'Someone';
        }

        // A point in frame `w`'s viewport in the root document's coordinates:
        // each frame element's box (border and padding included) up to the
        // root, then the root's scroll. Pointer and drawing keys stay in
        // root coordinates, so every frame's pointer lands on the same spot.
        function toRoot(w, x, y) {
            while (w !== ROOT && w.frameElement) {
                const fe = w.frameElement;
                const fr = fe.getBoundingClientRect();
                const cs = w.parent.getComputedStyle(fe);
                x += fr.left + fe.clientLeft + (parseFloat(cs.paddingLeft) || 0);
                y += fr.top + fe.clientTop + (parseFloat(cs.paddingTop) || 0);
                w = w.parent;
            }
            return [x + ROOT.scrollX, y + ROOT.scrollY];
        }

        function docOffset(el) {
            const r = el.getBoundingClientRect();
            const [x, y] = toRoot(el.ownerDocument.defaultView, r.left, r.top);
            return { x, y, w: r.width, h: r.height };
        }

        let ov = null;
        function overlay() {
            if (ov) return ov;
            const doc = ROOT.document;
            const host = doc.createElement('cobrowse-overlay');
            host.setAttribute('data-cobrowse', 'overlay');
            host.setAttribute('aria-hidden', 'true');
            host.style.cssText = 'all:initial;position:absolute;left:0;top:0;width:0;height:0;overflow:visible;z-index:2147483646;pointer-events:none;';
            const root = CB.nativeAttachShadow.call(host, { mode: 'open' });
            root.innerHTML = `<style>
:host { all: initial; }
svg { position: absolute; left: 0; top: 0; overflow: visible; pointer-events: none; }
.pointer { position: absolute; pointer-events: none; transform: translate(-50%, -50%); }
.pointer i { display: block; width: 14px; height: 14px; border-radius: 50%; border: 2px solid #fff; box-shadow: 0 0 0 1px rgba(0,0,0,.4); }
.pointer span, .badge, .caret span { font: 12px/1.3 system-ui, sans-serif; color: #fff; padding: 1px 5px; border-radius: 4px; white-space: nowrap; }
.pointer span { position: absolute; left: 12px; top: 10px; }
.caret { position: absolute; border: 2px solid; border-radius: 3px; pointer-events: none; }
.caret span { position: absolute; left: -2px; top: -18px; }
.badge { position: absolute; background: #444c5c; pointer-events: none; }
.capture { position: fixed; inset: 0; pointer-events: auto; cursor: crosshair; background: transparent; }
[hidden] { display: none; }
</style><svg data-cobrowse="ink" width="0" height="0"></svg><div class="capture" data-cobrowse="canvas" hidden></div>`;
            doc.documentElement.appendChild(host);
            const svg = root.querySelector('svg');
            const capture = root.querySelector('.capture');
            const pointers = new Map();
            const carets = new Map();
            const badges = new Map();
            const NS = 'http://www.w3.org/2000/svg';

            function polyline(points, color) {
                const p = doc.createElementNS(NS, 'polyline');
                p.setAttribute('points', points.map(([x, y]) => `${x},${y}`).join(' '));
                p.setAttribute('fill', 'none');
                p.setAttribute('stroke', color);
                p.setAttribute('stroke-width', '3');
                p.setAttribute('stroke-linecap', 'round');
                p.setAttribute('stroke-linejoin', 'round');
                svg.appendChild(p);
                return p;
            }

            // Free drawing: the capture layer takes the mouse while drawing is on.
            let stroke = null;
            capture.addEventListener('pointerdown', (e) => {
                capture.setPointerCapture(e.pointerId);
                stroke = { points: [[Math.round(e.clientX + ROOT.scrollX), Math.round(e.clientY + ROOT.scrollY)]] };
                stroke.el = polyline(stroke.points, colorOf(me()));
            });
            capture.addEventListener('pointermove', (e) => {
                if (!stroke) return;
                stroke.points.push([Math.round(e.clientX + ROOT.scrollX), Math.round(e.clientY + ROOT.scrollY)]);
                stroke.el.setAttribute('points', stroke.points.map(([x, y]) => `${x},${y}`).join(' '));
            });
            const finish = () => {
                if (!stroke) return;
                const s = stroke;
                stroke = null;
                const fade = !!(link.tools.fade);
                const key = `top/@draw/${me()}/${Date.now().toString(36)}${(strokeN++).toString(36)}`;
                s.el.setAttribute('data-key', key);
                if (fade) fadeOut(s.el, Date.now());
                send(key, 'draw', [s.points, colorOf(me()), fade, Date.now()], true);
            };
            capture.addEventListener('pointerup', finish);
            capture.addEventListener('pointercancel', finish);

            function fadeOut(el, t) {
                const left = FADE_MS - (Date.now() - t);
                if (left <= 0) { el.remove(); return; }
                el.style.transition = `opacity ${left}ms linear`;
                requestAnimationFrame(() => { el.style.opacity = '0'; });
                setTimeout(() => el.remove(), left);
            }

            function place(el, x, y) {
                el.style.left = `${x}px`;
                el.style.top = `${y}px`;
            }

            // The mark `map` keeps for `id` (a pointer, a caret, a badge),
            // made the first time it is needed.
            function mark(map, id, className, hook, inner) {
                let m = map.get(id);
                if (!m) {
                    m = doc.createElement('div');
                    m.className = className;
                    m.setAttribute('data-cobrowse', hook);
                    m.innerHTML = inner;
                    root.appendChild(m);
                    map.set(id, m);
                }
                return m;
            }
            function unmark(map, id) {
                const m = map.get(id);
                if (m) { m.remove(); map.delete(id); }
            }

            ov = {
                host,
                drawing(on) { capture.hidden = !on; },
                pointer(id, [x, y]) {
                    if (x == null) return unmark(pointers, id);
                    const p = mark(pointers, id, 'pointer', 'remote-pointer', '<i></i><span></span>');
                    const color = colorOf(id);
                    p.dataset.participant = id;
                    p.querySelector('i').style.background = color;
                    const label = p.querySelector('span');
                    label.style.background = color;
                    label.textContent = nameOf(id);
                    place(p, x, y);
                },
                stroke(key, id, [points, color, fade, t]) {
                    if (fade && Date.now() - t > FADE_MS) return;
                    if (svg.querySelector(`[data-key="${CSS.escape(key)}"]`)) return;
                    const el = polyline(points, color || colorOf(id));
                    el.setAttribute('data-key', key);
                    if (fade) fadeOut(el, t);
                },
                clear() { svg.replaceChildren(); },
                strokes() { return svg.children.length; },
                caret(id, el, start, end) {
                    if (!el) return unmark(carets, id);
                    const c = mark(carets, id, 'caret', 'remote-caret', '<span></span>');
                    const r = docOffset(el);
                    const color = colorOf(id);
                    c.style.borderColor = color;
                    c.querySelector('span').style.background = color;
                    c.querySelector('span').textContent = start === end ? `${nameOf(id)}: at ${start}` : `${nameOf(id)}: ${start}–${end}`;
                    place(c, r.x - 3, r.y - 3);
                    c.style.width = `${r.w + 2}px`;
                    c.style.height = `${r.h + 2}px`;
                },
                badge(el, text, key) {
                    if (!text) return unmark(badges, key);
                    const b = mark(badges, key, 'badge', 'badge', '');
                    b.textContent = text;
                    const r = docOffset(el);
                    place(b, r.x + r.w + 6, r.y);
                },
                remove() { host.remove(); },
            };
            return ov;
        }
        let strokeN = 0;

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

        // ---- the engine ------------------------------------------------------------

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
        return engine;
    };
})();

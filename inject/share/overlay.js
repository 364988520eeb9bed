// The overlay over the root document: remote pointers, drawing, carets and
// badges, in one shadow root the site's CSS cannot reach. Positions are in
// the root document's coordinates.

const PALETTE = ['#d7263d', '#1b7f5f', '#2e5fab', '#c25a00', '#7b2cbf', '#00838f'];
const FADE_MS = 3000;

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
</style><svg data-cobrowse="ink" width="1" height="1"></svg><div class="capture" data-cobrowse="canvas" hidden></div>`;
    doc.documentElement.appendChild(host);
    // The drawing layer is 1x1 and lets its strokes overflow: an
    // outer <svg> of zero width or height renders nothing at all
    // (SVG 1.1), and one sized to the document would add to the
    // page's scrollable area.
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
            // The label sits above the field, or below it where
            // above is out of sight (a field at the window's top).
            c.querySelector('span').style.top = r.y - 21 < ROOT.scrollY ? `${r.h + 4}px` : '';
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

// What of the page is shared: a control's state as a command (by control
// type), what is masked (mask.js's rule, per document), a control's
// default, and the frame's URL and history state as they are shared (masked
// values blanked).

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

// A radio's group: the radios of its name in its form (or its document or
// shadow root, outside a form), in document order.
function radioGroup(el) {
    const R = el.getRootNode();
    const scope = radioScope(el, R);
    if (radioIndex) {
        if (!radioIndex.groups) radioIndex.groups = indexRadios(radioIndex.w);
        const group = radioIndex.groups.get(scope);
        if (group && group.has(el.name)) return group.get(el.name);
    }
    return [...scope.querySelectorAll(`input[type="radio"][name="${CSS.escape(el.name)}"]`)];
}

function radioScope(el, R) {
    return el.form && el.form.getRootNode() === R ? el.form : R;
}

// Loops over all of a frame's controls (publishing, the sweep after a
// click) find radio groups from one pass over the frame's radios, built at
// the first radio they meet: a query per radio walks the whole document
// once per radio (500 radios among 20,000 elements: a quarter of a
// second). An index lasts for `fn` only, or, made with `radioIndexOf` for a
// loop that yields to the page between slices, until the page inserts or
// removes nodes or changes a name, type, id or form attribute in the
// frame's document or a shadow root it had.
let radioIndex = null;
function withRadioIndex(w, fn) {
    return inRadioIndex({ w, groups: null }, fn);
}
function inRadioIndex(index, fn) {
    const outer = radioIndex;
    radioIndex = index;
    try {
        return fn();
    } finally {
        radioIndex = outer;
    }
}
function radioIndexOf(w) {
    const index = { w, groups: null };
    index.watch = new MutationObserver(() => { index.groups = null; });
    for (const R of [w.document, ...((cbOf(w) || {}).shadows || [])]) {
        index.watch.observe(R, { childList: true, subtree: true, attributes: true, attributeFilter: ['name', 'type', 'id', 'form'] });
    }
    return index;
}

// scope (form, document or shadow root) -> name -> its radios, in document
// order: the answer the query in `radioGroup` gives, for every radio at once.
function indexRadios(w) {
    const groups = new Map();
    const add = (scope, name, r) => {
        let byName = groups.get(scope);
        if (!byName) groups.set(scope, (byName = new Map()));
        const list = byName.get(name);
        if (list) list.push(r);
        else byName.set(name, [r]);
    };
    for (const R of [w.document, ...((cbOf(w) || {}).shadows || [])]) {
        for (const r of R.querySelectorAll('input[type="radio"][name]')) {
            const name = r.getAttribute('name');
            add(R, name, r);
            // Every form it is inside (a query on the form finds it), not
            // only its own: nested forms exist in scripted documents.
            for (let f = r.parentElement && r.parentElement.closest('form'); f; f = f.parentElement && f.parentElement.closest('form')) add(f, name, r);
        }
    }
    return groups;
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

// Our own elements (widget, overlay) are not part of the page.
function ours(el) {
    const top = el.getRootNode().host || el;
    return !!(top.closest && top.closest('cobrowse-widget, cobrowse-overlay'));
}

function allControls(w) {
    const roots = [w.document, ...((cbOf(w) || {}).shadows || [])];
    const out = [];
    for (const R of roots) out.push(...R.querySelectorAll('input, textarea, select, [contenteditable]'));
    return out.filter((el) => controlOf(el) === el);
}

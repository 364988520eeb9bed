// Masking: which elements' values never leave this browser, and which URL
// parameters would carry them. This part runs in every document before the
// site's scripts, with or without a call, because what it must know starts
// before any session does:
//   - an element masked once stays masked for the life of its page, whatever
//     a script or the customer does to it later (a "show password" button
//     switching type=password to text, a card library dropping
//     autocomplete="cc-number" to keep autofill away);
//   - the names (never the values) of the masked fields of a form submitted
//     with GET are kept for the tab, so the page the submission leads to
//     shares its URL with those parameters blanked.
//
// An element is masked when it is a password input; has an autocomplete
// token for card data (`cc-*`) or a secret (`current-password`,
// `new-password`, `one-time-code`); matches, or is inside an element that
// matches, a `privacy.mask` selector; is an editing host (contenteditable)
// holding a masked element; or received text copied, cut or dragged out of
// a masked element. Config selectors are matched on attributes and
// structure: pseudo-classes that change without a mutation (`:checked`,
// `:focus`) are not followed.
const MASK = (function () {
  const NAMES_KEY = 'cobrowse.masked-names';
  // Names kept for the tab; the oldest go first. Masked field names are few.
  const MAX_NAMES = 256;
  const SECRET_TOKENS = new Set(['current-password', 'new-password', 'one-time-code']);
  const CONTROLS = 'input, textarea, select, [contenteditable]';

  const selectors = (CONFIG.mask || []).filter((sel) => {
    try { document.createDocumentFragment().querySelector(sel); return true; } catch (e) { return false; }
  });
  // What makes an element inside an editing host masked.
  const INSIDE = ['input[type="password" i]', '[autocomplete*="cc-" i]', '[autocomplete*="password" i]', '[autocomplete*="one-time-code" i]', ...selectors].join(', ');

  // Every element seen masked on this page: never unmasked.
  const ever = new WeakSet();
  // Texts copied, cut or dragged out of masked elements (memory only).
  const carried = new Set();
  // The document and every shadow root below it, as the agent records them.
  const roots = [document];

  function byType(type) {
    return String(type || '').trim().toLowerCase() === 'password';
  }

  function byAutocomplete(value) {
    return String(value || '').toLowerCase().split(/\s+/).some((t) => t.startsWith('cc-') || SECRET_TOKENS.has(t));
  }

  function bySelector(el) {
    for (const sel of selectors) if (el.closest(sel)) return true;
    return false;
  }

  // The element being edited: a form control, or the outermost element of
  // a contenteditable region (input events name it as their target).
  function editingHost(node) {
    let host = node;
    while (host.parentElement && host.parentElement.isContentEditable) host = host.parentElement;
    return host;
  }

  function isFormControl(el) {
    return el.localName === 'input' || el.localName === 'textarea' || el.localName === 'select';
  }

  // The rule as the element stands now.
  function now(el) {
    if (el.localName === 'input' && byType(el.type)) return true;
    if (byAutocomplete(el.getAttribute('autocomplete'))) return true;
    if (bySelector(el)) return true;
    return !isFormControl(el) && el.isContentEditable && !!el.querySelector(INSIDE);
  }

  // Remembers `el` as masked, and the editing host it is part of.
  function add(el) {
    ever.add(el);
    const p = el.parentElement;
    if (p && p.isContentEditable) ever.add(editingHost(p));
  }

  // Config selectors can stop matching after any attribute change (a class
  // removed from a container): every element that matches one is
  // remembered when it appears and when it starts to match, so it is known
  // before it could stop.
  function scan(node) {
    if (!selectors.length || node.nodeType !== 1 && node.nodeType !== 11) return;
    for (const sel of selectors) {
      const hits = [...node.querySelectorAll(sel)];
      if (node.nodeType === 1 && node.closest(sel)) hits.push(node);
      for (const hit of hits) {
        add(hit);
        for (const el of hit.querySelectorAll(CONTROLS)) add(el);
      }
    }
  }

  // type and autocomplete are decided from the old value of each change;
  // the attributes config selectors name are followed by scanning again.
  const selectorAttributes = [];
  for (const sel of selectors) {
    for (const m of sel.matchAll(/\[\s*([^\s~|^$*!=\]]+)/g)) selectorAttributes.push(m[1].toLowerCase());
  }
  const attributeFilter = ['type', 'autocomplete', ...(selectors.length ? ['class', 'id', ...selectorAttributes] : [])];

  function onRecords(records) {
    for (const r of records) {
      const t = r.target;
      if (r.type === 'attributes') {
        if (t.nodeType !== 1) continue;
        if (r.attributeName === 'type' ? t.localName === 'input' && byType(r.oldValue) : r.attributeName === 'autocomplete' && byAutocomplete(r.oldValue)) add(t);
        scan(t);
      } else {
        for (const n of r.addedNodes) scan(n);
      }
    }
  }
  const observer = new MutationObserver(onRecords);

  // Changes made just now (by a script, in this very task) count before any
  // decision: the observer's records would otherwise arrive after it.
  function settle() {
    onRecords(observer.takeRecords());
  }

  // Insertions are followed from the first parsed node on: the parser
  // delivers the records before it runs each inline script, so an element
  // that matches a selector is known before a script can change it.
  function watch(root) {
    if (!roots.includes(root)) roots.push(root);
    observer.observe(root, { subtree: true, attributes: true, attributeOldValue: true, attributeFilter, childList: selectors.length > 0 });
    scan(root);
  }
  watch(document);

  function masked(el) {
    if (!el || el.nodeType !== 1) return false;
    settle();
    return settled(el);
  }

  // `masked` once the changes made so far are taken in: a loop over every
  // control of the page settles once, not once per control.
  function settled(el) {
    if (ever.has(el)) return true;
    if (!now(el)) return false;
    add(el);
    return true;
  }

  // Whether `node` is, or is inside, something masked (a click or a drag
  // there reveals what it is about).
  function within(node) {
    const el = node && node.nodeType === 1 ? node : node && node.parentElement;
    if (!el) return false;
    if (masked(el)) return true;
    for (let a = el.parentElement; a; a = a.parentElement) if (ever.has(a)) return true;
    return false;
  }

  // ---- first sight: the customer's own actions -----------------------------

  function target(e) {
    const t = e.composedPath()[0] || e.target;
    return t && t.nodeType === 1 ? t : t && t.parentElement;
  }

  // Focus and input are where the customer meets a field: decide there,
  // before any script can change it again.
  for (const type of ['focusin', 'beforeinput', 'input', 'change']) {
    window.addEventListener(type, (e) => {
      const t = target(e);
      if (t) masked(isFormControl(t) ? t : t.isContentEditable ? editingHost(t) : t);
    }, true);
  }

  function selectedText(el) {
    if (isFormControl(el) && typeof el.selectionStart === 'number') return el.value.slice(el.selectionStart, el.selectionEnd);
    const s = window.getSelection();
    return s ? s.toString() : '';
  }

  // Text taken out of a masked element makes the element it lands in masked.
  for (const type of ['copy', 'cut', 'dragstart']) {
    window.addEventListener(type, (e) => {
      const t = target(e);
      if (!t || !within(t)) return;
      const text = selectedText(t) || (isFormControl(t) ? t.value : '');
      if (text) carried.add(text);
    }, true);
  }
  for (const type of ['paste', 'drop']) {
    window.addEventListener(type, (e) => {
      const data = type === 'paste' ? e.clipboardData : e.dataTransfer;
      const text = data ? data.getData('text/plain') : '';
      const t = target(e);
      if (!t || !text || ![...carried].some((c) => text.includes(c))) return;
      add(isFormControl(t) ? t : editingHost(t));
    }, true);
  }

  // ---- URLs -------------------------------------------------------------

  function readNames() {
    try { return JSON.parse(sessionStorage.getItem(NAMES_KEY) || '[]'); } catch (e) { return []; }
  }

  function remember(names) {
    if (!names.length) return;
    const all = readNames().filter((n) => !names.includes(n)).concat([...new Set(names)]);
    try { sessionStorage.setItem(NAMES_KEY, JSON.stringify(all.slice(-MAX_NAMES))); } catch (e) { /* storage disabled: this page's own fields still count */ }
  }

  function secretValue(el) {
    return el.type !== 'checkbox' && el.type !== 'radio' && typeof el.value === 'string' && el.value !== '' ? el.value : null;
  }

  // The masked fields on this page (every shadow root included): their
  // names, and their values to look for.
  function onPage() {
    const names = new Set(readNames());
    const values = new Set();
    settle();
    for (const R of roots) {
      for (const el of R.querySelectorAll('input, textarea, select')) {
        if (!settled(el)) continue;
        if (el.name) names.add(el.name);
        const v = secretValue(el);
        if (v != null) values.add(v);
      }
    }
    return { names, values };
  }

  // A path segment is blanked when it is a masked value this long or
  // longer: shorter ones (the first digits of a PIN as it is typed) would
  // match ordinary paths (`/page/1`).
  const MIN_SEGMENT = 3;

  function decode(s) {
    try { return decodeURIComponent(s.replace(/\+/g, ' ')); } catch (e) { return s; }
  }

  // `a=1&pw=x` with each masked parameter's value emptied, everything else
  // byte for byte as it was.
  function blankParams(query, { names, values }) {
    return query.split('&').map((p) => {
      const eq = p.indexOf('=');
      if (eq < 0) return p;
      return names.has(decode(p.slice(0, eq))) || values.has(decode(p.slice(eq + 1))) ? p.slice(0, eq + 1) : p;
    }).join('&');
  }

  // The URL as it may be shared: every parameter (in the query, and in a
  // fragment that carries parameters) named like a masked field of this page
  // or of a form submitted with GET in this tab, or holding a masked field's
  // value, keeps its name and place with an empty value (`?q=x&pw=&cardno=`).
  // A path segment that is a masked value (a script's
  // `pushState('/reset/' + field.value)`) is emptied too: no parameter name
  // can tell another page about it, so it is caught on this one only.
  function blankUrl(url) {
    const mask = onPage();
    if (!mask.names.size && !mask.values.size) return url;
    const h = url.indexOf('#');
    let main = h < 0 ? url : url.slice(0, h);
    let frag = h < 0 ? null : url.slice(h + 1);
    const q = main.indexOf('?');
    let path = q < 0 ? main : main.slice(0, q);
    const origin = /^[a-z][a-z0-9+.-]*:\/\/[^/]*/i.exec(path);
    const start = origin ? origin[0].length : 0;
    path = path.slice(0, start) + path.slice(start).split('/').map((seg) => {
      const v = decode(seg);
      return v.length >= MIN_SEGMENT && mask.values.has(v) ? '' : seg;
    }).join('/');
    main = q < 0 ? path : path + main.slice(q);
    const q2 = main.indexOf('?');
    if (q2 >= 0) main = main.slice(0, q2 + 1) + blankParams(main.slice(q2 + 1), mask);
    if (frag != null) {
      const fq = frag.indexOf('?');
      if (fq >= 0) frag = frag.slice(0, fq + 1) + blankParams(frag.slice(fq + 1), mask);
      else if (frag.includes('=')) frag = blankParams(frag, mask);
    }
    return frag == null ? main : `${main}#${frag}`;
  }

  // History state as it may be shared: entries named like a masked field
  // and strings holding a masked field's value are emptied.
  function scrub(state) {
    // Nothing in it to empty (most pages' state is null).
    if (state == null || typeof state === 'number' || typeof state === 'boolean') return state;
    const mask = onPage();
    if (!mask.names.size && !mask.values.size) return state;
    const walk = (v) => {
      if (typeof v === 'string') return mask.values.has(v) ? '' : v;
      if (Array.isArray(v)) return v.map(walk);
      if (v && typeof v === 'object') {
        const out = {};
        for (const [k, x] of Object.entries(v)) out[k] = mask.names.has(k) && typeof x !== 'object' ? '' : walk(x);
        return out;
      }
      return v;
    };
    return walk(state);
  }

  // A form submitted with GET puts its fields in the next page's URL. The
  // entry list is built for every way a form is submitted (the customer's
  // submit, requestSubmit, a script's form.submit(), which fires no submit
  // event), and `formdata` fires for each.
  const submitters = new WeakMap();
  window.addEventListener('submit', (e) => {
    if (e.target && e.target.localName === 'form') submitters.set(e.target, e.submitter || null);
  }, true);
  window.addEventListener('formdata', (e) => {
    const form = e.target;
    if (!form || form.localName !== 'form') return;
    const sub = submitters.get(form);
    submitters.delete(form);
    const method = sub && sub.hasAttribute('formmethod') ? sub.formMethod : form.method;
    if (method !== 'get') return;
    const names = [];
    const values = new Set();
    for (const el of form.elements) {
      if (!masked(el)) continue;
      if (el.name) names.push(el.name);
      const v = secretValue(el);
      if (v != null) values.add(v);
    }
    remember(names);
    if (!values.size) return;
    // The site's own formdata listeners run after this one and may add a
    // masked value under another name: look at the list again once they
    // have run (this listener, added now, is the last on the way back up).
    const late = (again) => {
      window.removeEventListener('formdata', late);
      if (again !== e) return;
      const copies = [];
      for (const [name, value] of e.formData) if (typeof value === 'string' && values.has(value)) copies.push(name);
      remember(copies);
    };
    window.addEventListener('formdata', late);
  }, true);

  // A script's own navigation (`location.href = '/verify?code=' +
  // field.value`) names no form: the parameters of its destination that hold
  // a masked value are remembered by name, where the browser says where it
  // goes (the Navigation API).
  if (window.navigation && typeof window.navigation.addEventListener === 'function') {
    window.navigation.addEventListener('navigate', (e) => {
      let url;
      try { url = new URL(e.destination.url); } catch (err) { return; }
      const { values } = onPage();
      if (!values.size) return;
      const names = [];
      const frag = url.hash.slice(1);
      const fq = frag.indexOf('?');
      for (const query of [url.search.slice(1), fq >= 0 ? frag.slice(fq + 1) : frag]) {
        for (const p of query.split('&')) {
          const eq = p.indexOf('=');
          if (eq > 0 && values.has(decode(p.slice(eq + 1)))) names.push(decode(p.slice(0, eq)));
        }
      }
      remember(names);
    });
  }

  return { masked, within, keep: add, editingHost, watch, blankUrl, scrub };
})();

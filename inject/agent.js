// The synchronous part of the sharing agent. It runs first in every proxied
// document (top page and every same-origin frame), before the site's own
// scripts, so it only does what must happen that early:
//   - patch history.pushState/replaceState and attachShadow (the site may call
//     them at once, and no event reveals either);
//   - find the frame's place: its frame path, the root of the shared page tree
//     (the customer's top window, or the operator console's content frame);
//   - in the customer's top window: the widget's idle face (the call and
//     share buttons), built once the page is idle.
// The customer's call (the link to the hub, the widget's behaviour) lives in
// call.js, loaded when the customer calls or a session of the tab resumes,
// and everything that compares and applies page state in share.js, loaded
// when a session starts; pages without a call run this file alone. The one
// global name is `__cobrowse`.
(function agent() {
    const W = window;
    const NS = '__cobrowse';
    if (W[NS]) return; // the agent is injected once per document, but be safe

    const CB = {
        config: CONFIG,
        // The masking rule and what it has seen on this page (mask.js).
        mask: MASK,
        // Open and closed shadow roots seen since the document started, in
        // creation order: closed ones are reachable nowhere else.
        shadows: [],
        shadowOf: new WeakMap(),
        // Hooks filled in by share.js once a session starts.
        engine: null,
        // Elements seen scrolling since the document started: publishing
        // the page reads the scroll positions of these, not of every
        // element (a forced read of 20,000 elements on a large page).
        scrolled: new Set(),
    };
    Object.defineProperty(W, NS, { value: CB, configurable: false, enumerable: false, writable: false });

    // ---- early patches ----------------------------------------------------

    // A Proxy keeps the original's name, length and native toString, so sites
    // that inspect these functions see nothing unusual.
    function wrap(owner, name, after) {
        const orig = owner[name];
        if (typeof orig !== 'function') return orig;
        const patched = new Proxy(orig, {
            apply(target, self, args) {
                const result = Reflect.apply(target, self, args);
                try { after(self, args, result); } catch (e) { /* never break the site */ }
                return result;
            },
        });
        const desc = Object.getOwnPropertyDescriptor(owner, name);
        Object.defineProperty(owner, name, { ...desc, value: patched });
        return orig;
    }

    // Scroll events do not bubble, but a capturing listener on the window
    // (and on each shadow root: they are not composed) sees every one.
    let scrolledLimit = 256;
    function sawScroll(e) {
        const t = e.target;
        if (!t || t.nodeType !== 1) return;
        const seen = CB.scrolled;
        seen.add(t);
        if (seen.size > scrolledLimit) {
            // Elements gone from the page are forgotten.
            for (const el of seen) if (!el.isConnected) seen.delete(el);
            scrolledLimit = Math.max(256, seen.size * 2);
        }
    }
    const SCROLL_OPTS = { capture: true, passive: true };
    W.addEventListener('scroll', sawScroll, SCROLL_OPTS);

    const nativeAttachShadow = wrap(Element.prototype, 'attachShadow', (host, _args, root) => {
        root.addEventListener('scroll', sawScroll, SCROLL_OPTS);
        CB.shadows.push(root);
        CB.shadowOf.set(host, root);
        MASK.watch(root);
        notify('shadow', root);
    });
    CB.nativeAttachShadow = nativeAttachShadow;
    CB.nativePushState = wrap(History.prototype, 'pushState', () => notify('history', 'push'));
    CB.nativeReplaceState = wrap(History.prototype, 'replaceState', () => notify('history', 'replace'));
    W.addEventListener('popstate', () => notify('history', 'pop'), true);
    W.addEventListener('hashchange', () => notify('history', 'hash'), true);

    // ---- where this document sits -----------------------------------------

    // The operator console shows the shared page in its content frame, named
    // so by the console. The console lives on an origin of its own: from
    // here it is reachable only by postMessage, to and from that origin.
    const CONTENT_FRAME_NAME = 'cobrowse-content';
    const CONSOLE_ORIGIN = CONFIG.console.origin || new URL(`${location.protocol}//${location.hostname}:${CONFIG.console.port}`).origin;

    // The highest same-origin ancestor carrying the agent.
    function sharedRoot() {
        let root = W;
        try {
            while (root.parent !== root && root.frameElement && root.parent[NS]) root = root.parent;
        } catch (e) { /* cross-origin parent: stop here */ }
        return root;
    }

    // Whether `root` is the console's content frame: framed by the console's
    // origin (where the browser says so), and named as the console names it.
    function isOperatorRoot(root) {
        if (root.parent === root) return false;
        try {
            const above = root.location.ancestorOrigins;
            if (above && above.length) return above[0] === CONSOLE_ORIGIN;
            return root.name === CONTENT_FRAME_NAME;
        } catch (e) {
            return false;
        }
    }

    CB.root = sharedRoot();
    CB.operator = isOperatorRoot(CB.root);
    CB.isRoot = CB.root === W;

    function rootCB() {
        try { return CB.root[NS]; } catch (e) { return null; }
    }

    function notify(kind, detail) {
        const r = rootCB();
        if (r && r.engine) r.engine.event(W, kind, detail);
    }

    // Each frame tells the root it exists; the root's engine (if a session is
    // on) starts sharing it. Frames are kept as windows; closed ones drop out.
    if (CB.isRoot) {
        CB.frames = new Set([W]);
    } else {
        const r = rootCB();
        if (r) {
            r.frames.add(W);
            if (r.engine) {
                if (document.readyState === 'loading') {
                    document.addEventListener('DOMContentLoaded', () => r.engine && r.engine.attach(W));
                } else {
                    r.engine.attach(W);
                }
            }
        }
    }

    // ---- the operator's content frame ---------------------------------------

    // The console (another origin) holds the operator's link to the hub; this
    // frame holds only what its one session needs: the session's commands,
    // who takes part, and the credential that binds this browser as a
    // follower of that session. It asks for them with `hello` on every page
    // load and sends its own commands back; the console relays nothing else.
    function operatorFrame() {
        const BOOTSTRAP = CONFIG.prefix + 'frame';
        const post = (msg) => W.parent.postMessage({ cobrowse: 'frame', ...msg }, CONSOLE_ORIGIN);
        const mirror = commandStore();
        const put = mirror.put;
        const link = {
            role: 'operator',
            me: null,
            participants: [],
            control: false,
            joined: false,
            tools: { pointer: false, draw: false, fade: false },
            mayAct() { return this.control; },
            send(cmd) {
                const full = { type: 'command', attribute: 'others', ...cmd };
                put(full);
                post({ type: 'command', command: full });
            },
            known(path) {
                const nav = mirror.get(path);
                return nav && nav.fn === VOCABULARY.navigate ? nav.args[0] : undefined;
            },
            setKnown(path, url) {
                const nav = mirror.get(path);
                if (nav && nav.fn === VOCABULARY.navigate) nav.args = [url, ...nav.args.slice(1)];
                post({ type: 'known', path, url });
            },
            stored: mirror.under,
            notice(text) { post({ type: 'notice', text: String(text) }); },
        };
        CB.link = link;
        function setStatus(msg) {
            link.me = msg.me || null;
            link.participants = Array.isArray(msg.participants) ? msg.participants : [];
            link.control = !!msg.control;
            link.joined = !!msg.joined;
        }
        // The bootstrap page binds this browser to the session, then shows
        // the customer's page (only a path on this origin).
        function bootstrap(msg) {
            bindBrowser(CONFIG.prefix, msg.bind || null)
                .then(() => {
                    if (!msg.bind) return;
                    post({ type: 'bound', session: msg.session });
                    const show = msg.show;
                    if (sitePath(show, location.href)) W.location.replace(show);
                });
        }
        function start(msg) {
            setStatus(msg);
            link.tools = { ...link.tools, ...(msg.tools || {}) };
            mirror.clear();
            for (const c of msg.commands || []) put(c);
            loadEngine().then(() => {
                if (!CB.engine) CB.engine = CB.engineFactory(W, link);
            }).catch((e) => console.warn('cobrowse:', e.message));
        }
        W.addEventListener('message', (ev) => {
            // Only the console that frames this page speaks for the session.
            if (ev.source !== W.parent || ev.origin !== CONSOLE_ORIGIN) return;
            const msg = ev.data;
            if (!msg || msg.cobrowse !== 'console') return;
            // Not the site's business.
            ev.stopImmediatePropagation();
            const e = CB.engine;
            switch (msg.type) {
                case 'init':
                    if (location.pathname === BOOTSTRAP) bootstrap(msg);
                    else start(msg);
                    break;
                case 'command':
                    if (!msg.command || typeof msg.command.key !== 'string') break;
                    put(msg.command);
                    if (e && msg.command.key !== 'top/@viewport') e.receive(msg.command);
                    break;
                case 'replay':
                    mirror.clear();
                    for (const c of msg.commands || []) put(c);
                    if (e) for (const c of mirror.values()) if (c.key !== 'top/@viewport') e.receive(c);
                    break;
                case 'status':
                    setStatus(msg);
                    if (e) e.status();
                    break;
                case 'tools': {
                    const before = `${link.tools.pointer} ${link.tools.draw}`;
                    link.tools = { ...link.tools, ...(msg.tools || {}) };
                    if (e && before !== `${link.tools.pointer} ${link.tools.draw}`) e.tools();
                    break;
                }
                case 'clear':
                    if (e) e.clear();
                    break;
                default:
                    break;
            }
        }, true);
        W.addEventListener('pagehide', () => post({ type: 'bye' }));
        whenReady(() => post({ type: 'hello', url: location.pathname + location.search + location.hash }));
    }

    // ---- loading the rest -------------------------------------------------

    // The scripts loaded on need, by their versioned URLs (`CONFIG.scripts`:
    // kept by browsers for good, so a page of a call in progress finds them
    // in its cache), with this script's nonce, which a nonce-based policy
    // lets through (`'strict-dynamic'` trusts them through this script).
    const TAG = document.currentScript;
    const NONCE = (TAG && TAG.nonce) || '';
    const loading = {};
    function loadScript(name, loaded) {
        if (loaded()) return Promise.resolve();
        if (loading[name]) return loading[name];
        loading[name] = new Promise((resolve, reject) => {
            const s = document.createElement('script');
            s.src = CONFIG.scripts[name];
            if (NONCE) s.nonce = NONCE;
            s.onload = () => { s.remove(); loaded() ? resolve() : reject(new Error(`${name} did not start`)); };
            s.onerror = () => { s.remove(); loading[name] = null; reject(new Error(`${name} did not load`)); };
            (document.head || document.documentElement).appendChild(s);
        });
        return loading[name];
    }
    // The sharing engine (share.js), when a session starts.
    const loadEngine = () => loadScript('share.js', () => CB.engineFactory);
    CB.loadEngine = loadEngine;

    function whenReady(fn) {
        if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', fn, { once: true });
        else fn();
    }

    // The operator's content frame: the console holds the hub link.
    if (CB.operator && CB.isRoot) {
        operatorFrame();
        return;
    }
    if (CB.operator || !CB.isRoot) return;

    // ---- the customer's top window ------------------------------------------

    // Everything a call needs, the link to the hub and the widget's
    // behaviour, is in call.js, loaded when the customer calls or a session
    // of this tab is to resume; a page without a call gets only the
    // widget's idle face, built here once the page is idle.
    const loadCall = () => loadScript('call.js', () => CB.call).then(() => CB.call);
    const STORE = 'cobrowse.session';
    function sessionStored() {
        try { return !!sessionStorage.getItem(STORE); } catch (e) { return false; }
    }
    // Whether no session of this tab can resume here: the proxy marked the
    // tag because the browser came bound to no session, and the document is
    // the one it answered (from the network now: one from the cache, or
    // revalidated, may have been marked before a call began). Then the
    // tab's storage is not read at all: its first read is a synchronous
    // round trip to the browser, on every page.
    function surelyAlone() {
        if (!TAG || !TAG.hasAttribute('data-cobrowse-unbound')) return false;
        const nav = performance.getEntriesByType && performance.getEntriesByType('navigation')[0];
        return !!nav && nav.transferSize > nav.encodedBodySize;
    }
    function resume() {
        loadCall().then((call) => call.resume()).catch((e) => console.warn('cobrowse:', e.message));
    }

    // The widget's idle face: what shows before any call. call.js fills in
    // the rest (the join code, the request for control, the tools, the
    // chat) and renders every state from then on; `IDLE` is what it shows
    // for the idle state, written once, here.
    const IDLE = {
        status: 'Need help? Call an operator to look at this page with you.',
        call: 'Call operator',
        callLabel: 'Call operator to share this page',
    };
    const CSS = `
:host { all: initial; position: fixed; right: 16px; bottom: 16px; z-index: 2147483647; }
.box { font: 14px/1.4 system-ui, sans-serif; color: #1b2330; background: #fff; border: 1px solid #9aa5b8;
  border-radius: 10px; box-shadow: 0 4px 16px rgba(20,30,50,.18); padding: 10px 12px; max-width: 260px;
  display: flex; flex-direction: column; gap: 8px; }
.row { display: flex; gap: 6px; flex-wrap: wrap; }
button { font: inherit; border-radius: 6px; border: 1px solid #2a5bd7; background: #fff; color: #1f47a8;
  padding: 6px 10px; cursor: pointer; }
button.primary { background: #1f47a8; color: #fff; }
button[aria-pressed="true"] { background: #e3ebff; }
button:focus-visible { outline: 3px solid #b35c00; outline-offset: 2px; }
[hidden] { display: none !important; }
.status { margin: 0; }
.notice { margin: 0; color: #8a3b00; }
.code, .ask { margin: 0; }
/* The share button gives way to the code in a live region that is always
   there, so the code is announced when it shows. */
.swap { display: flex; flex-direction: column; gap: 8px; }
.code strong { font-size: 20px; letter-spacing: 3px; }
.prompt { border: 2px solid #1f47a8; border-radius: 8px; padding: 8px; display: flex; flex-direction: column; gap: 6px; }
.chat { display: flex; flex-direction: column; gap: 6px; }
.chat ol { list-style: none; margin: 0; padding: 0; max-height: 160px; overflow: auto; }
.chat li { margin: 0 0 4px; overflow-wrap: anywhere; white-space: pre-wrap; }
.chat .who { font-weight: 600; }
.chat .when { color: #4a5263; font-size: 12px; }
.chat form { display: flex; flex-wrap: wrap; gap: 6px; }
.chat label { flex: 0 0 100%; }
.chat input { font: inherit; flex: 1; min-width: 0; padding: 5px; border: 1px solid #6b7588; border-radius: 6px; color: #1b2330; background: #fff; }
.chat input:focus-visible { outline: 3px solid #b35c00; outline-offset: 1px; }
`;
    let face = null;
    // The widget's shadow root, built once: the status line, the call and
    // share buttons. Their presses load call.js first.
    function widgetRoot() {
        if (face) return face;
        const host = document.createElement('cobrowse-widget');
        host.setAttribute('data-cobrowse', 'widget');
        face = nativeAttachShadow.call(host, { mode: 'open' });
        face.innerHTML = `<style>${CSS}</style>
<div class="box" role="region" aria-label="Co-browsing">
  <p class="status" id="status" data-cobrowse="status" role="status" aria-live="polite">${IDLE.status}</p>
  <p class="notice" data-cobrowse="notice" role="alert" hidden></p>
  <div class="row">
    <button type="button" class="primary" data-cobrowse="call" aria-describedby="status" aria-label="${IDLE.callLabel}">${IDLE.call}</button>
  </div>
  <div class="swap" aria-live="polite">
    <div class="row" data-cobrowse="share">
      <button type="button" data-cobrowse="share-code">Share with the person I'm talking to</button>
    </div>
    <p class="code" data-cobrowse="code-box" hidden>Your code: <strong data-cobrowse="code"></strong><br>Read it to the person you are talking to.</p>
  </div>
</div>`;
        for (const which of ['call', 'share-code']) {
            face.querySelector(`[data-cobrowse="${which}"]`).addEventListener('click', () => {
                loadCall().then((call) => call.press(which)).catch((e) => {
                    const notice = face.querySelector('[data-cobrowse="notice"]');
                    notice.textContent = `Could not start sharing: ${e.message}`;
                    notice.hidden = false;
                });
            });
        }
        document.documentElement.appendChild(host);
        return face;
    }
    CB.widget = { root: widgetRoot, idle: IDLE, sessionKey: STORE };

    whenReady(() => {
        // A session survives reloads and navigations of the tab that called:
        // it resumes at once (call.js is in the cache since the call began).
        if (!surelyAlone() && sessionStored()) {
            resume();
            return;
        }
        // Without one, the widget's face waits for a moment the page is idle
        // (half a second at most): its building and the layout it adds stay
        // off the page's own DOMContentLoaded and load.
        const later = W.requestIdleCallback ? (fn) => W.requestIdleCallback(fn, { timeout: 500 }) : (fn) => setTimeout(fn, 0);
        later(widgetRoot);
    });
    // Back from the back/forward cache into a tab whose session started on
    // a later page: it resumes here.
    W.addEventListener('pageshow', (e) => {
        if (e.persisted && !CB.call && sessionStored()) resume();
    });
})();

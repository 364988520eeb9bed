// The synchronous part of the sharing agent. It runs first in every proxied
// document (top page and every same-origin frame), before the site's own
// scripts, so it only does what must happen that early:
//   - patch history.pushState/replaceState and attachShadow (the site may call
//     them at once, and no event reveals either);
//   - find the frame's place: its frame path, the root of the shared page tree
//     (the customer's top window, or the operator console's content frame);
//   - in the customer's top window: the widget with the call button and the
//     link to the hub, opened only when the customer calls.
// Everything that compares and applies page state lives in share.js, loaded
// only when a session starts, so pages without a call pay for little more
// than this file. The one global name is `__cobrowse`.
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

    let loading = null;
    function loadEngine() {
        if (CB.engineFactory) return Promise.resolve();
        if (loading) return loading;
        loading = new Promise((resolve, reject) => {
            const s = document.createElement('script');
            s.src = CONFIG.prefix + 'share.js';
            s.onload = () => { s.remove(); resolve(); };
            s.onerror = () => { s.remove(); loading = null; reject(new Error('share.js did not load')); };
            (document.head || document.documentElement).appendChild(s);
        });
        return loading;
    }
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

    // ---- the customer's link to the hub -----------------------------------

    const STORE = 'cobrowse.session';
    const KNOWN = 'cobrowse.known';
    // The join code on show while the customer waits, and the last chat
    // message the customer has seen (for the unread count).
    const CODE = 'cobrowse.code';
    const READ = 'cobrowse.chat.read';

    function readJSON(name) {
        try { return JSON.parse(sessionStorage.getItem(name) || 'null'); } catch (e) { return null; }
    }
    function writeJSON(name, value) {
        try {
            if (value == null) sessionStorage.removeItem(name);
            else sessionStorage.setItem(name, JSON.stringify(value));
        } catch (e) { /* storage disabled: the session ends with the page */ }
    }

    const link = {
        role: 'customer',
        me: null,
        participants: [],
        state: 'idle',
        position: 0,
        control: false,
        queue: [],
        joined: false,
        // Received this page: what a frame that loads later still needs.
        mirror: commandStore(),
        tools: { pointer: false, draw: false },
        // The customer drives: the operators act only when granted.
        mayAct() { return true; },
        send(cmd) {
            const msg = JSON.stringify({ type: 'command', attribute: 'others', ...cmd });
            if (!(this.joined && hub.send(msg))) this.queue.push(msg);
        },
        sendRaw(msg) { hub.send(msg); },
        known(path) { return (readJSON(KNOWN) || {})[path]; },
        setKnown(path, url) {
            const k = readJSON(KNOWN) || {};
            k[path] = url;
            writeJSON(KNOWN, k);
        },
        stored(prefix) { return this.mirror.under(prefix); },
        nameOf(id) {
            const p = this.participants.find((x) => x.id === id);
            return p ? (p.name || p.role) : 'Operator';
        },
        notice(text) { widget.notice(text); },
    };
    CB.link = link;

    // How the next socket says who this is: `call` for a new call, else
    // `resume` (a retry, the next page of this tab).
    let opening = 'resume';
    const hub = hubLink('customer', CONFIG.prefix, {
        open() {
            const saved = readJSON(STORE);
            // A resume is answered with a replay; a new call is not.
            link.resuming = !!(opening === 'resume' && saved);
            if (link.resuming) hub.send({ type: 'resume', session: saved.session, resume: saved.resume });
            else hub.send({ type: 'call' });
            opening = 'resume';
        },
        message: onMessage,
        closed(how) {
            link.joined = false;
            if (how === 'replaced') {
                // Another tab with a copy of this tab's session storage took
                // the session over; it goes on there.
                end();
                widget.notice('Sharing continues in another tab.');
            } else if (how === 'retrying') {
                // Come back as the same participant while the session may
                // still exist.
                opening = 'resume';
                widget.render();
            } else {
                end();
            }
        },
        wanted: () => !!readJSON(STORE),
        // Leaving the page: the next page of this tab resumes; nothing
        // here may touch the session storage it will read.
        quiet: () => leaving,
    }, 8);

    // The store not answering is said in the widget until it does; then
    // the page's state is published again, so what was refused meanwhile
    // (typing included) reaches the operators.
    const outage = storeOutage(CONFIG.prefix, (down) => {
        if (!down && link.joined && CB.engine) CB.engine.publish();
        widget.render();
    });

    function connect(first) {
        opening = first;
        hub.connect();
    }

    let leaving = false;
    W.addEventListener('pagehide', () => { leaving = true; });
    W.addEventListener('pageshow', (e) => {
        if (!e.persisted) return;
        leaving = false;
        // Back from the back/forward cache (Back in the operator's address
        // bar leads here too): the engine let go of this page's documents
        // when it was hidden; it takes them up again, to publish them.
        if (CB.engine) {
            for (const f of CB.frames) {
                try { if (!f.closed) CB.engine.attach(f); } catch (err) { /* a frame gone meanwhile */ }
            }
        }
        if (readJSON(STORE) && !hub.ws) connect('resume');
    });

    function onMessage(msg) {
        switch (msg.type) {
            case 'joined':
                outage.recovered();
                writeJSON(STORE, { session: msg.session, resume: msg.resume });
                bindBrowser(CONFIG.prefix, { session: msg.session, token: msg.bind });
                link.me = msg.participant;
                link.joined = true;
                link.fresh = link.resuming;
                for (const m of link.queue.splice(0)) hub.send(m);
                // "Share with the person I'm talking to" before a call:
                // the call is made, now the code for it.
                if (link.wantCode) { link.wantCode = false; link.sendRaw({ type: 'code' }); }
                // The customer's page is the truth: publish all of it.
                if (CB.engine) CB.engine.publish();
                break;
            case 'replay':
                // Right after joining: the customer drives, and this page
                // publishes its own state, so the stored one is not applied.
                // Later, a replay resynchronises a slow link: it carries what
                // the others did meanwhile.
                if (link.fresh) {
                    link.fresh = false;
                    // An address-bar command that came while this tab was
                    // away (between pages) is still for it; the engine
                    // performs each one once.
                    if (CB.engine) for (const c of msg.commands || []) if (c.key === 'top/@go') CB.engine.receive(c);
                    break;
                }
                for (const c of msg.commands || []) onMessage(c);
                break;
            case 'status':
                link.state = msg.state;
                link.position = msg.position || 0;
                link.participants = msg.participants || [];
                link.control = !!msg.control;
                // Another operator came in: the code was used (or is not
                // needed any more).
                {
                    const code = readJSON(CODE);
                    if (code && operatorsIn(link.participants) > code.operators) writeJSON(CODE, null);
                }
                if (link.control) widget.closePrompt();
                if (CB.engine) CB.engine.status();
                widget.render();
                break;
            case 'code':
                writeJSON(CODE, { code: String(msg.code), until: Date.now() + (Number(msg.expires_in) || 600) * 1000, operators: operatorsIn(link.participants) });
                widget.render();
                break;
            case 'control_request':
                widget.askControl(String(msg.name || 'The operator'));
                break;
            case 'control_answer':
                // Answered here or in another tab of this customer.
                widget.closePrompt();
                break;
            case 'chat':
                widget.chat.add([msg]);
                break;
            case 'chat_log':
                widget.chat.add(Array.isArray(msg.messages) ? msg.messages : []);
                break;
            case 'command':
                outage.recovered();
                link.mirror.put(msg);
                if (CB.engine) CB.engine.receive(msg);
                break;
            case 'ended':
                end();
                widget.notice(msg.reason === 'operator_left' ? 'The operator has left; sharing has stopped.'
                    : msg.reason === 'expired' ? 'The session expired; sharing has stopped.' : 'Sharing has stopped.');
                break;
            case 'error':
                if (msg.code === 'unavailable') {
                    // A call the hub could not start is over, not waiting.
                    if (msg.request === 'call') end();
                    outage.refused();
                } else if (msg.code === 'unknown_session') end();
                else console.warn('cobrowse:', msg.code, msg.message);
                break;
            default:
                break;
        }
    }

    function operatorsIn(participants) {
        return participants.filter((p) => p.role === 'operator').length;
    }

    function start(how) {
        link.state = 'calling';
        widget.render();
        loadEngine().then(() => {
            if (!CB.engine) CB.engine = CB.engineFactory(W, link);
            connect(how);
        }).catch((e) => {
            link.state = 'idle';
            widget.notice('Could not start sharing: ' + e.message);
        });
    }

    function end() {
        if (readJSON(STORE)) bindBrowser(CONFIG.prefix, null);
        writeJSON(STORE, null);
        writeJSON(KNOWN, null);
        writeJSON(CODE, null);
        writeJSON(READ, null);
        link.wantCode = false;
        widget.closePrompt();
        widget.chat.clear();
        link.joined = false;
        link.queue = [];
        link.mirror.clear();
        link.state = 'idle';
        link.participants = [];
        link.control = false;
        link.tools.pointer = link.tools.draw = false;
        hub.close();
        if (CB.engine) { CB.engine.stop(); CB.engine = null; }
        widget.render();
    }

    function hangup() {
        hub.send({ type: 'hangup' });
        end();
    }

    // ---- the widget -------------------------------------------------------

    const widget = (() => {
        let host = null;
        let ui = null;
        let noticeText = '';

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

        function build() {
            if (host) return;
            host = document.createElement('cobrowse-widget');
            host.setAttribute('data-cobrowse', 'widget');
            const root = nativeAttachShadow.call(host, { mode: 'open' });
            root.innerHTML = `<style>${CSS}</style>
<div class="box" role="region" aria-label="Co-browsing">
  <p class="status" id="status" data-cobrowse="status" role="status" aria-live="polite"></p>
  <p class="notice" data-cobrowse="notice" role="alert" hidden></p>
  <div class="row">
    <button type="button" class="primary" data-cobrowse="call" aria-describedby="status"></button>
  </div>
  <div class="swap" aria-live="polite">
    <div class="row" data-cobrowse="share">
      <button type="button" data-cobrowse="share-code">Share with the person I'm talking to</button>
    </div>
    <p class="code" data-cobrowse="code-box" hidden>Your code: <strong data-cobrowse="code"></strong><br>Read it to the person you are talking to.</p>
  </div>
  <div class="prompt" data-cobrowse="control-prompt" role="group" aria-labelledby="ask" hidden>
    <p class="ask" id="ask" role="alert"></p>
    <div class="row">
      <button type="button" class="primary" data-cobrowse="allow-control">Allow</button>
      <button type="button" data-cobrowse="deny-control">Deny</button>
    </div>
  </div>
  <div class="row" data-cobrowse="tools" role="group" aria-label="Sharing tools" hidden>
    <button type="button" data-cobrowse="control" aria-pressed="false">Give control</button>
    <button type="button" data-cobrowse="pointer" aria-pressed="false">Pointer</button>
    <button type="button" data-cobrowse="draw" aria-pressed="false">Draw</button>
  </div>
  <div class="row" data-cobrowse="chat-row" hidden>
    <button type="button" data-cobrowse="chat-toggle" aria-expanded="false" aria-controls="chat">Chat</button>
  </div>
  <div class="chat" id="chat" data-cobrowse="chat" role="region" aria-label="Chat" hidden>
    <ol data-cobrowse="chat-log" aria-live="polite"></ol>
    <form data-cobrowse="chat-form">
      <label for="chat-input">Message to the operator</label>
      <input id="chat-input" data-cobrowse="chat-input" autocomplete="off" maxlength="1000">
      <button type="submit">Send</button>
    </form>
  </div>
</div>`;
            ui = {
                status: root.querySelector('[data-cobrowse="status"]'),
                notice: root.querySelector('[data-cobrowse="notice"]'),
                call: root.querySelector('[data-cobrowse="call"]'),
                tools: root.querySelector('[data-cobrowse="tools"]'),
                control: root.querySelector('[data-cobrowse="control"]'),
                pointer: root.querySelector('[data-cobrowse="pointer"]'),
                draw: root.querySelector('[data-cobrowse="draw"]'),
                share: root.querySelector('[data-cobrowse="share"]'),
                shareCode: root.querySelector('[data-cobrowse="share-code"]'),
                codeBox: root.querySelector('[data-cobrowse="code-box"]'),
                code: root.querySelector('[data-cobrowse="code"]'),
                prompt: root.querySelector('[data-cobrowse="control-prompt"]'),
                ask: root.querySelector('#ask'),
                allow: root.querySelector('[data-cobrowse="allow-control"]'),
                deny: root.querySelector('[data-cobrowse="deny-control"]'),
                chatRow: root.querySelector('[data-cobrowse="chat-row"]'),
                chatToggle: root.querySelector('[data-cobrowse="chat-toggle"]'),
                chat: root.querySelector('[data-cobrowse="chat"]'),
                chatLog: root.querySelector('[data-cobrowse="chat-log"]'),
                chatForm: root.querySelector('[data-cobrowse="chat-form"]'),
                chatInput: root.querySelector('[data-cobrowse="chat-input"]'),
            };
            buildConversation();
            ui.call.addEventListener('click', () => {
                if (link.state === 'idle') start('call');
                else hangup();
            });
            ui.control.addEventListener('click', () => {
                link.sendRaw({ type: 'control', granted: !link.control });
            });
            ui.pointer.addEventListener('click', () => {
                link.tools.pointer = !link.tools.pointer;
                if (CB.engine) CB.engine.tools();
                render();
            });
            ui.draw.addEventListener('click', () => {
                link.tools.draw = !link.tools.draw;
                if (CB.engine) CB.engine.tools();
                render();
            });
            document.documentElement.appendChild(host);
            render();
        }

        function ordinal(n) {
            return n === 1 ? 'next' : `number ${n}`;
        }

        function render() {
            if (!ui) return;
            const s = link.state;
            const operators = link.participants.filter((p) => p.role === 'operator').map((p) => p.name || 'an operator');
            let text;
            if (s === 'idle') text = 'Need help? Call an operator to look at this page with you.';
            else if (s === 'calling') text = 'Calling…';
            else if (!hub.ws && readJSON(STORE)) text = 'Reconnecting…';
            else if (s === 'queued') text = link.position ? `Waiting for an operator: you are ${ordinal(link.position)} in the queue.` : 'Waiting for an operator…';
            else if (s === 'offered') text = 'An operator is being connected…';
            else if (s === 'connected') text = operators.length ? `Connected with ${operators.join(', ')}.` : 'Connected.';
            else text = s;
            if (s === 'connected' && link.control) text += ' They can act on this page.';
            if (outage.down) text = s === 'idle' ? UNAVAILABLE : `${UNAVAILABLE} ${text}`;
            ui.status.textContent = text;
            ui.call.textContent = s === 'idle' ? 'Call operator' : 'Hang up';
            // Each accessible name starts with the visible text, so someone
            // who speaks the label they see (voice control) reaches the button.
            ui.call.setAttribute('aria-label', s === 'idle' ? 'Call operator to share this page' : 'Hang up and stop sharing this page');
            ui.tools.hidden = s !== 'connected';
            ui.control.textContent = link.control ? 'Take back control' : 'Give control';
            ui.control.setAttribute('aria-label', link.control ? 'Take back control: the operator can only watch' : 'Give control: let the operator act on this page');
            ui.pointer.setAttribute('aria-label', 'Pointer: show the operator where your mouse is');
            ui.draw.setAttribute('aria-label', 'Draw over the page for the operator');
            ui.control.setAttribute('aria-pressed', String(link.control));
            ui.pointer.setAttribute('aria-pressed', String(link.tools.pointer));
            ui.draw.setAttribute('aria-pressed', String(link.tools.draw));
            ui.notice.hidden = !noticeText;
            ui.notice.textContent = noticeText;
            renderConversation();
        }

        // ---- the conversation: join code, request for control, chat ----

        function buildConversation() {
            ui.shareCode.addEventListener('click', () => {
                if (link.state === 'idle') { link.wantCode = true; start('call'); } else link.sendRaw({ type: 'code' });
            });
            ui.allow.addEventListener('click', () => answer(true));
            ui.deny.addEventListener('click', () => answer(false));
            ui.chatToggle.addEventListener('click', () => {
                chat.open = !chat.open;
                render();
                if (chat.open) ui.chatInput.focus();
            });
            // Enter in the field sends; the hub numbers, times and returns it.
            ui.chatForm.addEventListener('submit', (e) => {
                e.preventDefault();
                const text = ui.chatInput.value.trim();
                if (!text || !hub.open()) return;
                link.sendRaw({ type: 'chat', text });
                ui.chatInput.value = '';
            });
        }

        function answer(granted) {
            link.sendRaw({ type: 'answer_control', granted });
            closePrompt();
        }

        function askControl(name) {
            if (!ui || link.control) return;
            // Not focused: a customer typing in the page must not allow by
            // pressing Enter. The question is announced; Tab reaches it.
            ui.ask.textContent = `${name} asks to act on this page for you.`;
            ui.allow.setAttribute('aria-label', `Allow ${name} to act on this page`);
            ui.deny.setAttribute('aria-label', 'Deny: keep control yourself');
            ui.prompt.hidden = false;
        }

        function closePrompt() {
            if (ui) ui.prompt.hidden = true;
        }

        // The chat as this page knows it: every message by its number.
        const chat = {
            open: false,
            messages: new Map(),
            read() { return Number(readJSON(READ)) || 0; },
            add(list) {
                for (const m of list) {
                    if (!m || typeof m.n !== 'number' || this.messages.has(m.n)) continue;
                    this.messages.set(m.n, m);
                }
                // The page keeps what the hub keeps, no more.
                const keys = [...this.messages.keys()].sort((a, b) => a - b);
                for (const n of keys.slice(0, Math.max(0, keys.length - 200))) this.messages.delete(n);
                render();
            },
            clear() {
                this.messages.clear();
                this.open = false;
            },
        };

        let codeTimer = 0;

        function timeOf(secs) {
            const d = new Date(Number(secs) * 1000);
            return Number.isNaN(d.getTime()) ? '' : d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
        }

        function renderConversation() {
            const s = link.state;
            const code = readJSON(CODE);
            const live = code && code.until > Date.now() && s !== 'idle' ? code.code : '';
            ui.share.hidden = s === 'calling' || !!live;
            ui.codeBox.hidden = !live;
            ui.code.textContent = live;
            clearTimeout(codeTimer);
            // Gone from the screen once void.
            if (live) codeTimer = setTimeout(render, Math.max(1000, code.until - Date.now()));
            if (s === 'idle') closePrompt();
            // Messages are text: set as text, never parsed as markup.
            const messages = [...chat.messages.values()].sort((a, b) => a.n - b.n);
            if (ui.chatLog.childElementCount !== messages.length || (messages.length && ui.chatLog.lastElementChild.dataset.n !== String(messages[messages.length - 1].n))) {
                ui.chatLog.replaceChildren(...messages.map((m) => {
                    const li = document.createElement('li');
                    li.dataset.n = String(m.n);
                    const who = document.createElement('span');
                    who.className = 'who';
                    who.textContent = m.sender === link.me ? 'You' : String(m.name || m.role || '');
                    const when = document.createElement('span');
                    when.className = 'when';
                    when.textContent = ` ${timeOf(m.time)} `;
                    li.append(who, when, document.createTextNode(String(m.text)));
                    return li;
                }));
                ui.chatLog.scrollTop = ui.chatLog.scrollHeight;
            }
            const inSession = s !== 'idle' && s !== 'calling';
            ui.chatRow.hidden = !inSession;
            ui.chat.hidden = !inSession || !chat.open;
            const last = messages.length ? messages[messages.length - 1].n : 0;
            if (chat.open && inSession) writeJSON(READ, last);
            const unread = chat.open ? 0 : messages.filter((m) => m.n > chat.read() && m.sender !== link.me).length;
            ui.chatToggle.textContent = unread ? `Chat (${unread} new)` : 'Chat';
            ui.chatToggle.setAttribute('aria-expanded', String(chat.open && inSession));
            ui.chatToggle.setAttribute('aria-label', `${ui.chatToggle.textContent}: ${chat.open ? 'hide' : 'show'} the conversation with the operator`);
        }

        return {
            build,
            render,
            askControl,
            closePrompt,
            chat,
            notice(text) {
                noticeText = text;
                render();
                setTimeout(() => { if (noticeText === text) { noticeText = ''; render(); } }, 6000);
            },
        };
    })();

    whenReady(() => {
        // A session survives reloads and navigations of the tab that called:
        // it resumes at once.
        if (readJSON(STORE)) {
            widget.build();
            start('resume');
            return;
        }
        // Without one, the widget waits for a moment the page is idle (half
        // a second at most): its building and the layout it adds stay off
        // the page's own DOMContentLoaded and load.
        const later = W.requestIdleCallback ? (fn) => W.requestIdleCallback(fn, { timeout: 500 }) : (fn) => setTimeout(fn, 0);
        later(() => widget.build());
    });
})();

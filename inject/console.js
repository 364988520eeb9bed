// The operator's console: the control frame (sign-in, the queue, Respond,
// invite, hang-up, tools, participants) beside the content frame, which shows
// the customer's page through the proxy, same origin. The console holds the
// operator's link to the hub; the agent in the content frame finds it as
// `parent.__cobrowse.console` and shares the page through it.
(function consolePage() {
    'use strict';
    const PREFIX = '/__cobrowse/';
    const $ = (name) => document.querySelector(`[data-cobrowse="${name}"]`);
    const ui = {
        login: $('login'), loginError: $('login-error'), desk: $('desk'), me: $('me'), logout: $('logout'),
        status: $('status'), notice: $('notice'), respond: $('respond'), decline: $('decline'), hangup: $('hangup'), invite: $('invite'),
        tools: $('tools'), pointer: $('pointer'), draw: $('draw'), fade: $('fade'), clear: $('clear'),
        participants: $('participants'), queue: $('queue'), stage: $('stage'), viewport: $('viewport'),
        content: $('content'), idle: $('idle'),
    };
    const SAVED = 'cobrowse.console.session';

    // Tells the proxy this browser follows a session, so the content frame
    // is served the customer's documents and never repeats a side effect
    // (docs/driver.md). It proves it with the single-use token the hub gave
    // this connection in `joined`. Resolves once the cookie is set; no
    // session clears it.
    function bindBrowser(session, token) {
        const body = session ? JSON.stringify({ session, token }) : '';
        return fetch(PREFIX + 'bind', { method: 'POST', credentials: 'same-origin', headers: { 'content-type': 'application/json' }, body })
            .catch(() => { /* the page still works, as an unbound follower */ });
    }
    let bound = Promise.resolve();

    // The store as this operator knows it: the latest command per key, in the
    // order keys were last written, with a navigation dropping what was below
    // its frame (the hub's rules, docs/protocol.md). A content frame that
    // (re)loads applies what is stored for it from here.
    const mirror = new Map();
    function put(cmd) {
        mirror.delete(cmd.key);
        mirror.set(cmd.key, cmd);
        if (cmd.fn === 'navigate') {
            for (const k of [...mirror.keys()]) if (k.startsWith(cmd.key + '/')) mirror.delete(k);
        }
    }

    const state = {
        user: null, ws: null, session: null, offer: null, queue: [], phase: 'signed-out',
        retries: 0, viewport: null,
    };

    // The link the content frame's agent uses.
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
            if (state.ws && state.ws.readyState === 1 && this.joined) state.ws.send(JSON.stringify(full));
        },
        known(path) {
            const nav = mirror.get(path);
            return nav && nav.fn === 'navigate' ? nav.args[0] : undefined;
        },
        setKnown(path, url) {
            const nav = mirror.get(path);
            if (nav && nav.fn === 'navigate') nav.args = [url, ...nav.args.slice(1)];
        },
        stored(prefix) {
            return [...mirror.values()].filter((c) => c.key === prefix || c.key.startsWith(prefix + '/'));
        },
        notice(text) { notice(text); },
    };
    window.__cobrowse = { console: link };

    function engine() {
        try { const cb = ui.content.contentWindow.__cobrowse; return cb && cb.engine; } catch (e) { return null; }
    }

    let noticeTimer = 0;
    function notice(text) {
        ui.notice.textContent = text;
        ui.notice.hidden = !text;
        clearTimeout(noticeTimer);
        if (text) noticeTimer = setTimeout(() => { ui.notice.hidden = true; }, 6000);
    }

    // ---- sign-in ------------------------------------------------------------

    async function whoAmI() {
        const r = await fetch(`${PREFIX}me`, { credentials: 'same-origin' });
        if (!r.ok) return null;
        const body = await r.json();
        return body.user || null;
    }

    ui.login.addEventListener('submit', async (e) => {
        e.preventDefault();
        ui.loginError.hidden = true;
        const data = new FormData(ui.login);
        const r = await fetch(`${PREFIX}login`, {
            method: 'POST',
            credentials: 'same-origin',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ user: data.get('user'), password: data.get('password') }),
        }).catch(() => null);
        if (!r || !r.ok) {
            ui.loginError.textContent = !r ? 'The server cannot be reached.'
                : r.status === 429 ? 'Too many attempts; wait a moment and try again.' : 'Wrong user or password.';
            ui.loginError.hidden = false;
            return;
        }
        ui.login.reset();
        signedIn(String(data.get('user')));
    });

    ui.logout.addEventListener('click', async () => {
        if (link.joined) send({ type: 'hangup' });
        await fetch(`${PREFIX}logout`, { method: 'POST', credentials: 'same-origin' }).catch(() => null);
        sessionStorage.removeItem(SAVED);
        const ws = state.ws;
        state.ws = null;
        if (ws) ws.close();
        clearSession();
        state.phase = 'signed-out';
        ui.desk.hidden = true;
        ui.login.hidden = false;
    });

    function signedIn(user) {
        state.user = user;
        ui.me.textContent = user;
        ui.login.hidden = true;
        ui.desk.hidden = false;
        connect();
    }

    // ---- the hub ----------------------------------------------------------------

    function send(msg) {
        if (state.ws && state.ws.readyState === 1) state.ws.send(JSON.stringify(msg));
    }

    function connect() {
        const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
        const ws = new WebSocket(`${proto}//${location.host}${PREFIX}ws?role=operator`);
        state.ws = ws;
        state.phase = 'connecting';
        render();
        ws.onopen = () => {
            state.retries = 0;
            let saved = null;
            try { saved = JSON.parse(sessionStorage.getItem(SAVED) || 'null'); } catch (e) { /* none */ }
            if (saved) send({ type: 'resume', session: saved.session, resume: saved.resume });
            else ready();
        };
        ws.onmessage = (ev) => {
            let msg;
            try { msg = JSON.parse(ev.data); } catch (e) { return; }
            onMessage(msg);
        };
        ws.onclose = (ev) => {
            if (state.ws !== ws) return;
            state.ws = null;
            link.joined = false;
            if (ev.code === 4001) {
                // Resumed in another console window: this one steps back.
                clearSession('This session continues in another console window.');
                state.phase = 'signed-out';
                ui.status.textContent = 'This session continues in another console window. Reload to wait for calls here.';
                ui.respond.disabled = ui.decline.disabled = ui.hangup.disabled = ui.invite.disabled = true;
                return;
            }
            state.phase = 'reconnecting';
            render();
            const delay = Math.min(8000, 250 * 2 ** state.retries++);
            setTimeout(() => { if (!state.ws && state.user) connect(); }, delay);
        };
    }

    function ready() {
        state.phase = 'waiting';
        send({ type: 'ready' });
        render();
    }

    function onMessage(msg) {
        switch (msg.type) {
            case 'queue':
                state.queue = msg.calls || [];
                state.offer = msg.offer || null;
                break;
            case 'offer':
                state.offer = msg.session;
                break;
            case 'joined':
                state.session = msg.session;
                state.fresh = true;
                link.me = msg.participant;
                link.joined = true;
                state.phase = 'connected';
                state.offer = null;
                state.queue = [];
                sessionStorage.setItem(SAVED, JSON.stringify({ session: msg.session, resume: msg.resume }));
                bound = bindBrowser(msg.session, msg.bind);
                break;
            case 'replay': {
                // The session's current state, on joining; or, to
                // resynchronise a slow link, the state without this
                // operator's own commands, which the mirror keeps.
                if (state.fresh) mirror.clear();
                state.fresh = false;
                for (const c of msg.commands || []) put(c);
                const e = engine();
                const nav = mirror.get('top');
                if (e && nav && currentUrl() === nav.args[0]) {
                    for (const c of mirror.values()) if (c.key === 'top/@viewport') fitViewport(c.args); else e.receive(c);
                } else {
                    showPage();
                }
                break;
            }
            case 'command':
                put(msg);
                onCommand(msg);
                break;
            case 'status':
                if (msg.participants) link.participants = msg.participants;
                link.control = !!msg.control;
                state.sessionState = msg.state;
                { const e = engine(); if (e) e.status(); }
                break;
            case 'left':
            case 'ended':
                clearSession(msg.type === 'ended' ? 'The customer ended the session.' : 'You left the session.');
                ready();
                break;
            case 'error':
                if (msg.code === 'no_control') notice('View only: the customer has not given you control.');
                else if (msg.code === 'unknown_session' && msg.request === 'resume') { clearSession(); ready(); }
                else if (msg.code === 'not_offered') { state.offer = null; notice('That call was taken or withdrawn.'); }
                else notice(`The hub refused ${msg.request || 'a message'}: ${msg.message || msg.code}`);
                break;
            default:
                break;
        }
        render();
    }

    function onCommand(cmd) {
        if (cmd.key === 'top/@viewport') return fitViewport(cmd.args);
        const e = engine();
        // Without an agent in the content frame (still loading, or blank),
        // the console loads the customer's page itself; the agent applies
        // the rest from the mirror once it is there.
        if (cmd.key === 'top' && cmd.fn === 'navigate' && !e) return showPage();
        if (e) e.receive(cmd);
    }

    // Whether `url` is a path on the proxied site, the only kind of URL the
    // content frame may load: the hub's rule for navigation targets
    // (`navigation_target` in src/hub/protocol.rs), which the agent applies
    // too (`onThisSite` in share.js). Tabs and newlines vanish in URL
    // parsing (`/\t/evil.example` is `//evil.example`), so the URL is
    // parsed, never compared as text alone.
    function sitePath(url) {
        if (typeof url !== 'string' || url[0] !== '/' || /[\u0000-\u0020\u007f]/.test(url)) return false;
        // The content frame shows the site on the console's own origin.
        const site = location.origin;
        try { return new URL(url, site).origin === site; } catch (e) { return false; }
    }

    function currentUrl() {
        try { const l = ui.content.contentWindow.location; return l.pathname + l.search + l.hash; } catch (e) { return null; }
    }

    // Loads the customer's current page into the content frame, unless it
    // shows it already; its agent then applies what is stored for it.
    function showPage() {
        const nav = mirror.get('top');
        const vp = mirror.get('top/@viewport');
        if (vp) fitViewport(vp.args);
        ui.idle.hidden = true;
        ui.viewport.hidden = false;
        if (!nav) return;
        const url = nav.args[0];
        // Only paths on the proxied site are loaded into the content frame.
        if (!sitePath(url)) return;
        if (currentUrl() === url && engine()) return;
        // Loaded only once the proxy knows this browser follows the session.
        bound.then(() => { if (state.session) ui.content.contentWindow.location.replace(url); });
    }

    function clearSession(message) {
        mirror.clear();
        link.joined = false;
        link.me = null;
        link.participants = [];
        link.control = false;
        link.tools.pointer = link.tools.draw = false;
        state.session = null;
        sessionStorage.removeItem(SAVED);
        bound = bindBrowser(null);
        ui.content.src = 'about:blank';
        ui.viewport.hidden = true;
        ui.idle.hidden = false;
        if (message) notice(message);
    }

    // The content frame takes the customer's viewport size, so the page lays
    // out as theirs does and scroll positions mean the same; it is scaled
    // down to fit the stage when the console is smaller. Its dashed outline
    // is the customer's viewport.
    function fitViewport([w, h]) {
        state.viewport = [w, h];
        ui.viewport.style.width = `${w}px`;
        ui.viewport.style.height = `${h}px`;
        ui.viewport.dataset.width = w;
        ui.viewport.dataset.height = h;
        const room = ui.stage.getBoundingClientRect();
        const scale = Math.min(1, (room.width - 24) / w, (room.height - 24) / h);
        ui.viewport.style.transform = scale < 1 ? `scale(${scale})` : '';
    }
    window.addEventListener('resize', () => { if (state.viewport) fitViewport(state.viewport); });

    // ---- the controls --------------------------------------------------------------

    ui.respond.addEventListener('click', () => {
        if (!state.offer) return;
        send({ type: 'respond', session: state.offer });
    });
    // Passes the offered call on: the hub offers it to the next free
    // operator and not to this one again until it is ready anew.
    ui.decline.addEventListener('click', () => {
        if (!state.offer) return;
        send({ type: 'decline', session: state.offer });
        state.offer = null;
        render();
    });
    ui.hangup.addEventListener('click', () => send({ type: 'hangup' }));
    ui.invite.addEventListener('click', () => {
        send({ type: 'invite' });
        notice('Invitation sent to the next free operator.');
    });
    ui.pointer.addEventListener('click', () => {
        link.tools.pointer = !link.tools.pointer;
        const e = engine();
        if (e) e.tools();
        render();
    });
    ui.draw.addEventListener('click', () => {
        link.tools.draw = !link.tools.draw;
        const e = engine();
        if (e) e.tools();
        render();
    });
    ui.fade.addEventListener('change', () => { link.tools.fade = ui.fade.checked; });
    ui.clear.addEventListener('click', () => { const e = engine(); if (e) e.clear(); });

    function li(text, color) {
        const item = document.createElement('li');
        if (color) {
            const s = document.createElement('span');
            s.className = 'swatch';
            s.style.background = color;
            item.appendChild(s);
        }
        item.appendChild(document.createTextNode(text));
        return item;
    }

    function render() {
        const connected = state.phase === 'connected';
        let text;
        if (state.phase === 'connecting') text = 'Connecting…';
        else if (state.phase === 'reconnecting') text = 'Connection lost; reconnecting…';
        else if (connected) {
            const customer = link.participants.find((p) => p.role === 'customer');
            text = customer ? 'Connected with the customer.' : 'In the session; the customer is reconnecting.';
            text += link.control ? ' You have control.' : ' View only: the customer has not given you control.';
        } else if (state.offer) text = 'A customer is calling: press Respond.';
        else text = state.queue.length ? `${state.queue.length} call(s) waiting.` : 'Waiting for calls.';
        ui.status.textContent = text;
        ui.respond.disabled = connected || !state.offer;
        ui.decline.disabled = ui.respond.disabled;
        ui.hangup.disabled = !connected;
        ui.invite.disabled = !connected;
        ui.tools.disabled = !connected;
        ui.pointer.setAttribute('aria-pressed', String(link.tools.pointer));
        ui.draw.setAttribute('aria-pressed', String(link.tools.draw));
        ui.participants.replaceChildren(...(link.participants.length
            ? link.participants.map((p) => li(`${p.name || p.role}${p.id === link.me ? ' (you)' : ''} · ${p.role}`))
            : [li('Nobody yet.')]));
        ui.queue.replaceChildren(...(state.queue.length
            ? state.queue.map((c, i) => li(`Call ${i + 1}${c.session === state.offer ? ' (offered to you)' : ''}`))
            : [li('No calls waiting.')]));
    }

    whoAmI().then((user) => { if (user) signedIn(user); }).catch(() => { /* stay on the sign-in form */ });
    render();
})();

// The operator's console: the control frame (sign-in, the queue, Respond,
// invite, hang-up, tools, participants) beside the content frame, which shows
// the customer's page through the proxy, on the site's origin. The console is
// served on an origin of its own and holds the operator's link to the hub;
// the site's scripts cannot reach it. The agent in the content frame and the
// console talk by postMessage only, each checking the other's origin (and the
// console that the message comes from its content frame): the frame gets its
// one session's commands and the credential that binds it to that session,
// and can send difference commands, nothing else.
(function consolePage() {
    'use strict';
    const PREFIX = '/__cobrowse/';
    // `SITE` (the site's public origin or null, and its port) is put in scope
    // by the server.
    const SITE_ORIGIN = SITE.origin || new URL(`${location.protocol}//${location.hostname}:${SITE.port}`).origin;
    const BOOTSTRAP = PREFIX + 'frame';
    const $ = (name) => document.querySelector(`[data-cobrowse="${name}"]`);
    const ui = {
        login: $('login'), loginError: $('login-error'), desk: $('desk'), me: $('me'), logout: $('logout'),
        status: $('status'), notice: $('notice'), respond: $('respond'), decline: $('decline'), hangup: $('hangup'), invite: $('invite'),
        tools: $('tools'), pointer: $('pointer'), draw: $('draw'), fade: $('fade'), clear: $('clear'),
        participants: $('participants'), queue: $('queue'), stage: $('stage'), viewport: $('viewport'),
        content: $('content'), idle: $('idle'),
        requestControl: $('request-control'), joinCode: $('join-code'), address: $('address'),
        back: $('back'), forward: $('forward'), reload: $('reload'), open: $('open'),
        chat: $('chat'), chatLog: $('chat-log'), chatForm: $('chat-form'), chatInput: $('chat-input'),
    };
    const SAVED = 'cobrowse.console.session';

    // The store as this operator knows it: the latest command per key, in the
    // order keys were last written, with a navigation dropping what was below
    // its frame (the hub's rules, docs/protocol.md). A content frame that
    // (re)loads applies what is stored for it from here (`commandStore`, hub.js).
    const mirror = commandStore();
    const put = mirror.put;

    const state = {
        user: null, session: null, offer: null, queue: [], phase: 'signed-out',
        viewport: null,
        // This participant's session and single-use bind token: binds the content
        // frame's browser as a follower of this session, and nothing more.
        credential: null, boundSession: null,
    };

    // What the console knows of its content frame: whether an agent there
    // said hello (and on which page), and the session this browser was bound
    // to from it.
    const frame = { ready: false, url: null };

    // The operator's part in the session, as the content frame is told it.
    const link = {
        me: null,
        participants: [],
        control: false,
        joined: false,
        tools: { pointer: false, draw: false, fade: false },
    };

    // Only to the site's origin: a page of any other origin in the frame
    // gets nothing.
    function toFrame(msg) {
        const w = ui.content.contentWindow;
        if (w) w.postMessage({ cobrowse: 'console', ...msg }, SITE_ORIGIN);
    }
    function statusOf() {
        return { me: link.me, participants: link.participants, control: link.control, joined: link.joined };
    }

    // What the content frame may ask: its session's state on each page
    // load, and to send a difference command; nothing of the queue, offers
    // or other sessions.
    window.addEventListener('message', (ev) => {
        if (ev.origin !== SITE_ORIGIN || ev.source !== ui.content.contentWindow) return;
        const msg = ev.data;
        if (!msg || msg.cobrowse !== 'frame' || typeof msg.type !== 'string') return;
        switch (msg.type) {
            case 'hello':
                frame.ready = true;
                frame.url = typeof msg.url === 'string' ? msg.url : null;
                toFrame({
                    type: 'init',
                    session: state.session,
                    ...statusOf(),
                    tools: link.tools,
                    commands: mirror.values(),
                    // The bootstrap page binds the browser, then shows the page.
                    bind: frame.url === BOOTSTRAP && state.session ? state.credential : null,
                    show: (mirror.get('top') || { args: [] }).args[0],
                });
                break;
            case 'bound':
                if (msg.session && msg.session === state.session) state.boundSession = state.session;
                break;
            case 'bye':
                frame.ready = false;
                break;
            case 'command':
                relay(msg.command);
                break;
            case 'known': {
                const nav = typeof msg.path === 'string' && mirror.get(msg.path);
                if (nav && nav.fn === VOCABULARY.navigate && typeof msg.url === 'string') nav.args = [msg.url, ...nav.args.slice(1)];
                break;
            }
            case 'notice':
                notice(String(msg.text || '').slice(0, 300));
                break;
            default:
                break;
        }
    });

    // A difference command from the content frame, rebuilt from its fields
    // so nothing but a command reaches the hub.
    function relay(cmd) {
        if (!cmd || typeof cmd.key !== 'string' || typeof cmd.fn !== 'string') return;
        const attribute = cmd.attribute === 'all' ? 'all' : 'others';
        const full = { type: 'command', key: cmd.key, attribute, fn: cmd.fn, args: Array.isArray(cmd.args) ? cmd.args : [] };
        put(full);
        if (link.joined) hub.send(full);
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
        hub.close();
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

    // The store not answering is said in the status line until it does.
    const outage = storeOutage(PREFIX, () => render());

    function send(msg) {
        hub.send(msg);
    }

    const hub = hubLink('operator', PREFIX, {
        open() {
            let saved = null;
            try { saved = JSON.parse(sessionStorage.getItem(SAVED) || 'null'); } catch (e) { /* none */ }
            if (saved) send({ type: 'resume', session: saved.session, resume: saved.resume });
            else ready();
        },
        message: onMessage,
        closed(how) {
            link.joined = false;
            if (how === 'replaced') {
                // Resumed in another console window: this one steps back.
                clearSession('This session continues in another console window.');
                state.phase = 'signed-out';
                ui.status.textContent = 'This session continues in another console window. Reload to wait for calls here.';
                ui.respond.disabled = ui.decline.disabled = ui.hangup.disabled = ui.invite.disabled = true;
                return;
            }
            state.phase = 'reconnecting';
            render();
        },
        wanted: () => !!state.user,
    });

    function connect() {
        hub.connect();
        state.phase = 'connecting';
        render();
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
                outage.recovered();
                state.session = msg.session;
                state.fresh = true;
                link.me = msg.participant;
                link.joined = true;
                state.phase = 'connected';
                state.offer = null;
                state.queue = [];
                sessionStorage.setItem(SAVED, JSON.stringify({ session: msg.session, resume: msg.resume }));
                // The content frame binds its browser to the session with the
                // single-use token the hub gave this connection in `joined`
                // (docs/protocol.md, "Binding a browser").
                state.credential = { session: msg.session, token: msg.bind };
                state.boundSession = null;
                break;
            case 'replay': {
                outage.recovered();
                // The session's current state, on joining; or, to
                // resynchronise a slow link, the state without this
                // operator's own commands, which the mirror keeps.
                if (state.fresh) mirror.clear();
                state.fresh = false;
                for (const c of msg.commands || []) put(c);
                const nav = mirror.get('top');
                if (frame.ready && nav && frame.url === nav.args[0] && state.boundSession === state.session) {
                    const vp = mirror.get('top/@viewport');
                    if (vp) fitViewport(vp.args);
                    toFrame({ type: 'replay', commands: mirror.values() });
                } else {
                    showPage();
                }
                break;
            }
            case 'command':
                outage.recovered();
                put(msg);
                onCommand(msg);
                // Commands come by the dozen a second (keys, the pointer,
                // carets); of the console's own view only the address bar
                // shows one, the top frame's navigation. Rebuilding the
                // rest for each would keep this page's main thread, which
                // relays the next command, busy with styles and layout.
                if (msg.key !== 'top') return;
                break;
            case 'status':
                if (msg.participants) link.participants = msg.participants;
                link.control = !!msg.control;
                state.sessionState = msg.state;
                toFrame({ type: 'status', ...statusOf() });
                break;
            case 'control_answer':
                notice(msg.granted ? 'The customer gave you control.' : 'The customer declined to give you control.');
                break;
            case 'chat':
                chatAdd([msg]);
                break;
            case 'chat_log':
                chatAdd(Array.isArray(msg.messages) ? msg.messages : []);
                break;
            case 'left':
            case 'ended':
                clearSession(msg.type === 'ended' ? 'The customer ended the session.' : 'You left the session.');
                ready();
                break;
            case 'error':
                if (msg.code === 'unavailable') outage.refused();
                else if (msg.code === 'no_control') notice('View only: the customer has not given you control.');
                else if (msg.code === 'unknown_code') notice('No session has that code: check it with the customer. A code works once, and not for long.');
                else if (msg.request === 'join_code' || msg.request === 'chat' || msg.request === 'request_control') notice(msg.message || msg.code);
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
        if (cmd.key === 'top/@viewport') fitViewport(cmd.args);
        // Without an agent in the content frame (still loading, or blank),
        // the console loads the customer's page itself; the agent applies
        // the rest from the mirror once it is there.
        if (cmd.key === 'top' && cmd.fn === VOCABULARY.navigate && !frame.ready) return showPage();
        if (frame.ready) toFrame({ type: 'command', command: cmd });
    }


    // Navigates the content frame (a frame of ours may be sent anywhere,
    // across origins), replacing its history entry.
    function load(url) {
        frame.ready = false;
        try { ui.content.contentWindow.location.replace(url); } catch (e) { ui.content.src = url; }
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
        if (!sitePath(url, SITE_ORIGIN)) return;
        if (frame.ready && frame.url === url && state.boundSession === state.session) return;
        if (!state.session) return;
        // The customer's page is loaded only once the proxy knows this
        // browser follows the session: the bootstrap page on the site's
        // origin binds it first, then shows the page.
        if (state.boundSession !== state.session) load(SITE_ORIGIN + BOOTSTRAP);
        else load(SITE_ORIGIN + url);
    }

    function clearSession(message) {
        mirror.clear();
        chat.clear();
        link.joined = false;
        link.me = null;
        link.participants = [];
        link.control = false;
        link.tools.pointer = link.tools.draw = false;
        state.session = null;
        state.credential = null;
        state.boundSession = null;
        frame.ready = false;
        sessionStorage.removeItem(SAVED);
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
        toFrame({ type: 'tools', tools: link.tools });
        render();
    });
    ui.draw.addEventListener('click', () => {
        link.tools.draw = !link.tools.draw;
        toFrame({ type: 'tools', tools: link.tools });
        render();
    });
    ui.fade.addEventListener('change', () => {
        link.tools.fade = ui.fade.checked;
        toFrame({ type: 'tools', tools: link.tools });
    });
    ui.clear.addEventListener('click', () => toFrame({ type: 'clear' }));

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
        if (outage.down) text = `${UNAVAILABLE} ${text}`;
        ui.status.textContent = text;
        ui.respond.disabled = connected || !state.offer;
        ui.decline.disabled = ui.respond.disabled;
        ui.hangup.disabled = !connected;
        ui.invite.disabled = !connected;
        ui.tools.disabled = !connected;
        ui.pointer.setAttribute('aria-pressed', String(link.tools.pointer));
        ui.draw.setAttribute('aria-pressed', String(link.tools.draw));
        renderConversation(connected);
        ui.participants.replaceChildren(...(link.participants.length
            ? link.participants.map((p) => li(`${p.name || p.role}${p.id === link.me ? ' (you)' : ''} · ${p.role}`))
            : [li('Nobody yet.')]));
        ui.queue.replaceChildren(...(state.queue.length
            ? state.queue.map((c, i) => li(`Call ${i + 1}${c.session === state.offer ? ' (offered to you)' : ''}`))
            : [li('No calls waiting.')]));
    }

    // ---- the conversation: join by code, the address bar, control, chat ----

    // A code the customer reads out joins that session at once, past the
    // queue; the hub answers as for Respond. The code is not kept here.
    ui.joinCode.addEventListener('submit', (e) => {
        e.preventDefault();
        const field = ui.joinCode.elements.code;
        const code = field.value.replace(/[\s-]+/g, '');
        field.value = '';
        if (code && !link.joined) send({ type: 'join_code', code });
    });

    ui.requestControl.addEventListener('click', () => {
        send({ type: 'request_control' });
        notice('Asked the customer for control; waiting for the answer…');
    });

    // The address bar: what the operator types is opened by the driver's
    // browser (the customer's), once, like a link the operator follows; the
    // navigation that follows reaches everyone. Only pages of the proxied
    // site, by the same rule as every navigation (`sitePath`).
    function addressPath(typed) {
        let u;
        try { u = new URL(typed, SITE_ORIGIN + '/'); } catch (e) { return null; }
        if (u.origin !== new URL(SITE_ORIGIN).origin) return null;
        const path = u.pathname + u.search + u.hash;
        return sitePath(path, SITE_ORIGIN) ? path : null;
    }
    function go(what, path) {
        if (!link.joined) return;
        if (!link.control) {
            notice('View only: request control from the customer first.');
            return;
        }
        const args = path ? [what, path] : [what];
        send({ type: 'command', key: 'top/@go', attribute: 'others', fn: 'go', args });
    }
    ui.address.addEventListener('submit', (e) => {
        e.preventDefault();
        const field = ui.address.elements.url;
        const typed = field.value.trim();
        const path = addressPath(typed);
        if (!path) {
            notice(`Only pages of this site can be opened: ${typed.slice(0, 120)} is not one.`);
            return;
        }
        go('load', path);
        field.blur();
    });
    ui.back.addEventListener('click', () => go('back'));
    ui.forward.addEventListener('click', () => go('forward'));
    ui.reload.addEventListener('click', () => go('reload'));

    // The chat: every message by its number, as the hub numbered it.
    const chat = {
        messages: new Map(),
        unread: 0,
        clear() { this.messages.clear(); this.unread = 0; ui.chatLog.replaceChildren(); },
    };
    const TITLE = document.title;
    function chatAdd(list) {
        let fresh = 0;
        for (const m of list) {
            if (!m || typeof m.n !== 'number' || chat.messages.has(m.n)) continue;
            chat.messages.set(m.n, m);
            if (m.sender !== link.me) fresh++;
        }
        const keys = [...chat.messages.keys()].sort((a, b) => a - b);
        for (const n of keys.slice(0, Math.max(0, keys.length - 200))) chat.messages.delete(n);
        // Messages are text: set as text, never parsed as markup.
        ui.chatLog.replaceChildren(...keys.filter((n) => chat.messages.has(n)).map((n) => {
            const m = chat.messages.get(n);
            const item = document.createElement('li');
            item.dataset.n = String(n);
            const who = document.createElement('span');
            who.className = 'who';
            who.textContent = m.sender === link.me ? 'You' : String(m.name || m.role || '');
            const when = document.createElement('span');
            when.className = 'when';
            const d = new Date(Number(m.time) * 1000);
            when.textContent = Number.isNaN(d.getTime()) ? ' ' : ` ${d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })} `;
            item.append(who, when, document.createTextNode(String(m.text)));
            return item;
        }));
        ui.chatLog.scrollTop = ui.chatLog.scrollHeight;
        // Unread while the operator looks elsewhere: in the tab's title.
        if (document.hidden && fresh) {
            chat.unread += fresh;
            document.title = `(${chat.unread}) ${TITLE}`;
        }
    }
    document.addEventListener('visibilitychange', () => {
        if (!document.hidden) { chat.unread = 0; document.title = TITLE; }
    });
    ui.chatForm.addEventListener('submit', (e) => {
        e.preventDefault();
        const text = ui.chatInput.value.trim();
        if (!text || !link.joined) return;
        send({ type: 'chat', text });
        ui.chatInput.value = '';
    });

    function renderConversation(connected) {
        ui.requestControl.disabled = !connected || link.control;
        for (const el of [ui.joinCode.elements.code, ui.joinCode.querySelector('button')]) el.disabled = connected || state.phase === 'signed-out';
        const field = ui.address.elements.url;
        for (const el of [field, ui.back, ui.forward, ui.reload, ui.open]) el.disabled = !connected;
        // The customer's current URL, unless the operator is typing one.
        const nav = mirror.get('top');
        if (document.activeElement !== field) field.value = connected && nav ? SITE_ORIGIN + nav.args[0] : '';
        ui.chat.hidden = !connected;
    }

    whoAmI().then((user) => { if (user) signedIn(user); }).catch(() => { /* stay on the sign-in form */ });
    render();
})();

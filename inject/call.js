// The customer's call: the link to the hub, the session kept across the
// tab's pages, and the widget's behaviour in every state. The agent
// (agent.js) loads it in the customer's top window only when it is needed:
// the customer presses the widget's call or share button, or a session of
// this tab resumes on a new page. Pages without a call never load it.
const W = window;
const CB = W.__cobrowse;
if (!CB || CB.call || !CB.isRoot || CB.operator) return;
const loadEngine = CB.loadEngine;

// ---- the customer's link to the hub -----------------------------------

const STORE = CB.widget.sessionKey;
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
    let ui = null;
    let noticeText = '';

    // What the idle face (built by the agent) does not have.
    const MORE = `
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
  </div>`;

    function build() {
        if (ui) return;
        const root = CB.widget.root();
        root.querySelector('.box').insertAdjacentHTML('beforeend', MORE);
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
        if (s === 'idle') text = CB.widget.idle.status;
        else if (s === 'calling') text = 'Calling…';
        else if (!hub.ws && readJSON(STORE)) text = 'Reconnecting…';
        else if (s === 'queued') text = link.position ? `Waiting for an operator: you are ${ordinal(link.position)} in the queue.` : 'Waiting for an operator…';
        else if (s === 'offered') text = 'An operator is being connected…';
        else if (s === 'connected') text = operators.length ? `Connected with ${operators.join(', ')}.` : 'Connected.';
        else text = s;
        if (s === 'connected' && link.control) text += ' They can act on this page.';
        if (outage.down) text = s === 'idle' ? UNAVAILABLE : `${UNAVAILABLE} ${text}`;
        ui.status.textContent = text;
        ui.call.textContent = s === 'idle' ? CB.widget.idle.call : 'Hang up';
        // Each accessible name starts with the visible text, so someone
        // who speaks the label they see (voice control) reaches the button.
        ui.call.setAttribute('aria-label', s === 'idle' ? CB.widget.idle.callLabel : 'Hang up and stop sharing this page');
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

// What the agent calls: the widget's two buttons of the idle face, and
// a session of this tab resuming on this page.
CB.call = {
    press(which) {
        widget.build();
        if (which === 'call') {
            if (link.state === 'idle') start('call');
            else hangup();
        } else if (link.state === 'idle') {
            link.wantCode = true;
            start('call');
        } else {
            link.sendRaw({ type: 'code' });
        }
    },
    resume() {
        widget.build();
        start('resume');
    },
};

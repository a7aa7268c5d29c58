/* Agent console. Speaks the protocol in docs/console-protocol.md.
 * Plain ES2015, no dependencies, no globals. Everything that comes from the server
 * (shopper, bot and agent text, names, keys, cases) is rendered with textContent or
 * setAttribute, never innerHTML. */
(function () {
  'use strict';

  var WS_PATH = '/console/ws';
  var CONSOLE_PATH = '/console';
  var MAX_LEN = 4000;
  var COUNTER_FROM = 3600;
  var BACKOFF_S = [1, 2, 4, 8, 15];
  var PING_MS = 25000;            // application-level keep-alive
  var STALE_MS = 65000;           // no frame for this long: the socket is dead
  var FAILS_BEFORE_PROBE = 2;     // sockets failing before they open: check the session
  var WARNING_S = 600;            // SLA "warning" in the last 10 minutes
  var LAST_TEXT_MAX = 140;
  var MAX_NOTICES = 5;

  var REASONS = {
    shopper_request: 'Asked for a person',
    severe_complaint: 'Severe complaint',
    repeated_complaint: 'Repeated complaint',
    allergy: 'Allergy or health issue',
    disputed_refusal: 'Disputes a refusal',
    fallback: 'Bot did not understand',
    agent_initiated: 'Taken over by an agent',
    recovered: 'Back in the queue after a restart',
    unspecified: 'Handed over by the bot'
  };
  var URGENCY_LABELS = { health: 'Urgent · health', severe: 'Urgent · severe complaint' };
  var FACT_LABELS = {
    allergic_reaction: 'Allergic reaction', changed_mind: 'Changed mind', defective: 'Defective',
    damaged_in_transit: 'Damaged in transit', not_as_described: 'Not as described', wrong_size: 'Wrong size',
    fast_refund: 'Fast refund', refund: 'Refund', refused: 'Refused', exchange: 'Exchange',
    replacement: 'Replacement', compensation: 'Compensation', ticket: 'Ticket',
    severe_complaint: 'Severe complaint (person)', repeated_complaint: 'Repeated complaint (person)',
    out_of_window: 'Out of the return window', reason_not_accepted: 'Reason not accepted here'
  };
  var PLACEHOLDER = /\{(order|item|case|name)\}/;
  var CHANNELS = { webchat: 'Web chat', telegram: 'Telegram', slack: 'Slack', rest: 'REST', socketio: 'Socket.IO' };
  var LANGUAGES = { en: 'EN', zh: '中文', 'zh-CN': '中文', 'zh-cn': '中文' };
  var SLA_LABELS = { ok: 'SLA ok', warning: 'SLA warning', breached: 'SLA breached', met: 'SLA met' };
  var SLA_RANK = { ok: 0, warning: 1, breached: 2 };
  var STATUS_LABELS = { queued: 'Waiting', assigned: 'Assigned', resolved: 'Resolved', returned: 'Handed back to the bot' };
  var OUTCOME_LABELS = {
    resolved: 'Resolved',
    refund_issued: 'Refund issued',
    replacement_sent: 'Replacement sent',
    no_action_needed: 'No action needed',
    escalated: 'Escalated'
  };
  var ERROR_LABELS = {
    invalid_json: 'The server could not read a message from the console.',
    invalid_frame: 'The server refused a message from the console.',
    not_found: 'That conversation no longer exists.',
    not_yours: 'This conversation is not assigned to you.',
    already_claimed: 'That conversation was already claimed.',
    empty_text: 'The message is empty.',
    text_too_long: 'The message is too long (at most 4000 characters).',
    unknown_agent: 'There is no such agent.',
    invalid_outcome: 'That outcome is not valid.',
    unfilled_variable: 'Fill in the canned reply first.'
  };
  var TEXT_ERRORS = { empty_text: 1, text_too_long: 1, not_yours: 1, unfilled_variable: 1 };

  /* ---------- helpers ---------- */

  function $(id) { return document.getElementById(id); }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function str(value) { return value === undefined || value === null ? '' : String(value); }
  function num(value) { return typeof value === 'number' && isFinite(value) ? value : null; }

  function truncate(text, max) {
    var t = str(text).replace(/\s+/g, ' ').trim();
    var chars = Array.from ? Array.from(t) : t.split('');
    return chars.length > max ? chars.slice(0, max - 1).join('') + '…' : t;
  }

  function pad(n) { return n < 10 ? '0' + n : String(n); }

  // A button's payload that reached us without its title (an old message, a client that
  // sent only the payload): "/choose{"choice":"medium"}" reads "Pressed: choose (medium)".
  var PAYLOAD_TEXT = /^\/([A-Za-z0-9_-]+)(\{.*\})?$/;
  function readable(text) {
    var t = str(text);
    var m = PAYLOAD_TEXT.exec(t.trim());
    if (!m) { return t; }
    var values = [];
    if (m[2]) {
      try {
        var data = JSON.parse(m[2]);
        Object.keys(data || {}).forEach(function (k) { values.push(str(data[k])); });
      } catch (e) { values = []; }
    }
    return 'Pressed: ' + m[1].replace(/_/g, ' ') + (values.length ? ' (' + values.join(', ') + ')' : '');
  }

  function sameDay(a, b) {
    return a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();
  }

  // Times are shown in the shop's time zone (hello's `zone`), with the zone: "14:05 GMT+8"
  // today, "3 Dec 14:05 GMT+8" on another day. The browser's own zone if it has no such zone.
  var zone = null;
  var formatters = {};
  function formatter(kind) {
    var key = kind + '|' + (zone || '');
    if (formatters[key]) { return formatters[key]; }
    var options = kind === 'day'
      ? { day: 'numeric', month: 'short', year: 'numeric' }
      : { day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit', hour12: false, timeZoneName: 'short' };
    if (zone) { options.timeZone = zone; }
    var f;
    try { f = new Intl.DateTimeFormat('en-GB', options); } catch (e) {
      delete options.timeZone;
      f = new Intl.DateTimeFormat('en-GB', options);
    }
    formatters[key] = f;
    return f;
  }

  function parts(seconds) {
    var out = {};
    formatter('time').formatToParts(new Date(seconds * 1000)).forEach(function (p) { out[p.type] = p.value; });
    return out;
  }

  function formatTime(seconds) {
    var s = num(seconds);
    if (s === null) { return ''; }
    var p = parts(s);
    var day = formatter('day').format(new Date(s * 1000));
    var today = formatter('day').format(new Date(serverNowMs()));
    var time = p.hour + ':' + p.minute + ' ' + (p.timeZoneName || '');
    return (day === today ? '' : p.day + ' ' + p.month + ' ') + time.trim();
  }

  function formatFull(seconds) {
    var s = num(seconds);
    if (s === null) { return ''; }
    var p = parts(s);
    return formatter('day').format(new Date(s * 1000)) + ' ' + p.hour + ':' + p.minute + ' ' +
      (p.timeZoneName || '') + (zone ? ' (' + zone + ')' : '');
  }

  // "12 min", "2 h 05 min", "3 d 4 h": how long ago, for lists.
  function formatAgo(totalSeconds) {
    var s = Math.max(0, Math.floor(totalSeconds));
    if (s < 60) { return '<1 min'; }
    var m = Math.floor(s / 60);
    if (m < 60) { return m + ' min'; }
    var h = Math.floor(m / 60);
    if (h < 24) { return h + ' h ' + pad(m % 60) + ' min'; }
    return Math.floor(h / 24) + ' d ' + (h % 24) + ' h';
  }

  function formatDuration(totalSeconds) {
    var s = Math.max(0, Math.floor(totalSeconds));
    var d = Math.floor(s / 86400);
    var h = Math.floor((s % 86400) / 3600);
    var m = Math.floor((s % 3600) / 60);
    var sec = s % 60;
    if (d > 0) { return d + 'd ' + h + 'h'; }
    if (h > 0) { return h + 'h ' + pad(m) + 'm'; }
    if (m > 0) { return m + 'm ' + pad(sec) + 's'; }
    return sec + 's';
  }

  function reasonLabel(reason) {
    var r = str(reason);
    return Object.prototype.hasOwnProperty.call(REASONS, r) ? REASONS[r] : r;
  }
  function channelLabel(channel) {
    var c = str(channel);
    return Object.prototype.hasOwnProperty.call(CHANNELS, c) ? CHANNELS[c] : c;
  }
  // "Web chat → Telegram" for a conversation the shopper carried over from another channel.
  function channelsLabel(item) {
    var trail = Array.isArray(item.channels) && item.channels.length ? item.channels : [item.channel];
    return trail.map(channelLabel).join(' → ');
  }
  function languageLabel(language) {
    var l = str(language);
    return Object.prototype.hasOwnProperty.call(LANGUAGES, l) ? LANGUAGES[l] : l.toUpperCase();
  }
  function outcomeLabel(outcome) {
    var o = str(outcome);
    if (Object.prototype.hasOwnProperty.call(OUTCOME_LABELS, o)) { return OUTCOME_LABELS[o]; }
    o = o.replace(/_/g, ' ');
    return o.charAt(0).toUpperCase() + o.slice(1);
  }

  /* ---------- state ---------- */

  var me = null;                 // {username, name}
  var canned = [];
  var agents = [];               // [{username, name, online}]
  var outcomes = [];
  var lists = { queue: [], mine: [], others: [] };
  var stateSeen = false;
  var clockOffsetMs = 0;         // server clock minus browser clock
  var current = null;            // {key, item, loaded, gone, transcript: []}
  var unread = {};               // key -> count of entries that arrived while not open
  var pendingClaims = {};        // key -> true
  var pendingText = null;        // {key, kind, text}: last reply/note sent, until echoed
  var tickers = [];              // [{kind, node, item}] refreshed every second

  var ws = null;
  var connected = false;         // socket open and hello received
  var attempt = 0;
  var failsBeforeOpen = 0;
  var reconnectTimer = null;
  var countdownTimer = null;
  var pingTimer = null;
  var staleTimer = null;
  var leaving = false;
  var probing = false;

  function serverNowMs() { return Date.now() + clockOffsetMs; }
  function serverNow() { return serverNowMs() / 1000; }

  function agentName(username) {
    var u = str(username);
    if (!u) { return ''; }
    if (me && me.username === u) { return str(me.name) || u; }
    for (var i = 0; i < agents.length; i++) {
      if (agents[i] && agents[i].username === u) { return str(agents[i].name) || u; }
    }
    return u;
  }

  function findItem(key) {
    var names = ['mine', 'queue', 'others'];
    for (var n = 0; n < names.length; n++) {
      var list = lists[names[n]];
      for (var i = 0; i < list.length; i++) {
        if (list[i] && list[i].key === key) { return { item: list[i], list: names[n] }; }
      }
    }
    return null;
  }

  function isMine() {
    if (!current || !current.item || current.gone || !me) { return false; }
    return current.item.status === 'assigned' && current.item.agent === me.username;
  }

  // The server's SLA, escalated by the local clock between two state frames.
  function effectiveSla(item) {
    var sla = str(item.sla);
    if (sla === 'met' || !Object.prototype.hasOwnProperty.call(SLA_RANK, sla)) { return sla; }
    var due = num(item.first_response_due);
    if (due === null || num(item.first_response_at) !== null) { return sla; }
    var left = due - serverNow();
    var local = left <= 0 ? 'breached' : (left <= WARNING_S ? 'warning' : 'ok');
    return SLA_RANK[local] > SLA_RANK[sla] ? local : sla;
  }

  /* ---------- notices ---------- */

  function notice(text, kind) {
    var box = $('notices');
    var n = el('div', 'notice notice--' + (kind || 'error'));
    n.setAttribute('data-testid', 'notice');
    n.setAttribute('role', kind === 'info' ? 'status' : 'alert');
    n.appendChild(el('span', 'notice__text', text));
    var close = el('button', 'notice__close', '×');
    close.type = 'button';
    close.setAttribute('aria-label', 'Dismiss');
    close.setAttribute('data-testid', 'notice-dismiss');
    close.addEventListener('click', function () {
      if (n.parentNode) { n.parentNode.removeChild(n); }
    });
    n.appendChild(close);
    box.appendChild(n);
    while (box.children.length > MAX_NOTICES) { box.removeChild(box.firstChild); }
  }

  /* ---------- connection status ---------- */

  function setConn(state, text) {
    var c = $('conn');
    c.setAttribute('data-state', state);
    $('conn-text').textContent = text;
  }

  function showBanner(text) {
    $('banner-text').textContent = text;
    $('banner').hidden = false;
  }
  function hideBanner() { $('banner').hidden = true; }

  /* ---------- websocket ---------- */

  function wsUrl() {
    var proto = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
    return proto + '//' + window.location.host + WS_PATH;
  }

  function send(frame) {
    if (!ws || ws.readyState !== 1 || !connected) { return false; }
    try { ws.send(JSON.stringify(frame)); } catch (e) { return false; }
    return true;
  }

  function clearTimers() {
    clearInterval(pingTimer); pingTimer = null;
    clearTimeout(staleTimer); staleTimer = null;
  }

  function armStale() {
    clearTimeout(staleTimer);
    staleTimer = setTimeout(function () {
      if (ws) { try { ws.close(); } catch (e) { /* ignore */ } }
    }, STALE_MS);
  }

  function connect() {
    clearTimeout(reconnectTimer); reconnectTimer = null;
    clearInterval(countdownTimer); countdownTimer = null;
    var opened = false;
    var socket;
    try {
      socket = new WebSocket(wsUrl());
    } catch (e) {
      scheduleReconnect(false);
      return;
    }
    ws = socket;
    setConn('connecting', attempt === 0 ? 'Connecting…' : 'Reconnecting…');
    socket.onopen = function () {
      if (ws !== socket) { return; }
      opened = true;
      failsBeforeOpen = 0;
      armStale();
      pingTimer = setInterval(function () { send({ type: 'ping' }); }, PING_MS);
    };
    socket.onmessage = function (event) {
      if (ws !== socket) { return; }
      armStale();
      var frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      if (!frame || typeof frame !== 'object') { return; }
      try { handle(frame); } catch (err) {
        if (window.console && window.console.error) { window.console.error(err); }
      }
    };
    socket.onclose = function (event) {
      if (ws !== socket) { return; }
      ws = null;
      connected = false;
      clearTimers();
      pendingClaims = {};
      renderAll();
      if (leaving) { return; }
      if (event && event.code === SESSION_ENDED) { goToSignIn(); return; }  // signed out, removed, new password
      scheduleReconnect(opened);
    };
    socket.onerror = function () { /* onclose follows */ };
  }

  var SESSION_ENDED = 4401;  // the gateway closes a socket whose session ended

  function scheduleReconnect(hadOpened) {
    if (!hadOpened) { failsBeforeOpen += 1; }
    var delay = BACKOFF_S[Math.min(attempt, BACKOFF_S.length - 1)];
    attempt += 1;
    setConn('offline', 'Offline');
    var left = delay;
    function tick() {
      showBanner('Connection lost. Reconnecting in ' + left + ' s…');
    }
    tick();
    countdownTimer = setInterval(function () {
      left -= 1;
      if (left > 0) { tick(); } else { showBanner('Connection lost. Reconnecting…'); }
    }, 1000);
    reconnectTimer = setTimeout(connect, delay * 1000);
    if (failsBeforeOpen >= FAILS_BEFORE_PROBE) { probeSession(); }
  }

  // A socket that keeps failing before it opens is usually a 401 (session over). Browsers
  // do not expose the status of a failed upgrade, so ask /console: if it answers with the
  // sign-in page, go there. If it does not answer, the server is down: keep retrying.
  function probeSession() {
    if (probing || !window.fetch) { return; }
    probing = true;
    window.fetch(CONSOLE_PATH, { credentials: 'same-origin', cache: 'no-store', redirect: 'follow' })
      .then(function (res) {
        if (res.status === 401) { return 'login'; }
        return res.text().then(function (body) {
          return /name="console-page"\s+content="login"/.test(body) ? 'login' : 'console';
        });
      })
      .then(function (page) {
        probing = false;
        if (page === 'login') { goToSignIn(); }
      }, function () { probing = false; });
  }

  function goToSignIn() {
    leaving = true;
    clearTimeout(reconnectTimer);
    clearInterval(countdownTimer);
    showBanner('Your session has ended. Taking you to the sign-in page…');
    window.location.assign(CONSOLE_PATH);
  }

  /* ---------- canned replies editor (managers) ---------- */

  function cannedRow(entry) {
    var text = entry && entry.text && typeof entry.text === 'object' ? entry.text
      : { en: str(entry && entry.text), zh: str(entry && entry.text) };
    var row = el('fieldset', 'canned-row');
    row.setAttribute('data-testid', 'canned-row');
    var fields = [['title', 'Title', str(entry && entry.title), 'input'], ['en', 'English', str(text.en), 'textarea'],
      ['zh', '中文', str(text.zh), 'textarea']];
    fields.forEach(function (f) {
      var label = el('label', 'canned-row__label', f[1]);
      var input = document.createElement(f[3]);
      input.value = f[2];
      input.setAttribute('data-field', f[0]);
      input.setAttribute('data-testid', 'canned-' + f[0]);
      label.appendChild(input);
      row.appendChild(label);
    });
    var remove = el('button', 'btn btn--ghost btn--small', 'Remove');
    remove.type = 'button';
    remove.addEventListener('click', function () { row.parentNode.removeChild(row); });
    row.appendChild(remove);
    return row;
  }

  function openCannedEditor() {
    var rows = $('canned-rows');
    rows.textContent = '';
    canned.forEach(function (c) { rows.appendChild(cannedRow(c)); });
    $('canned-editor').hidden = false;
  }

  function closeCannedEditor() { $('canned-editor').hidden = true; }

  function saveCanned() {
    var entries = Array.prototype.map.call(document.querySelectorAll('#canned-rows .canned-row'), function (row) {
      var get = function (name) { return row.querySelector('[data-field="' + name + '"]').value; };
      return { title: get('title'), text: { en: get('en'), zh: get('zh') } };
    });
    send({ type: 'set_canned', canned: entries });
  }

  $('canned-edit').addEventListener('click', openCannedEditor);
  $('canned-close').addEventListener('click', closeCannedEditor);
  $('canned-add').addEventListener('click', function () { $('canned-rows').appendChild(cannedRow(null)); });
  $('canned-save').addEventListener('click', saveCanned);

  /* ---------- frames ---------- */

  function handle(frame) {
    switch (frame.type) {
      case 'hello': onHello(frame); break;
      case 'state': onState(frame); break;
      case 'conversation': onConversation(frame); break;
      case 'entry': onEntry(frame); break;
      case 'claimed': onClaimed(frame); break;
      case 'saved_test':
        notice('Saved as test ' + str(frame.name) + ': ./aftersales test replays it (' +
               (Array.isArray(frame.files) ? frame.files.join(', ') : '') + ')', 'info');
        break;
      case 'notice': // an SLA deadline near or passed (handoff/sla.py), once on every console
        notice((frame.level === 'breached' ? 'SLA breached: ' : 'SLA soon: ') + str(frame.text),
               frame.level === 'breached' ? 'error' : 'warning');
        break;
      case 'canned': // a manager changed the canned replies (on any gateway)
        canned = Array.isArray(frame.canned) ? frame.canned : [];
        renderCanned();
        if (current) { send({ type: 'open', key: current.key }); } // filled again for the open conversation
        if (frame.by === me.username) { closeCannedEditor(); notice('Canned replies saved for the team.', 'info'); }
        break;
      case 'error': onError(frame); break;
      default: break; // pong and anything unknown
    }
  }

  function onHello(frame) {
    me = frame.agent && typeof frame.agent === 'object' ? frame.agent : { username: '', name: '' };
    canned = Array.isArray(frame.canned) ? frame.canned : [];
    agents = Array.isArray(frame.agents) ? frame.agents : [];
    outcomes = Array.isArray(frame.outcomes) ? frame.outcomes : [];
    zone = typeof frame.zone === 'string' && frame.zone ? frame.zone : null;
    formatters = {};
    connected = true;
    attempt = 0;
    failsBeforeOpen = 0;
    hideBanner();
    setConn('online', 'Online');
    $('agent-name').textContent = str(me.name) || str(me.username);
    var manager = me.role === 'manager';
    $('analytics-link').hidden = !manager;  // the shop's figures and the canned replies: managers only
    $('canned-edit').hidden = !manager;
    renderCanned();
    renderOutcomes();
    renderTransferOptions();
    renderTeam();
    // After a reconnect, reload the open conversation: lines may have been missed.
    if (current) {
      send({ type: 'open', key: current.key });
    }
    renderAll();
  }

  /* Conversations the bot is handling; an agent may take one over (`take`). */
  var liveList = [];
  function renderLive() {
    var ul = $('live');
    while (ul.firstChild) { ul.removeChild(ul.firstChild); }
    liveList.forEach(function (item) {
      var key = str(item.key);
      var li = el('li', 'item item--live');
      li.setAttribute('data-testid', 'live-item');
      li.setAttribute('data-key', key);
      var meta = el('div', 'item__meta');
      meta.appendChild(el('span', 'tag tag--channel', channelsLabel(item)));
      meta.appendChild(el('span', '', item.last_role === 'shopper' ? 'shopper wrote' : 'bot answered'));
      var when = el('time', 'item__when', formatTime(item.ts));
      when.title = formatFull(item.ts);
      when.setAttribute('data-testid', 'live-time');
      meta.appendChild(when);
      li.appendChild(meta);
      li.appendChild(el('div', 'item__text', readable(item.last_text).slice(0, 120) || '\u2014'));
      var take = el('button', 'btn btn--small', 'Take over');
      take.type = 'button';
      take.setAttribute('data-testid', 'take');
      take.addEventListener('click', function () { take.disabled = true; send({ type: 'take', key: key }); });
      li.appendChild(take);
      ul.appendChild(li);
    });
    $('live-count').textContent = String(liveList.length);
    $('live-empty').hidden = liveList.length > 0;
  }

  function onState(frame) {
    lists.queue = Array.isArray(frame.queue) ? frame.queue : [];
    lists.mine = Array.isArray(frame.mine) ? frame.mine : [];
    lists.others = Array.isArray(frame.others) ? frame.others : [];
    liveList = Array.isArray(frame.live) ? frame.live : [];
    renderLive();
    if (Array.isArray(frame.agents)) {
      agents = frame.agents;
      renderTransferOptions();
      renderTeam();
    }
    var now = num(frame.now);
    if (now !== null) { clockOffsetMs = now * 1000 - Date.now(); }
    stateSeen = true;
    if (current) {
      var found = findItem(current.key);
      if (found) {
        current.item = found.item;
        current.gone = false;
      } else if (!current.gone && current.item && (current.item.status === 'queued' || current.item.status === 'assigned')) {
        // Handed back, resolved or gone: ask for its final status (open works for any status).
        current.gone = true;
        send({ type: 'open', key: current.key });
      }
    }
    renderLists();
    renderConversationChrome();
  }

  function onConversation(frame) {
    var item = frame.conversation;
    if (!item || typeof item !== 'object' || !current || item.key !== current.key) { return; }
    current.item = item;
    current.gone = false;
    current.loaded = true;
    current.cases = Array.isArray(frame.cases) ? frame.cases : [];
    current.canned = Array.isArray(frame.canned) ? frame.canned : null;
    renderCanned();
    delete unread[item.key];
    var list = $('transcript');
    list.textContent = '';
    var transcript = Array.isArray(frame.transcript) ? frame.transcript : [];
    for (var i = 0; i < transcript.length; i++) { list.appendChild(renderEntry(transcript[i])); }
    $('conv-loading').hidden = true;
    scrollTranscript(true);
    renderCases();
    renderLists();
    renderConversationChrome();
    updateTitle();
  }

  function onEntry(frame) {
    var entry = frame.entry;
    if (!entry || typeof entry !== 'object') { return; }
    if (pendingText && pendingText.key === frame.key && str(entry.text) === pendingText.text &&
        (entry.role === 'agent' || entry.role === 'note')) {
      pendingText = null;
    }
    if (current && current.key === frame.key && current.loaded) {
      var list = $('transcript');
      var nearBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
      list.appendChild(renderEntry(entry));
      scrollTranscript(nearBottom || entry.role === 'agent' || entry.role === 'note');
      return;
    }
    if (entry.role === 'shopper') {
      unread[frame.key] = (unread[frame.key] || 0) + 1;
      renderLists();
      updateTitle();
    }
  }

  function onClaimed(frame) {
    var key = str(frame.key);
    delete pendingClaims[key];
    if (frame.ok === true) {
      openConversation(key);
    } else {
      notice('Already taken by ' + (agentName(frame.agent) || 'another agent'), 'info');
      renderLists();
      renderConversationChrome();
    }
  }

  function onError(frame) {
    var code = str(frame.code);
    var message = str(frame.message) || ERROR_LABELS[code] || 'Something went wrong.';
    if (code === 'already_claimed' || code === 'not_found' || code === 'not_yours') { pendingClaims = {}; }
    if (pendingText && TEXT_ERRORS[code]) {
      var input = $('reply-input');
      if (!input.value && current && current.key === pendingText.key) {
        input.value = pendingText.text;
        $('note-toggle').checked = pendingText.kind === 'note';
        updateComposer();
      }
      pendingText = null;
    }
    notice(message + (code ? ' (' + code + ')' : ''), 'error');
    renderLists();
    renderConversationChrome();
  }

  /* ---------- actions ---------- */

  function saveAsTest() {
    if (!current) { return; }
    send({ type: 'save_test', key: current.key, outcome: $('test-outcome').value,
           handoff: $('test-handoff').checked });
  }

  function openConversation(key) {
    if (!key) { return; }
    var found = findItem(key);
    if (!current || current.key !== key) {
      current = { key: key, item: found ? found.item : null, loaded: false, gone: false, cases: [], canned: null };
      $('transcript').textContent = '';
      $('reply-input').value = '';
      $('note-toggle').checked = false;
      $('conv-loading').hidden = false;
      renderCases();
      renderCanned();
    }
    setView('conv');
    delete unread[key];
    send({ type: 'open', key: key });
    renderLists();
    renderConversationChrome();
    updateTitle();
  }

  function claim(key) {
    if (!key || pendingClaims[key]) { return; }
    if (!send({ type: 'claim', key: key })) {
      notice('Not connected. Try again when the console is back online.', 'error');
      return;
    }
    pendingClaims[key] = true;
    renderLists();
    renderConversationChrome();
  }

  function sendReply() {
    if (!current || !isMine()) { return; }
    var input = $('reply-input');
    var text = input.value;
    if (!text.trim()) { return; }
    if (text.length > MAX_LEN) {
      notice('The message is too long (at most ' + MAX_LEN + ' characters).', 'error');
      return;
    }
    var kind = $('note-toggle').checked ? 'note' : 'reply';
    if (kind === 'reply' && unfilledIn(text)) {  // the hint says so; the variable is selected to type over
      input.focus();
      selectUnfilled(input, 0);
      return;
    }
    if (!send({ type: kind, key: current.key, text: text })) {
      notice('Not connected: the message was not sent. It is still in the box.', 'error');
      return;
    }
    pendingText = { key: current.key, kind: kind, text: text };
    input.value = '';
    updateComposer();
    input.focus();
  }

  function insertCanned(text) {
    var input = $('reply-input');
    if (input.disabled) { return; }
    var start = input.selectionStart !== null ? input.selectionStart : input.value.length;
    var end = input.selectionEnd !== null ? input.selectionEnd : input.value.length;
    var value = input.value.slice(0, start) + text + input.value.slice(end);
    input.value = value.slice(0, MAX_LEN);
    var caret = Math.min(start + text.length, input.value.length);
    input.focus();
    if (!selectUnfilled(input, start)) {
      try { input.setSelectionRange(caret, caret); } catch (e) { /* ignore */ }
    }
    updateComposer();
  }

  function unfilledIn(text) {
    var m = PLACEHOLDER.exec(str(text));
    return m ? m[0] : '';
  }

  // Select the first variable still to fill (from `from`, else from the start): the agent types over it.
  function selectUnfilled(input, from) {
    var value = input.value;
    var re = new RegExp(PLACEHOLDER.source, 'g');
    re.lastIndex = from || 0;
    var m = re.exec(value);
    if (!m && from) { re.lastIndex = 0; m = re.exec(value); }
    if (!m) { return false; }
    try { input.setSelectionRange(m.index, m.index + m[0].length); } catch (e) { return false; }
    return true;
  }

  /* ---------- rendering: lists ---------- */

  function renderAll() {
    renderLists();
    renderConversationChrome();
  }

  // Filters and search work on the waiting list, in the browser, over the last state frame.
  var filters = { channel: '', language: '', reason: '', wait: 0, q: '' };

  function searchable(item) {
    return [item.key, item.ticket, item.last_text].concat(Array.isArray(item.orders) ? item.orders : [],
      Array.isArray(item.cases) ? item.cases : []).map(str).join(' ').toLowerCase();
  }

  function passes(item) {
    if (filters.channel && str(item.channel) !== filters.channel) { return false; }
    if (filters.language && str(item.language) !== filters.language) { return false; }
    if (filters.reason) {
      if (filters.reason === 'urgent' ? !item.urgency : str(item.reason) !== filters.reason) { return false; }
    }
    if (filters.wait > 0) {
      var created = num(item.created_at);
      if (created === null || serverNow() - created < filters.wait * 60) { return false; }
    }
    if (filters.q) {
      var hay = searchable(item);
      var words = filters.q.toLowerCase().split(/\s+/).filter(Boolean);
      for (var i = 0; i < words.length; i++) { if (hay.indexOf(words[i]) < 0) { return false; } }
    }
    return true;
  }

  function filtering() {
    return !!(filters.channel || filters.language || filters.reason || filters.wait || filters.q);
  }

  // The filter menus offer what the queue holds (and keep a choice that is not there now).
  function renderFilterOptions() {
    var seen = { channel: {}, language: {}, reason: {} };
    lists.queue.forEach(function (item) {
      seen.channel[str(item.channel)] = 1;
      seen.language[str(item.language)] = 1;
      seen.reason[str(item.reason)] = 1;
    });
    fillFilter('filter-channel', 'All channels', seen.channel, channelLabel, filters.channel);
    fillFilter('filter-language', 'All languages', seen.language, languageLabel, filters.language);
    fillFilter('filter-reason', 'All reasons', seen.reason, reasonLabel, filters.reason, { urgent: 'Urgent only' });
  }

  function fillFilter(id, allLabel, values, label, chosen, extra) {
    var select = $(id);
    var wanted = [''].concat(Object.keys(extra || {}), Object.keys(values).filter(Boolean).sort());
    if (chosen && wanted.indexOf(chosen) < 0) { wanted.push(chosen); }
    var have = Array.prototype.map.call(select.options, function (o) { return o.value; });
    if (have.join('\u0000') === wanted.join('\u0000')) { return; }
    select.textContent = '';
    wanted.forEach(function (value) {
      var text = value === '' ? allLabel : (extra && extra[value]) || label(value);
      var option = el('option', '', text);
      option.value = value;
      select.appendChild(option);
    });
    select.value = chosen;
  }

  function renderLists() {
    // Keep keyboard focus on the same control across a re-render.
    var active = document.activeElement;
    var focusKey = null;
    var focusRole = null;
    if (active && active.closest && active.closest('#queue, #mine, #others')) {
      var li = active.closest('li[data-key]');
      if (li) { focusKey = li.getAttribute('data-key'); focusRole = active.getAttribute('data-role'); }
    }
    tickers = tickers.filter(function (t) { return t.kind === 'details'; });
    var shown = lists.queue.filter(passes);
    renderFilterOptions();
    renderList('queue', 'queue-item', shown, true);
    renderList('mine', 'mine-item', lists.mine, false);
    renderList('others', 'other-item', lists.others, false);
    $('queue-count').textContent = filtering() ? shown.length + ' / ' + lists.queue.length : String(lists.queue.length);
    $('mine-count').textContent = String(lists.mine.length);
    $('others-count').textContent = String(lists.others.length);
    $('queue-empty').textContent = lists.queue.length ? 'No waiting conversation matches the filters.' : 'No one is waiting.';
    $('filters-clear').hidden = !filtering();
    var urgent = lists.queue.filter(function (i) { return !!i.urgency; }).length;
    var flag = $('urgent-count');
    flag.hidden = urgent === 0;
    flag.textContent = urgent + ' urgent';
    tick();
    if (focusKey !== null) {
      var lis = document.querySelectorAll('#queue li, #mine li, #others li');
      for (var i = 0; i < lis.length; i++) {
        if (lis[i].getAttribute('data-key') === focusKey) {
          var target = lis[i].querySelector('[data-role="' + (focusRole || 'open') + '"]') ||
                       lis[i].querySelector('[data-role="open"]');
          if (target && !target.disabled) { target.focus(); }
          break;
        }
      }
    }
  }

  function renderList(id, testid, items, claimable) {
    var ul = $(id);
    ul.textContent = '';
    for (var i = 0; i < items.length; i++) {
      if (items[i] && typeof items[i] === 'object') { ul.appendChild(renderItem(items[i], testid, claimable, id)); }
    }
    $(id + '-empty').hidden = items.length > 0;
  }

  // What sets a card apart, in words (the colour bar only repeats it): urgency, else the SLA.
  function flagOf(item) {
    var urgency = str(item.urgency);
    if (URGENCY_LABELS[urgency]) {
      var label = URGENCY_LABELS[urgency];
      if (item.priority === 'high' && urgency === 'health') { label += ' (hurt)'; }
      return { kind: urgency, label: label };
    }
    var sla = effectiveSla(item);
    if (sla === 'breached' && item.status === 'queued') { return { kind: 'breached', label: 'SLA breached' }; }
    if (sla === 'warning' && item.status === 'queued') { return { kind: 'warning', label: 'SLA soon' }; }
    return null;
  }

  function renderItem(item, testid, claimable, listName) {
    var key = str(item.key);
    var li = el('li', 'item');
    li.setAttribute('data-testid', testid);
    li.setAttribute('data-key', key);
    var flag = flagOf(item);
    if (flag) {
      li.classList.add('item--' + flag.kind);
      li.setAttribute('data-urgency', flag.kind);
    }
    if (current && current.key === key) { li.classList.add('item--current'); }

    var open = el('button', 'item__open');
    open.type = 'button';
    open.setAttribute('data-role', 'open');
    if (current && current.key === key) { open.setAttribute('aria-current', 'true'); }

    var top = el('span', 'item__top');
    if (flag) {
      var f = el('span', 'item__flag item__flag--' + flag.kind, flag.label);
      f.setAttribute('data-testid', 'urgency');
      top.appendChild(f);
    }
    top.appendChild(el('span', 'item__reason', reasonLabel(item.reason)));
    var waited = el('span', 'item__time');
    waited.setAttribute('data-testid', 'waiting-time');
    waited.title = 'Handed over ' + formatFull(item.created_at);
    top.appendChild(waited);
    tickers.push({ kind: 'waited', node: waited, item: item });
    open.appendChild(top);

    var second = el('span', 'item__second');
    second.appendChild(el('span', 'tag tag--channel', channelsLabel(item)));
    var lang = el('span', 'tag tag--lang', languageLabel(item.language));
    lang.setAttribute('lang', str(item.language) === 'zh' ? 'zh-CN' : 'en');
    second.appendChild(lang);
    var refs = [].concat(Array.isArray(item.orders) ? item.orders : [], Array.isArray(item.cases) ? item.cases : []);
    if (refs.length) { second.appendChild(el('span', 'item__refs', refs.slice(0, 2).join(' · '))); }
    if (listName === 'others' && item.agent) {
      second.appendChild(el('span', 'item__agent', 'with ' + agentName(item.agent)));
    }
    var last = el('span', 'item__last', truncate(readable(item.last_text), LAST_TEXT_MAX) || '—');
    last.title = str(item.last_text);
    last.setAttribute('data-testid', 'preview');
    second.appendChild(last);
    open.appendChild(second);

    open.addEventListener('click', function () { openConversation(key); });
    li.appendChild(open);

    var side = el('div', 'item__side');
    side.appendChild(slaBadge(item));
    var waiting = num(item.waiting_messages) || 0;
    if (waiting > 0) {
      var w = el('span', 'pill pill--waiting', String(waiting));
      w.title = waiting + (waiting === 1 ? ' shopper message waits' : ' shopper messages wait') + ' for an answer';
      w.setAttribute('aria-label', w.title);
      w.setAttribute('data-testid', 'waiting-count');
      side.appendChild(w);
    }
    if (unread[key]) {
      var u = el('span', 'pill pill--unread', unread[key] + ' new');
      u.setAttribute('data-testid', 'unread');
      side.appendChild(u);
    }
    if (claimable) {
      var c = el('button', 'btn btn--primary btn--small item__claim', pendingClaims[key] ? 'Claiming…' : 'Claim');
      c.type = 'button';
      c.setAttribute('data-testid', 'claim');
      c.setAttribute('data-role', 'claim');
      c.setAttribute('aria-label', 'Claim: ' + reasonLabel(item.reason) + (flag ? ' (' + flag.label + ')' : ''));
      c.disabled = !connected || !!pendingClaims[key];
      c.addEventListener('click', function (event) {
        event.stopPropagation();
        claim(key);
      });
      side.appendChild(c);
    }
    li.appendChild(side);
    return li;
  }

  function slaBadge(item) {
    var badge = el('span', 'sla');
    badge.setAttribute('data-testid', 'sla');
    badge.setAttribute('data-compact', '1');
    fillSla(badge, item);
    tickers.push({ kind: 'sla', node: badge, item: item });
    return badge;
  }

  function fillSla(badge, item) {
    var sla = effectiveSla(item);
    badge.className = 'sla sla--' + (SLA_LABELS[sla] ? sla : 'unknown');
    badge.setAttribute('data-sla', sla);
    var text = SLA_LABELS[sla] || ('SLA ' + sla);
    var due = num(item.first_response_due);
    var answered = num(item.first_response_at);
    if (badge.getAttribute('data-compact')) {
      if (due !== null && answered === null) {
        var rest = due - serverNow();
        text = rest >= 0 ? 'due in ' + formatAgo(rest) : formatAgo(-rest) + ' late';
      } else {
        text = sla === 'met' ? 'answered' : text;
      }
    } else if (sla === 'met' && answered !== null) {
      text += ' · answered ' + formatTime(answered);
    } else if (due !== null) {
      text += ' · due ' + formatTime(due);
    }
    if (badge.textContent !== text) { badge.textContent = text; }
    if (due !== null) {
      var left = due - serverNow();
      badge.title = 'First response due ' + formatFull(due) +
        (answered === null ? (left >= 0 ? ' (in ' + formatDuration(left) + ')' : ' (' + formatDuration(-left) + ' late)') : '');
    }
  }

  function renderTeam() {
    var ul = $('team');
    ul.textContent = '';
    for (var i = 0; i < agents.length; i++) {
      var a = agents[i];
      if (!a || typeof a !== 'object') { continue; }
      var li = el('li', 'team__agent' + (a.online ? ' team__agent--online' : ''));
      li.appendChild(el('span', 'team__dot'));
      li.appendChild(el('span', 'team__name', (str(a.name) || str(a.username)) + (me && a.username === me.username ? ' (you)' : '')));
      li.title = a.online ? 'Online' : 'Offline';
      ul.appendChild(li);
    }
  }

  /* ---------- rendering: conversation ---------- */

  function entryLabel(entry) {
    switch (entry.role) {
      case 'shopper': return 'Shopper';
      case 'bot': return 'Bot';
      case 'agent':
        return entry.author ? agentName(entry.author) + (me && entry.author === me.username ? ' (you)' : '') : 'Agent';
      case 'note': return 'Internal note' + (entry.author ? ' · ' + agentName(entry.author) : '');
      case 'system': return 'System';
      default: return str(entry.role) || 'Unknown';
    }
  }

  function renderEntry(entry) {
    var known = { shopper: 1, bot: 1, agent: 1, note: 1, system: 1 };
    var role = known[entry.role] ? entry.role : 'system';
    var li = el('li', 'entry entry--' + role);
    li.setAttribute('data-testid', 'entry-' + role);
    var head = el('div', 'entry__head');
    head.appendChild(el('span', 'entry__who', entryLabel(entry)));
    var time = el('time', 'entry__time', formatTime(entry.ts));
    var ts = num(entry.ts);
    if (ts !== null) {
      time.setAttribute('datetime', new Date(ts * 1000).toISOString());
      time.title = formatFull(ts);
    }
    head.appendChild(time);
    li.appendChild(head);
    var body = el('div', 'entry__text', entry.role === 'shopper' ? readable(entry.text) : str(entry.text));
    if (entry.role === 'shopper' && body.textContent !== str(entry.text)) { body.title = str(entry.text); }
    body.setAttribute('data-testid', 'entry-text');
    li.appendChild(body);
    if (Array.isArray(entry.attachments)) {
      entry.attachments.forEach(function (a) {
        var url = a && typeof a.url === 'string' ? a.url : '';
        if (!/^https?:\/\//i.test(url)) { return; }
        var link = el('a', 'entry__attachment', (a.kind === 'image' ? 'Photo: ' : 'File: ') + str(a.name || 'attachment'));
        link.href = url;
        link.target = '_blank';
        link.rel = 'noopener noreferrer';
        link.setAttribute('data-testid', 'entry-attachment');
        li.appendChild(link);
      });
    }
    return li;
  }

  function scrollTranscript(force) {
    var list = $('transcript');
    if (force) { list.scrollTop = list.scrollHeight; }
  }

  function factLabel(value) {
    var v = str(value);
    if (Object.prototype.hasOwnProperty.call(FACT_LABELS, v)) { return FACT_LABELS[v]; }
    v = v.replace(/_/g, ' ');
    return v.charAt(0).toUpperCase() + v.slice(1);
  }

  function caseFact(dl, label, value, testid) {
    if (value === undefined || value === null || value === '') { return; }
    dl.appendChild(el('dt', 'case__label', label));
    var dd = el('dd', 'case__value');
    if (value.nodeType) { dd.appendChild(value); } else { dd.textContent = str(value); }
    if (testid) { dd.setAttribute('data-testid', testid); }
    dl.appendChild(dd);
  }

  // Only links to this gateway or https are shown (the page's CSP shows images of its own origin).
  function safeUrl(url) {
    var u = str(url);
    return /^https?:\/\//i.test(u) || /^\/[^/]/.test(u) ? u : '';
  }

  function renderCases() {
    var ul = $('cases');
    ul.textContent = '';
    var cases = current && Array.isArray(current.cases) ? current.cases : [];
    var lang = current && current.item ? str(current.item.language) : 'en';
    for (var i = 0; i < cases.length; i++) {
      var c = cases[i];
      if (!c || typeof c !== 'object') { continue; }
      var facts = c.facts && typeof c.facts === 'object' ? c.facts : {};
      var li = el('li', 'case');
      li.setAttribute('data-testid', 'case');
      var head = el('div', 'case__head');
      var id = el('span', 'case__id', str(c.id));
      id.setAttribute('data-testid', 'case-id');
      head.appendChild(id);
      head.appendChild(el('span', 'tag tag--kind', str(c.kind)));
      head.appendChild(el('span', 'case__status', factLabel(c.status)));
      li.appendChild(head);
      var dl = el('dl', 'case__facts');
      var verdict = facts.outcome ? factLabel(facts.outcome) + (facts.decision ? ' — ' + factLabel(facts.decision) : '') : '';
      caseFact(dl, 'Verdict', verdict, 'case-verdict');
      caseFact(dl, 'Reason', facts.reason ? factLabel(facts.reason) : '', 'case-reason');
      caseFact(dl, 'Category', facts.category ? factLabel(facts.category) : '');
      var item = facts.item && typeof facts.item === 'object' ? (facts.item[lang] || facts.item.en || '') : '';
      caseFact(dl, 'Item', item, 'case-item');
      caseFact(dl, 'Order', facts.order || c.order_number, 'case-order');
      caseFact(dl, 'Severity', facts.severity ? factLabel(facts.severity) : '');
      caseFact(dl, 'Said', facts.description ? truncate(facts.description, 300) : '');
      caseFact(dl, 'Opened', num(c.created_at) !== null ? formatTime(c.created_at) : '');
      var photos = Array.isArray(facts.photos) ? facts.photos.map(safeUrl).filter(Boolean) : [];
      if (photos.length) {
        var box = el('span', 'case__photos');
        photos.forEach(function (url, n) {
          var a = el('a', 'case__photo');
          a.href = url;
          a.target = '_blank';
          a.rel = 'noopener noreferrer';
          var img = el('img', '');
          img.src = url;
          img.alt = 'Photo ' + (n + 1) + ' from the shopper';
          img.loading = 'lazy';
          a.appendChild(img);
          a.appendChild(el('span', 'case__photo-name', 'Photo ' + (n + 1)));
          box.appendChild(a);
        });
        caseFact(dl, 'Photos', box, 'case-photos');
      }
      li.appendChild(dl);
      if (c.summary && !dl.children.length) { li.appendChild(el('p', 'case__summary', str(c.summary))); }
      ul.appendChild(li);
    }
    $('cases-empty').hidden = cases.length > 0;
  }

  function statusText(item) {
    if (!item) { return ''; }
    if (current && current.gone) { return 'No longer with an agent (handed back or resolved)'; }
    var status = str(item.status);
    if (status === 'assigned') {
      if (me && item.agent === me.username) { return 'Assigned to you'; }
      return item.agent ? 'Assigned to ' + agentName(item.agent) : 'Assigned';
    }
    return STATUS_LABELS[status] || status;
  }

  function addFact(dl, label, value, testid) {
    dl.appendChild(el('dt', 'facts__label', label));
    var dd = el('dd', 'facts__value');
    if (value && value.nodeType) { dd.appendChild(value); } else { dd.textContent = str(value) || '—'; }
    if (testid) { dd.setAttribute('data-testid', testid); }
    dl.appendChild(dd);
    return dd;
  }

  function renderConversationChrome() {
    var hasConv = !!current;
    $('conv-empty').hidden = hasConv;
    $('conv').hidden = !hasConv;
    $('details-empty').hidden = hasConv;
    $('details').hidden = !hasConv;
    tickers = tickers.filter(function (t) { return t.kind !== 'details'; });
    if (!hasConv) { updateComposer(); return; }
    var item = current.item;
    var mine = isMine();

    var flag = item ? flagOf(item) : null;
    $('conv-title').textContent = item
      ? (flag ? flag.label + ' · ' : '') + reasonLabel(item.reason) + ' · ' + channelLabel(item.channel) + ' · ' +
        languageLabel(item.language)
      : current.key;
    $('conv-title').setAttribute('data-urgency', flag ? flag.kind : '');
    $('conv-sub').textContent = item ? statusText(item) : 'Loading…';
    $('conv-sub').setAttribute('data-state', current.gone ? 'gone' : str(item && item.status));

    var claimBtn = $('conv-claim');
    var canClaim = !!item && !current.gone && item.status === 'queued';
    claimBtn.hidden = !canClaim;
    claimBtn.disabled = !connected || !!pendingClaims[current.key];
    claimBtn.textContent = pendingClaims[current.key] ? 'Claiming…' : 'Claim';

    // details
    var dl = $('facts');
    dl.textContent = '';
    addFact(dl, 'Key', current.key, 'detail-key').classList.add('facts__value--key');
    if (item) {
      addFact(dl, 'Channel', channelsLabel(item));
      addFact(dl, 'Language', languageLabel(item.language));
      addFact(dl, 'Reason', reasonLabel(item.reason));
      addFact(dl, 'Status', statusText(item), 'detail-status');
      addFact(dl, 'Ticket', item.ticket, 'detail-ticket');
      addFact(dl, 'Handed over', formatTime(item.created_at));
      var waitedSpan = el('span', '');
      tickers.push({ kind: 'details', sub: 'waited', node: waitedSpan, item: item });
      addFact(dl, 'Since handoff', waitedSpan);
      var badge = el('span', 'sla');
      badge.setAttribute('data-testid', 'detail-sla');
      fillSla(badge, item);
      tickers.push({ kind: 'details', sub: 'sla', node: badge, item: item });
      addFact(dl, 'SLA', badge);
      if (num(item.first_response_at) !== null) { addFact(dl, 'First response', formatTime(item.first_response_at)); }
    }

    $('actions').hidden = !mine || !connected;
    var none = $('actions-none');
    if (mine && connected) {
      none.textContent = '';
    } else if (!connected) {
      none.textContent = 'Offline: actions are unavailable until the console reconnects.';
    } else if (current.gone) {
      none.textContent = 'This conversation is no longer with an agent.';
    } else if (item && item.status === 'queued') {
      none.textContent = 'Claim this conversation to answer and act on it.';
    } else if (item && item.status === 'assigned') {
      none.textContent = 'Only ' + agentName(item.agent) + ' can act on this conversation.';
    } else {
      none.textContent = '';
    }
    none.hidden = !none.textContent;
    updateTransferButton();
    updateResolveButton();
    updateComposer();
    tick();
  }

  function updateComposer() {
    var mine = isMine() && connected;
    var input = $('reply-input');
    var note = $('note-toggle').checked;
    var form = $('composer');
    input.disabled = !mine;
    $('note-toggle').disabled = !mine;
    $('canned').disabled = !mine || cannedList().length === 0;
    var left = unfilledIn(input.value);
    $('composer-hint').textContent = left && !note ? 'Fill in ' + left + ' before sending' : 'Enter sends · Shift+Enter new line · ? shortcuts';
    $('composer-hint').classList.toggle('composer__hint--todo', !!left && !note);
    form.classList.toggle('composer--note', note);
    form.classList.toggle('composer--disabled', !mine);
    $('reply-label').textContent = note ? 'Internal note' : 'Reply to the shopper';
    if (!current) {
      input.placeholder = '';
    } else if (!connected) {
      input.placeholder = 'Offline: waiting for the connection…';
    } else if (!mine) {
      input.placeholder = current.item && current.item.status === 'queued' && !current.gone
        ? 'Claim this conversation to reply.'
        : 'You can reply only in your own conversations.';
    } else {
      input.placeholder = note ? 'Internal note: only agents see this…' : 'Reply to the shopper…';
    }
    $('reply-send').textContent = note ? 'Add note' : 'Send';
    $('reply-send').disabled = !mine || !input.value.trim();
    var len = input.value.length;
    var counter = $('reply-counter');
    counter.hidden = len < COUNTER_FROM;
    counter.textContent = len + ' / ' + MAX_LEN;
    counter.classList.toggle('composer__counter--full', len >= MAX_LEN);
  }

  function cannedList() {
    if (current && Array.isArray(current.canned)) { return current.canned; }
    var lang = current && current.item ? str(current.item.language) : 'en';
    return canned.map(function (c) {
      var text = c && typeof c.text === 'object' && c.text ? (c.text[lang] || c.text.en || '') : str(c && c.text);
      return { title: str(c && c.title), text: text };
    });
  }

  function renderCanned() {
    var select = $('canned');
    while (select.options.length > 1) { select.remove(1); }
    var list = cannedList();
    for (var i = 0; i < list.length; i++) {
      var c = list[i];
      if (!c || typeof c !== 'object') { continue; }
      var option = el('option', '', str(c.title) || truncate(c.text, 40));
      option.value = String(i);
      option.title = str(c.text);
      select.appendChild(option);
    }
  }

  function renderOutcomes() {
    var select = $('outcome-select');
    var previous = select.value;
    select.textContent = '';
    var placeholder = el('option', '', 'Choose an outcome…');
    placeholder.value = '';
    select.appendChild(placeholder);
    for (var i = 0; i < outcomes.length; i++) {
      var option = el('option', '', outcomeLabel(outcomes[i]));
      option.value = str(outcomes[i]);
      select.appendChild(option);
    }
    select.value = previous;
    if (select.value !== previous) { select.value = ''; }
  }

  function renderTransferOptions() {
    var select = $('transfer-select');
    var previous = select.value;
    select.textContent = '';
    var placeholder = el('option', '', 'Choose an agent…');
    placeholder.value = '';
    select.appendChild(placeholder);
    for (var i = 0; i < agents.length; i++) {
      var a = agents[i];
      if (!a || typeof a !== 'object' || !a.username || (me && a.username === me.username)) { continue; }
      var option = el('option', '', (str(a.name) || str(a.username)) + (a.online ? '' : ' (offline)'));
      option.value = str(a.username);
      select.appendChild(option);
    }
    select.value = previous;
    if (select.value !== previous) { select.value = ''; }
    updateTransferButton();
  }

  function updateTransferButton() {
    $('transfer').disabled = !isMine() || !connected || !$('transfer-select').value;
  }
  function updateResolveButton() {
    $('resolve').disabled = !isMine() || !connected || !$('outcome-select').value;
  }

  function updateTitle() {
    var total = 0;
    for (var k in unread) {
      if (Object.prototype.hasOwnProperty.call(unread, k)) { total += unread[k]; }
    }
    var waiting = lists.queue.length;
    var prefix = total > 0 ? '(' + total + ') ' : '';
    document.title = prefix + (waiting > 0 ? waiting + ' waiting · ' : '') + 'Agent console';
  }

  /* ---------- live clock ---------- */

  function tick() {
    var now = serverNow();
    for (var i = 0; i < tickers.length; i++) {
      var t = tickers[i];
      var created = num(t.item.created_at);
      if (t.kind === 'sla' || t.sub === 'sla') {
        fillSla(t.node, t.item);
      } else if (created !== null) {
        var text = t.kind === 'waited'
          ? (t.item.status === 'queued' ? 'waiting ' : '') + formatAgo(now - created)
          : formatDuration(now - created);
        if (t.node.textContent !== text) { t.node.textContent = text; }
      }
    }
    updateTitle();
  }

  /* ---------- phone: one pane at a time ---------- */

  function setView(view) {
    document.body.setAttribute('data-view', view);
  }

  /* ---------- keyboard shortcuts (not while typing) ---------- */

  function typing(target) {
    if (!target || !target.closest) { return false; }
    return !!target.closest('input, textarea, select, [contenteditable="true"], [contenteditable=""]');
  }

  function toggleHelp(show) {
    var help = $('help');
    var open = show === undefined ? help.hidden : show;
    help.hidden = !open;
    if (open) { $('help-close').focus(); } else if (helpReturn && helpReturn.focus) { helpReturn.focus(); }
  }
  var helpReturn = null;

  function claimShortcut() {
    if (current && current.item && !current.gone && current.item.status === 'queued') { claim(current.key); return; }
    var first = lists.queue.filter(passes)[0];  // the top of the queue as filtered: the most urgent
    if (first) { claim(str(first.key)); } else { notice('No one is waiting.', 'info'); }
  }

  function focusComposer(note) {
    if (!isMine()) { notice('Claim a conversation first to reply or add notes.', 'info'); return; }
    $('note-toggle').checked = note;
    updateComposer();
    setView('conv');
    $('reply-input').focus();
  }

  function onShortcut(event) {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) { return; }
    if (event.key === 'Escape' && !$('help').hidden) { event.preventDefault(); toggleHelp(false); return; }
    if (typing(event.target) || event.isComposing) { return; }
    var key = event.key;
    if (key === '?') { helpReturn = document.activeElement; event.preventDefault(); toggleHelp(); return; }
    if (!$('help').hidden) { return; }
    if (key === 'c') { event.preventDefault(); claimShortcut(); }
    else if (key === 'r') { event.preventDefault(); focusComposer(false); }
    else if (key === 'n') { event.preventDefault(); focusComposer(true); }
    else if (key === 'h') {
      event.preventDefault();
      if (current && isMine()) { send({ type: 'hand_back', key: current.key }); }
      else { notice('Hand back works on a conversation of yours.', 'info'); }
    } else if (key === '/') { event.preventDefault(); setView('lists'); $('search').focus(); }
    else if (key === 'j' || key === 'k') { event.preventDefault(); moveInList(key === 'j' ? 1 : -1); }
  }

  // j / k: open the next / previous conversation of the lists as shown (mine first, then the queue).
  function moveInList(step) {
    var keys = lists.mine.concat(lists.queue.filter(passes)).map(function (i) { return str(i.key); });
    if (!keys.length) { return; }
    var at = current ? keys.indexOf(current.key) : -1;
    var next = keys[Math.max(0, Math.min(keys.length - 1, at + step))];
    if (at < 0) { next = keys[0]; }
    openConversation(next);
  }

  /* ---------- wiring ---------- */

  function init() {
    setView('lists');
    document.addEventListener('keydown', onShortcut);
    $('help-open').addEventListener('click', function () { helpReturn = $('help-open'); toggleHelp(true); });
    $('help-close').addEventListener('click', function () { toggleHelp(false); });
    $('help').addEventListener('click', function (event) { if (event.target === $('help')) { toggleHelp(false); } });
    $('conv-back').addEventListener('click', function () { setView('lists'); });
    $('conv-facts').addEventListener('click', function () {
      var target = $('details-title');
      if (target.scrollIntoView) { target.scrollIntoView({ block: 'start' }); }
    });
    ['filter-channel', 'filter-language', 'filter-reason', 'filter-wait'].forEach(function (id) {
      $(id).addEventListener('change', function () {
        var v = $(id).value;
        if (id === 'filter-wait') { filters.wait = Number(v) || 0; } else { filters[id.slice(7)] = v; }
        renderLists();
      });
    });
    $('search').addEventListener('input', function () { filters.q = $('search').value.trim(); renderLists(); });
    $('search').addEventListener('keydown', function (event) {
      if (event.key === 'Escape') { $('search').value = ''; filters.q = ''; renderLists(); $('search').blur(); }
    });
    $('filters-clear').addEventListener('click', function () {
      filters = { channel: '', language: '', reason: '', wait: 0, q: '' };
      $('search').value = '';
      $('filter-wait').value = '0';
      $('filter-channel').value = '';
      $('filter-language').value = '';
      $('filter-reason').value = '';
      renderLists();
    });
    $('composer').addEventListener('submit', function (event) {
      event.preventDefault();
      sendReply();
    });
    var input = $('reply-input');
    input.addEventListener('keydown', function (event) {
      if (event.key !== 'Enter' || event.shiftKey || event.altKey || event.ctrlKey || event.metaKey) { return; }
      if (event.isComposing || event.keyCode === 229) { return; } // IME (Chinese input) confirming
      event.preventDefault();
      sendReply();
    });
    input.addEventListener('input', updateComposer);
    $('note-toggle').addEventListener('change', function () {
      updateComposer();
      if (!input.disabled) { input.focus(); }
    });
    $('canned').addEventListener('change', function (event) {
      var select = event.target;
      var c = cannedList()[Number(select.value)];
      select.value = '';
      if (select.value === '' && c && typeof c === 'object') { insertCanned(str(c.text)); }
    });
    $('conv-claim').addEventListener('click', function () {
      if (current) { claim(current.key); }
    });
    $('save-test').addEventListener('click', saveAsTest);
    $('hand-back').addEventListener('click', function () {
      if (!current || !isMine()) { return; }
      send({ type: 'hand_back', key: current.key });
    });
    $('transfer-select').addEventListener('change', updateTransferButton);
    $('transfer').addEventListener('click', function () {
      var to = $('transfer-select').value;
      if (!current || !isMine() || !to) { return; }
      if (send({ type: 'transfer', key: current.key, to: to })) { $('transfer-select').value = ''; updateTransferButton(); }
    });
    $('outcome-select').addEventListener('change', updateResolveButton);
    $('resolve').addEventListener('click', function () {
      var outcome = $('outcome-select').value;
      if (!current || !isMine() || !outcome) { return; }
      if (send({ type: 'resolve', key: current.key, outcome: outcome })) { $('outcome-select').value = ''; updateResolveButton(); }
    });
    $('banner-retry').addEventListener('click', function () {
      if (ws) { return; }
      connect();
    });
    $('logout-form').addEventListener('submit', function () {
      leaving = true;
      if (ws) { try { ws.close(); } catch (e) { /* ignore */ } }
    });
    window.addEventListener('pagehide', function () { leaving = true; });
    window.addEventListener('pageshow', function (event) {
      if (event.persisted) { leaving = false; if (!ws) { connect(); } }
    });
    renderOutcomes();
    renderTransferOptions();
    renderAll();
    setInterval(tick, 1000);
    connect();
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', init);
  } else {
    init();
  }
})();

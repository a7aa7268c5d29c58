/* After-sales web chat widget. Speaks the protocol in docs/webchat-protocol.md.
 * Plain ES2015, no dependencies, no globals. All server/user text goes through
 * textContent, never innerHTML. */
(function () {
  'use strict';

  var TOKEN_KEY = 'aftersales.webchat.token';
  var PENDING_KEY = 'aftersales.webchat.pending';
  var WS_PATH = '/webchat/ws';
  var MAX_LEN = 4000;
  var COUNTER_FROM = 3600;       // show the character counter from here on
  var PING_MS = 25000;           // application-level keep-alive
  var STALE_MS = 65000;          // no frame at all for this long: treat the socket as dead
  var HELLO_TIMEOUT_MS = 10000;  // no `session` after `hello`: reconnect
  var BACKOFF_MAX_MS = 15000;
  var TYPING_SAFETY_MS = 120000; // never show "typing" forever if `on:false` is lost
  // Client-side pacing, a little under the gateway's limit (burst 10, then 1/s).
  var BUCKET_SIZE = 8;
  var BUCKET_REFILL_MS = 1100;

  var STRINGS = {
    en: {
      title: 'Customer service',
      connecting: 'Connecting…',
      online: 'Online',
      offline: 'Offline',
      reconnecting: 'Reconnecting…',
      placeholder: 'Type your message…',
      inputLabel: 'Your message',
      send: 'Send',
      sending: 'Sending…',
      delivered: 'Delivered',
      notSent: 'Not sent',
      notSentSep: ': ',
      retry: 'Retry',
      newConversation: 'New conversation',
      newConversationStarted: 'A new conversation has started.',
      typing: 'The assistant is typing…',
      conversation: 'Conversation',
      you: 'You:',
      bot: 'Assistant:',
      image: 'Image from customer service',
      empty: 'Hello! Tell us about your return, exchange or complaint and we will help you.',
      counter: '{n} / {max}',
      replyOptions: 'Reply options',
      fileTooBig: 'Files up to 5 MB, please.',
      uploadFailed: 'Upload failed, please try again.',
      error: 'Something went wrong.',
      starters: [['Return / refund', '/request_return'], ['Exchange', '/request_exchange'],
        ['Make a complaint', '/file_complaint'], ['Where is my order or case?', '/check_progress'],
        ['Talk to a person', '/request_human']],
      confirmNew: 'Start a new conversation? This one will be cleared from this page.',
      confirmYes: 'Start new',
      cancel: 'Cancel',
      peopleOnline: 'Assistant online · a person is available',
      peopleOffline: 'Assistant online · no one free right now, a person answers later',
      peopleClosed: 'Assistant online · people are back {back}',
      agent: 'Customer service agent:',
      photo: 'Your photo'
    },
    'zh-CN': {
      title: '售后客服',
      connecting: '正在连接…',
      online: '在线',
      offline: '离线',
      reconnecting: '正在重新连接…',
      placeholder: '请输入您的问题…',
      inputLabel: '您的消息',
      send: '发送',
      sending: '发送中…',
      delivered: '已送达',
      notSent: '未发送',
      notSentSep: '：',
      retry: '重试',
      newConversation: '新对话',
      newConversationStarted: '已开始新的对话。',
      typing: '客服正在输入…',
      conversation: '对话记录',
      you: '我：',
      bot: '客服：',
      image: '客服发送的图片',
      empty: '您好！请告诉我们您的退货、换货或投诉问题，我们会尽快为您处理。',
      counter: '{n} / {max}',
      replyOptions: '快捷回复',
      fileTooBig: '文件不能超过 5 MB。',
      uploadFailed: '上传失败，请重试。',
      error: '出现错误。',
      starters: [['退货退款', '/request_return'], ['换货', '/request_exchange'], ['投诉', '/file_complaint'],
        ['查询订单或进度', '/check_progress'], ['转人工客服', '/request_human']],
      confirmNew: '要开始新的对话吗？本页上的当前对话将被清除。',
      confirmYes: '开始新对话',
      cancel: '取消',
      peopleOnline: '智能助手在线 · 人工客服在线',
      peopleOffline: '智能助手在线 · 人工客服暂时忙碌，稍后回复',
      peopleClosed: '智能助手在线 · 人工客服{back}上班',
      agent: '人工客服：',
      photo: '您的照片'
    }
  };

  /* ---------- small helpers ---------- */

  var memoryStore = {};
  function storeGet(key) {
    try { return window.localStorage.getItem(key); } catch (e) {
      return Object.prototype.hasOwnProperty.call(memoryStore, key) ? memoryStore[key] : null;
    }
  }
  function storeSet(key, value) {
    try { window.localStorage.setItem(key, value); } catch (e) { memoryStore[key] = value; }
  }
  function storeDel(key) {
    try { window.localStorage.removeItem(key); } catch (e) { /* ignore */ }
    delete memoryStore[key];
  }

  function uuid() {
    var c = window.crypto;
    if (c && typeof c.randomUUID === 'function') {
      try { return c.randomUUID(); } catch (e) { /* insecure context: fall through */ }
    }
    var b = new Uint8Array(16);
    var i;
    if (c && typeof c.getRandomValues === 'function') {
      c.getRandomValues(b);
    } else {
      for (i = 0; i < 16; i++) { b[i] = Math.floor(Math.random() * 256); }
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    var h = [];
    for (i = 0; i < 16; i++) { h.push((b[i] + 0x100).toString(16).slice(1)); }
    return h.slice(0, 4).join('') + '-' + h.slice(4, 6).join('') + '-' + h.slice(6, 8).join('') +
      '-' + h.slice(8, 10).join('') + '-' + h.slice(10).join('');
  }

  function pickLocale() {
    var raw = null;
    try { raw = new URLSearchParams(window.location.search).get('locale'); } catch (e) { /* ignore */ }
    if (!raw) {
      raw = navigator.language || (navigator.languages && navigator.languages[0]) || 'en';
    }
    return /^zh/i.test(String(raw)) ? 'zh-CN' : 'en';
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function safeImageUrl(value) {
    if (typeof value !== 'string' || !value) { return null; }
    if (/^data:image\/(png|jpe?g|gif|webp);/i.test(value)) { return value; }
    try {
      var url = new URL(value, window.location.href);
      if (url.protocol === 'https:' || url.protocol === 'http:') { return url.href; }
    } catch (e) { /* ignore */ }
    return null;
  }

  function formatTime(ts) {
    var d = new Date(typeof ts === 'number' && isFinite(ts) ? ts * 1000 : Date.now());
    var now = new Date();
    var opts = { hour: '2-digit', minute: '2-digit' };
    if (d.toDateString() !== now.toDateString()) { opts.month = 'short'; opts.day = 'numeric'; }
    try { return d.toLocaleString(locale, opts); } catch (e) { return d.toLocaleTimeString(); }
  }

  function timeEl(ts) {
    var t = el('time', 'msg__time', formatTime(ts));
    var d = new Date(typeof ts === 'number' && isFinite(ts) ? ts * 1000 : Date.now());
    try { t.setAttribute('datetime', d.toISOString()); } catch (e) { /* ignore */ }
    return t;
  }

  /* ---------- DOM ---------- */

  var locale = pickLocale();
  /* A customer token signed by the shop's backend (?customer=...): lets the bot offer
   * this shopper's recent orders. See docs/webchat-protocol.md. */
  var customerToken = null;
  try { customerToken = new URLSearchParams(window.location.search).get('customer'); } catch (e) { /* ignore */ }
  /* A conversation carried over from another channel (?continue=CODE, bot/continuation.py):
   * the code is sent once the chat is connected, then dropped from the address. */
  var continueCode = null;
  try { continueCode = new URLSearchParams(window.location.search).get('continue'); } catch (e) { /* ignore */ }
  if (continueCode && !/^[A-Za-z0-9]{8}$/.test(continueCode)) { continueCode = null; }
  var T = STRINGS[locale];

  var $ = function (id) { return document.getElementById(id); };
  var ui = {
    status: $('chat-status'),
    statusText: $('chat-status-text'),
    banner: $('chat-banner'),
    scroll: $('chat-scroll'),
    empty: $('chat-empty'),
    list: $('chat-messages'),
    typing: $('chat-typing'),
    typingText: $('chat-typing-text'),
    form: $('chat-form'),
    input: $('chat-input'),
    inputLabel: $('chat-input-label'),
    send: $('chat-send'),
    sendText: $('chat-send-text'),
    counter: $('chat-counter'),
    newConv: $('chat-new'),
    title: $('chat-title')
  };

  function applyStrings() {
    document.documentElement.lang = locale;
    document.title = T.title;
    ui.title.textContent = T.title;
    ui.banner.textContent = T.reconnecting;
    ui.list.setAttribute('aria-label', T.conversation);
    ui.typingText.textContent = T.typing;
    ui.input.placeholder = T.placeholder;
    ui.inputLabel.textContent = T.inputLabel;
    ui.sendText.textContent = T.send;
    ui.newConv.textContent = T.newConversation;
    ui.empty.textContent = '';
    ui.empty.appendChild(el('span', 'chat__empty-text', T.empty));
    // The bot's starting options, in the page's language (the flows' own menu payloads).
    var starters = el('div', 'msg__buttons chat__starters');
    starters.setAttribute('role', 'group');
    starters.setAttribute('aria-label', T.replyOptions);
    T.starters.forEach(function (pair) {
      var b = el('button', 'msg__button', pair[0]);
      b.type = 'button';
      b.setAttribute('data-testid', 'starter');
      b.addEventListener('click', function () { sendMessage(pair[0], pair[1]); ui.input.focus(); });
      starters.appendChild(b);
    });
    ui.empty.appendChild(starters);
  }

  function isNearBottom() {
    var s = ui.scroll;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 96;
  }
  function scrollToBottom() { ui.scroll.scrollTop = ui.scroll.scrollHeight; }
  function append(node, force) {
    var stick = force || isNearBottom();
    ui.list.appendChild(node);
    updateEmpty();
    if (stick) { scrollToBottom(); }
  }
  function updateEmpty() { ui.empty.hidden = ui.list.childElementCount > 0; }

  function addNotice(text, kind) {
    var n = el('div', 'notice' + (kind ? ' notice--' + kind : ''), text);
    append(n, false);
  }

  var typingTimer = null;
  function setTyping(on) {
    clearTimeout(typingTimer);
    var stick = isNearBottom();
    ui.typing.hidden = !on;
    if (on) {
      typingTimer = setTimeout(function () { setTyping(false); }, TYPING_SAFETY_MS);
      if (stick) { scrollToBottom(); }
    }
  }

  var people = null; // what the gateway said of its people in the session frame
  function setStatus(state) {
    ui.status.setAttribute('data-state', state);
    var said = T[state] || state;
    if (state === 'online' && people) {
      if (people.people === 'online') { said = T.peopleOnline; }
      else if (people.people === 'offline') { said = T.peopleOffline; }
      else if (people.people === 'closed') { said = T.peopleClosed.replace('{back}', str(people.back)); }
      ui.status.setAttribute('data-people', str(people.people));
    }
    ui.statusText.textContent = said;
    ui.banner.hidden = !(state === 'offline');
  }
  function str(value) { return value === undefined || value === null ? '' : String(value); }

  /* ---------- rendering ---------- */

  function renderButtons(buttons, enabled) {
    var group = el('div', 'msg__buttons');
    group.setAttribute('role', 'group');
    group.setAttribute('aria-label', T.replyOptions);
    buttons.forEach(function (b) {
      if (!b || typeof b !== 'object') { return; }
      var title = typeof b.title === 'string' && b.title ? b.title : (typeof b.payload === 'string' ? b.payload : '');
      if (!title) { return; }
      var btn = el('button', 'msg__button', title);
      btn.type = 'button';
      btn.setAttribute('data-testid', 'reply-button');
      btn.disabled = !enabled;
      btn.addEventListener('click', function () {
        if (btn.disabled) { return; }
        Array.prototype.forEach.call(group.querySelectorAll('button'), function (x) { x.disabled = true; });
        group.classList.add('is-used');
        btn.classList.add('is-chosen');
        sendMessage(title.slice(0, MAX_LEN), typeof b.payload === 'string' && b.payload ? b.payload : null);
        ui.input.focus();
      });
      group.appendChild(btn);
    });
    if (!enabled) { group.classList.add('is-used'); }
    return group.childElementCount ? group : null;
  }

  function renderBot(msg, buttonsEnabled) {
    var byAgent = typeof msg.author === 'string' && msg.author !== '';
    var row = el('div', 'msg msg--bot' + (byAgent ? ' msg--agent' : '') + (msg.holding ? ' msg--holding' : ''));
    row.setAttribute('data-testid', byAgent ? 'msg-agent' : 'msg-bot');
    var text = typeof msg.text === 'string' ? msg.text : '';
    var image = safeImageUrl(msg.image);
    if (text || image) {
      var bubble = el('div', 'bubble');
      bubble.appendChild(el('span', 'sr-only', (byAgent ? T.agent : T.bot) + ' '));
      if (byAgent) {
        bubble.appendChild(el('div', 'msg__author', msg.author));
      }
      if (text) { bubble.appendChild(el('p', 'msg__text', text)); }
      if (image) {
        var link = el('a', 'msg__image-link');
        link.href = image;
        link.target = '_blank';
        link.rel = 'noopener noreferrer';
        var img = el('img', 'msg__image');
        img.alt = T.image;
        img.loading = 'lazy';
        img.decoding = 'async';
        img.addEventListener('load', function () { if (isNearBottom() || row === ui.list.lastElementChild) { scrollToBottom(); } });
        img.src = image;
        link.appendChild(img);
        bubble.appendChild(link);
      }
      row.appendChild(bubble);
    }
    if (Array.isArray(msg.buttons) && msg.buttons.length) {
      var group = renderButtons(msg.buttons, buttonsEnabled);
      if (group) { row.appendChild(group); }
    }
    if (!row.childElementCount) { return null; }
    var meta = el('div', 'msg__meta');
    meta.appendChild(timeEl(msg.ts));
    row.appendChild(meta);
    return row;
  }

  function appendTick(parent) {
    var tick = el('span', 'msg__tick');
    tick.setAttribute('aria-hidden', 'true');
    tick.title = T.delivered;
    parent.appendChild(tick);
    parent.appendChild(el('span', 'sr-only', T.delivered));
  }

  function renderShopperHistory(msg) {
    var row = el('div', 'msg msg--shopper');
    row.setAttribute('data-testid', 'msg-shopper');
    row.setAttribute('data-state', 'delivered');
    var bubble = el('div', 'bubble');
    bubble.appendChild(el('span', 'sr-only', T.you + ' '));
    bubble.appendChild(el('p', 'msg__text', typeof msg.text === 'string' ? msg.text : ''));
    row.appendChild(bubble);
    var meta = el('div', 'msg__meta');
    meta.appendChild(timeEl(msg.ts));
    var state = el('span', 'msg__state');
    appendTick(state);
    meta.appendChild(state);
    row.appendChild(meta);
    return row;
  }

  /* ---------- outgoing messages ---------- */

  // id -> {id, text, payload, ts, state: 'sending'|'delivered'|'failed', error, el}
  var outgoing = new Map();

  function savePending() {
    var list = [];
    outgoing.forEach(function (m) {
      if (m.state === 'sending') {
        list.push({ id: m.id, text: m.text, payload: m.payload, attachments: m.attachments, ts: m.ts,
          fileLabel: m.fileLabel });
      }
    });
    if (list.length) { storeSet(PENDING_KEY, JSON.stringify(list)); } else { storeDel(PENDING_KEY); }
  }

  function loadPending() {
    var raw = storeGet(PENDING_KEY);
    if (!raw) { return; }
    var list;
    try { list = JSON.parse(raw); } catch (e) { storeDel(PENDING_KEY); return; }
    if (!Array.isArray(list)) { storeDel(PENDING_KEY); return; }
    list.forEach(function (p) {
      if (!p || typeof p.id !== 'string' || typeof p.text !== 'string' || !p.text) { return; }
      var m = {
        id: p.id, text: p.text.slice(0, MAX_LEN),
        payload: typeof p.payload === 'string' && p.payload ? p.payload : null,
        attachments: Array.isArray(p.attachments) ? p.attachments.filter(function (a) { return typeof a === 'string'; }) : null,
        ts: typeof p.ts === 'number' ? p.ts : Date.now() / 1000,
        state: 'sending', error: null, el: null, fileLabel: p.fileLabel === true
      };
      outgoing.set(m.id, m);
      renderOutgoing(m);
      append(m.el, true);
    });
  }

  function renderOutgoing(m) {
    var row = el('div', 'msg msg--shopper');
    row.setAttribute('data-testid', 'msg-shopper');
    row.setAttribute('data-id', m.id);
    var bubble = el('div', 'bubble');
    bubble.appendChild(el('span', 'sr-only', T.you + ' '));
    bubble.appendChild(el('p', 'msg__text', m.text));
    if (Array.isArray(m.thumbs) && m.thumbs.length) {
      var thumbs = el('div', 'msg__thumbs');
      m.thumbs.forEach(function (url) {
        var safe = safeImageUrl(url);
        if (!safe) { return; }
        var img = el('img', 'msg__thumb');
        img.alt = T.photo;
        img.setAttribute('data-testid', 'thumb');
        img.src = safe;
        thumbs.appendChild(img);
      });
      if (thumbs.childElementCount) { bubble.appendChild(thumbs); }
    }
    row.appendChild(bubble);
    var meta = el('div', 'msg__meta');
    meta.appendChild(timeEl(m.ts));
    var state = el('span', 'msg__state');
    meta.appendChild(state);
    var retry = el('button', 'msg__retry', T.retry);
    retry.type = 'button';
    retry.setAttribute('data-testid', 'retry');
    retry.addEventListener('click', function () { retryMessage(m.id); });
    meta.appendChild(retry);
    row.appendChild(meta);
    m.el = row;
    m.stateEl = state;
    m.retryEl = retry;
    updateOutgoing(m);
    return row;
  }

  function updateOutgoing(m) {
    if (!m.el) { return; }
    m.el.setAttribute('data-state', m.state);
    m.retryEl.hidden = m.state !== 'failed';
    if (m.state === 'sending') {
      m.stateEl.textContent = T.sending;
      m.stateEl.removeAttribute('title');
    } else if (m.state === 'delivered') {
      m.stateEl.textContent = '';
      appendTick(m.stateEl);
    } else {
      m.stateEl.textContent = T.notSent + (m.error ? T.notSentSep + m.error : '');
      m.stateEl.removeAttribute('title');
    }
  }

  function sendMessage(text, payload, attachments, fileLabel, thumbs) {
    var m = {
      id: uuid(), text: text, payload: payload || null, attachments: attachments || null, ts: Date.now() / 1000,
      state: 'sending', error: null, el: null, fileLabel: fileLabel === true, thumbs: thumbs || null
    };
    outgoing.set(m.id, m);
    savePending();
    renderOutgoing(m);
    append(m.el, true);
    enqueue(m.id);
  }

  function retryMessage(id) {
    var m = outgoing.get(id);
    if (!m || m.state !== 'failed') { return; }
    // A refused message was not kept by the gateway; send it again under a fresh id
    // so it cannot collide with the refused one.
    outgoing.delete(id);
    if (m.el && m.el.parentNode) { m.el.parentNode.removeChild(m.el); }
    sendMessage(m.text, m.payload, m.attachments, m.fileLabel);
    ui.input.focus();
  }

  function markDelivered(id) {
    var m = outgoing.get(id);
    if (!m) { return; }
    m.state = 'delivered';
    m.error = null;
    updateOutgoing(m);
    savePending();
  }

  function markFailed(id, message) {
    var m = outgoing.get(id);
    if (!m || m.state === 'delivered') { return false; }
    m.state = 'failed';
    m.error = message || T.error;
    updateOutgoing(m);
    if (m.shadowed || !m.el.parentNode) { m.shadowed = false; append(m.el, false); }
    savePending();
    return true;
  }

  /* History entries carry no client id (see docs/webchat-protocol.md), so a message
   * the gateway accepted whose ack was lost would show twice after a resume. If the
   * last k shopper texts of the history equal the first k pending texts, in order,
   * those k pending messages are taken to be in the history already. Only used when
   * the history has no ids. */
  function matchLostAcks(historyMessages, known) {
    var result = {};
    if (Object.keys(known).length) { return result; }
    var texts = [];
    historyMessages.forEach(function (h) {
      if (h && h.role === 'shopper' && typeof h.text === 'string') { texts.push(h.text.trim()); }
    });
    var pending = [];
    outgoing.forEach(function (m) { if (m.state === 'sending') { pending.push(m); } });
    for (var k = Math.min(texts.length, pending.length); k > 0; k--) {
      var ok = true;
      for (var j = 0; j < k && ok; j++) {
        ok = texts[texts.length - k + j] === pending[j].text.trim();
      }
      if (ok) {
        for (j = 0; j < k; j++) { result[pending[j].id] = true; }
        break;
      }
    }
    return result;
  }

  /* Rebuild the list from a transcript, then re-append local messages that are
   * still in flight or failed (they are not part of the server transcript yet). */
  function resetTranscript(historyMessages) {
    ui.list.textContent = '';
    var known = {};
    if (historyMessages) {
      var lastShopper = -1;
      historyMessages.forEach(function (h, i) { if (h && h.role === 'shopper') { lastShopper = i; } });
      historyMessages.forEach(function (h, i) {
        if (!h || typeof h !== 'object') { return; }
        if (typeof h.id === 'string') { known[h.id] = true; }
        var node = null;
        if (h.role === 'shopper') { node = renderShopperHistory(h); }
        else if (h.role === 'bot' || h.role === 'agent') { node = renderBot(h, i > lastShopper); }
        if (node) { ui.list.appendChild(node); }
      });
    }
    var inHistory = historyMessages ? matchLostAcks(historyMessages, known) : {};
    outgoing.forEach(function (m, id) {
      if (m.state === 'delivered' || known[id]) {
        outgoing.delete(id);
        return;
      }
      // Accepted before the socket dropped but never acked: it is already in the
      // transcript. Keep it pending (it is resent, the gateway dedupes) but do not
      // show it twice.
      m.shadowed = !!inHistory[id];
      if (m.el && !m.shadowed) { ui.list.appendChild(m.el); }
    });
    savePending();
    updateEmpty();
    scrollToBottom();
  }

  /* ---------- socket ---------- */

  var ws = null;
  var generation = 0;
  var ready = false;          // `session` received on the current socket
  var attempt = 0;            // reconnect attempts since the last good session
  var everConnected = false;
  var sentToken = null;
  var reconnectTimer = null;
  var helloTimer = null;
  var pingTimer = null;
  var lastFrameAt = 0;
  var queue = [];             // ids to send on the current socket
  var queued = {};
  var flushTimer = null;
  var bucket = { tokens: BUCKET_SIZE, at: Date.now() };

  function wsUrl() {
    var proto = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
    return proto + '//' + window.location.host + WS_PATH;
  }

  function sendRaw(frame) {
    if (!ws || ws.readyState !== 1) { return false; }
    try { ws.send(JSON.stringify(frame)); return true; } catch (e) { return false; }
  }

  function takeToken() {
    var now = Date.now();
    bucket.tokens = Math.min(BUCKET_SIZE, bucket.tokens + (now - bucket.at) / BUCKET_REFILL_MS);
    bucket.at = now;
    if (bucket.tokens >= 1) { bucket.tokens -= 1; return 0; }
    return Math.ceil((1 - bucket.tokens) * BUCKET_REFILL_MS);
  }

  function enqueue(id) {
    if (queued[id]) { return; }
    queued[id] = true;
    queue.push(id);
    flush();
  }

  function flush() {
    if (flushTimer || !ready) { return; }
    while (queue.length) {
      var m = outgoing.get(queue[0]);
      if (!m || m.state !== 'sending') { delete queued[queue.shift()]; continue; }
      var wait = takeToken();
      if (wait > 0) {
        flushTimer = setTimeout(function () { flushTimer = null; flush(); }, wait + 20);
        return;
      }
      // Files without a caption go as files only: the gateway tells the assistant so
      // (the label shown in the bubble is not something the shopper said).
      var frame = { type: 'message', id: m.id, text: m.fileLabel ? '' : m.text };
      if (m.payload) { frame.payload = m.payload; }
      if (m.attachments) { frame.attachments = m.attachments; }
      if (!sendRaw(frame)) { return; } // socket gone; the message stays pending
      delete queued[queue.shift()];
    }
  }

  function resetQueue() {
    queue = [];
    queued = {};
    clearTimeout(flushTimer);
    flushTimer = null;
  }

  function connect() {
    clearTimeout(reconnectTimer);
    reconnectTimer = null;
    if (ws) { return; }
    if (!everConnected && attempt === 0) { setStatus('connecting'); }
    var gen = ++generation;
    var sock;
    try { sock = new WebSocket(wsUrl()); } catch (e) { scheduleReconnect(); return; }
    ws = sock;
    sock.onopen = function () {
      if (gen !== generation) { return; }
      lastFrameAt = Date.now();
      bucket = { tokens: BUCKET_SIZE, at: Date.now() };
      sentToken = storeGet(TOKEN_KEY) || null;
      var hello = { type: 'hello', token: sentToken, locale: locale };
      if (customerToken) { hello.customer = customerToken; }
      sendRaw(hello);
      helloTimer = setTimeout(function () { if (gen === generation) { dropSocket(); } }, HELLO_TIMEOUT_MS);
      pingTimer = setInterval(function () {
        if (gen !== generation) { return; }
        if (Date.now() - lastFrameAt > STALE_MS) { dropSocket(); return; }
        sendRaw({ type: 'ping' });
      }, PING_MS);
    };
    sock.onmessage = function (ev) {
      if (gen !== generation) { return; }
      lastFrameAt = Date.now();
      if (typeof ev.data !== 'string') { return; }
      var frame;
      try { frame = JSON.parse(ev.data); } catch (e) { return; }
      if (!frame || typeof frame !== 'object' || typeof frame.type !== 'string') { return; }
      handleFrame(frame);
    };
    sock.onclose = function () {
      if (gen !== generation) { return; }
      closed(true);
    };
    sock.onerror = function () { /* a close event follows */ };
  }

  function teardown() {
    var sock = ws;
    generation++;
    ws = null;
    ready = false;
    clearTimeout(helloTimer);
    clearInterval(pingTimer);
    resetQueue();
    setTyping(false);
    if (sock) {
      sock.onopen = sock.onmessage = sock.onclose = sock.onerror = null;
      try { sock.close(1000); } catch (e) { /* ignore */ }
    }
  }

  function closed(reconnect) {
    teardown();
    setStatus('offline');
    if (reconnect) { scheduleReconnect(); }
  }

  function dropSocket() { closed(true); }

  function scheduleReconnect() {
    if (reconnectTimer) { return; }
    var delay = Math.min(1000 * Math.pow(2, attempt), BACKOFF_MAX_MS);
    attempt++;
    reconnectTimer = setTimeout(connect, delay);
  }

  function handleFrame(f) {
    switch (f.type) {
      case 'session': {
        clearTimeout(helloTimer);
        if (typeof f.token === 'string' && f.token) { storeSet(TOKEN_KEY, f.token); }
        ready = true;
        attempt = 0;
        everConnected = true;
        people = f.service && typeof f.service === 'object' ? f.service : null;
        setStatus('online');
        if (!f.resumed) {
          var hadTranscript = ui.list.querySelector('.msg:not([data-id])') !== null;
          resetTranscript(null);
          if (sentToken && hadTranscript) { addNotice(T.newConversationStarted); }
        }
        // Resend everything not yet acknowledged (the gateway dedupes by id).
        resetQueue();
        outgoing.forEach(function (m) { if (m.state === 'sending') { enqueue(m.id); } });
        if (continueCode) {
          var code = continueCode;
          continueCode = null;
          try {
            var url = new URL(window.location.href);
            url.searchParams.delete('continue');
            window.history.replaceState(null, '', url.toString());
          } catch (e) { /* ignore */ }
          sendMessage('continue ' + code);
        }
        break;
      }
      case 'history':
        setTyping(false);
        resetTranscript(Array.isArray(f.messages) ? f.messages : []);
        break;
      case 'ack':
        if (typeof f.id === 'string') { markDelivered(f.id); }
        break;
      case 'typing':
        setTyping(f.on === true);
        break;
      case 'reply': {
        setTyping(false);
        if (typeof f.author === 'string' && f.author && (!people || people.people !== 'online')) {
          people = { people: 'online' }; // a person is writing to this shopper right now
          setStatus('online');
        }
        var node = renderBot(f, true);
        if (node) { append(node, false); }
        break;
      }
      case 'error': {
        var message = typeof f.message === 'string' && f.message ? f.message
          : (typeof f.code === 'string' ? f.code : T.error);
        if (typeof f.id === 'string' && f.id && outgoing.has(f.id)) {
          markFailed(f.id, message);
        } else {
          addNotice(message, 'error');
        }
        break;
      }
      case 'pong':
      default:
        break;
    }
  }

  /* ---------- composer ---------- */

  function autosize() {
    var i = ui.input;
    i.style.height = 'auto';
    i.style.height = Math.min(i.scrollHeight + 2, 160) + 'px';
  }

  function updateComposer() {
    var len = ui.input.value.length;
    ui.send.disabled = ui.input.value.trim().length === 0;
    if (len >= COUNTER_FROM) {
      ui.counter.hidden = false;
      ui.counter.textContent = T.counter.replace('{n}', String(len)).replace('{max}', String(MAX_LEN));
      ui.counter.classList.toggle('is-max', len >= MAX_LEN);
    } else {
      ui.counter.hidden = true;
    }
  }

  function submit() {
    var text = ui.input.value.replace(/^\s+|\s+$/g, '');
    if (!text) { return; }
    if (text.length > MAX_LEN) { text = text.slice(0, MAX_LEN); }
    sendMessage(text, null);
    ui.input.value = '';
    autosize();
    updateComposer();
    ui.input.focus();
  }

  function askNewConversation() {
    if (!ui.list.childElementCount) { newConversation(); return; }
    if (document.getElementById('chat-confirm')) { return; }
    var bar = el('div', 'chat__confirm');
    bar.id = 'chat-confirm';
    bar.setAttribute('role', 'alertdialog');
    bar.setAttribute('data-testid', 'confirm-new');
    bar.appendChild(el('p', 'chat__confirm-text', T.confirmNew));
    var yes = el('button', 'chat__confirm-yes', T.confirmYes);
    yes.type = 'button';
    yes.setAttribute('data-testid', 'confirm-new-yes');
    var no = el('button', 'chat__confirm-no', T.cancel);
    no.type = 'button';
    no.setAttribute('data-testid', 'confirm-new-cancel');
    var close = function () { if (bar.parentNode) { bar.parentNode.removeChild(bar); } ui.newConv.focus(); };
    yes.addEventListener('click', function () { close(); newConversation(); });
    no.addEventListener('click', close);
    bar.appendChild(yes);
    bar.appendChild(no);
    ui.scroll.parentNode.insertBefore(bar, ui.scroll);
    no.focus();
  }

  function newConversation() {
    teardown();
    clearTimeout(reconnectTimer);
    reconnectTimer = null;
    storeDel(TOKEN_KEY);
    storeDel(PENDING_KEY);
    outgoing.clear();
    ui.list.textContent = '';
    updateEmpty();
    attempt = 0;
    everConnected = false;
    connect();
    ui.input.focus();
  }

  /* ---------- start ---------- */

  applyStrings();
  updateEmpty();
  updateComposer();

  ui.form.addEventListener('submit', function (e) { e.preventDefault(); submit(); });
  ui.input.addEventListener('keydown', function (e) {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      submit();
    }
  });
  ui.input.addEventListener('input', function () { autosize(); updateComposer(); });
  ui.newConv.addEventListener('click', askNewConversation);
  window.addEventListener('online', function () {
    if (!ws) { attempt = 0; connect(); }
  });

  loadPending();
  connect();

  /* ---------- attachments: photo of a damaged parcel, a skin reaction, a receipt ---------- */
  (function () {
    var fileInput = document.getElementById('chat-file');
    var attach = document.getElementById('chat-attach');
    if (!fileInput || !attach) { return; }
    attach.addEventListener('click', function () { fileInput.click(); });
    fileInput.addEventListener('change', function () {
      // Several files chosen together are sent as one message (one turn for the assistant).
      var files = Array.prototype.slice.call(fileInput.files || [], 0, 5);
      fileInput.value = '';
      var token = storeGet(TOKEN_KEY);
      if (!files.length || !token) { return; }
      var tooBig = files.filter(function (f) { return f.size > 5 * 1024 * 1024; });
      if (tooBig.length) { addNotice(T.fileTooBig, 'error'); return; }
      attach.disabled = true;
      Promise.all(files.map(function (file) {
        var form = new FormData();
        form.append('file', file, file.name);
        return fetch('/webchat/upload', { method: 'POST', body: form, headers: { 'X-Webchat-Token': token } })
          .then(function (resp) { return resp.json().then(function (body) { return { ok: resp.ok, body: body }; }); });
      }))
        .then(function (results) {
          var refused = results.filter(function (r) { return !r.ok || !r.body || typeof r.body.id !== 'string'; });
          refused.forEach(function (r) {
            // The gateway explains a refusal in the conversation's language.
            addNotice(String((r.body && r.body.message) || T.uploadFailed), 'error');
          });
          var uploaded = results.filter(function (r) { return refused.indexOf(r) < 0; }).map(function (r) { return r.body; });
          if (!uploaded.length) { return; }
          var caption = ui.input.value.trim();
          ui.input.value = '';
          var label = uploaded.map(function (u) { return '\uD83D\uDCCE ' + String(u.name || ''); }).join(', ');
          var thumbs = uploaded.filter(function (u) { return u.kind === 'image' && typeof u.url === 'string'; })
            .map(function (u) { return u.url; });
          sendMessage(caption || label, null, uploaded.map(function (u) { return u.id; }), !caption, thumbs);
        })
        .catch(function () { addNotice(T.uploadFailed, 'error'); })
        .then(function () { attach.disabled = false; });
    });
  })();
})();

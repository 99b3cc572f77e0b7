// The live view: one product's sessions, actions and summaries as they arrive.
//
// How it gets in: the API key typed in the form stays in this closure (never in
// storage, never in a URL); it is traded for a short-lived stream ticket at
// POST /tickets/{product}, and the browser's own EventSource opens
// /stream/{product}?ticket=... . Within the ticket's lifetime, the browser
// reconnects by itself after a dropped connection, sending Last-Event-ID. Once
// the ticket is dead (expired, or the connector restarted) that reconnect gets
// 401 and EventSource stops for good: the page then fetches a new ticket and
// opens a new EventSource, passing the last id seen as lastEventId= (a new
// EventSource cannot set the header), so nothing is missed or shown twice.
//
// Event text only ever goes into the page as textContent, never as HTML.
'use strict';

(() => {
  const MAX_SESSIONS = 200;
  const MAX_ACTIONS = 200;
  const MAX_SUMMARIES = 3;
  const RETRY_MS = [250, 1000, 2000, 5000, 10000, 30000];

  const $ = (id) => document.getElementById(id);
  const sessions = new Map();
  let key = null;
  let product = null;
  let source = null;
  let lastId = null;
  let streams = 0;
  let failures = 0;
  let generation = 0;
  let retryTimer = null;
  const counts = { actions: 0, summaries: 0 };

  function setStatus(status, text) {
    document.body.dataset.status = status;
    $('status-text').textContent = text;
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function stop() {
    generation += 1;
    if (source) source.close();
    source = null;
    clearTimeout(retryTimer);
  }

  function retryLater(gen, why) {
    if (gen !== generation) return;
    const delay = RETRY_MS[Math.min(failures, RETRY_MS.length - 1)];
    failures += 1;
    setStatus('reconnecting', `${why}; retrying in ${Math.round(delay / 100) / 10} s`);
    clearTimeout(retryTimer);
    retryTimer = setTimeout(() => open(gen), delay);
  }

  async function open(gen) {
    if (gen !== generation) return;
    setStatus('connecting', `Connecting to ${product}…`);
    let response;
    try {
      response = await fetch(`/tickets/${encodeURIComponent(product)}`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${key}` },
        cache: 'no-store',
      });
    } catch (_) {
      retryLater(gen, 'Connector unreachable');
      return;
    }
    if (gen !== generation) return;
    if ([401, 403, 404].includes(response.status)) {
      const body = await response.json().catch(() => ({}));
      setStatus('refused', `Refused: ${body.error || response.status}`);
      return;
    }
    if (!response.ok) {
      retryLater(gen, `Ticket request failed (${response.status})`);
      return;
    }
    const { ticket } = await response.json();
    if (gen !== generation) return;
    let url = `/stream/${encodeURIComponent(product)}?ticket=${encodeURIComponent(ticket)}`;
    if (lastId !== null) url += `&lastEventId=${encodeURIComponent(lastId)}`;
    const es = new EventSource(url);
    source = es;
    streams += 1;
    document.body.dataset.streams = String(streams);
    es.onopen = () => {
      failures = 0;
      setStatus('live', `Live: ${product}`);
    };
    es.onerror = () => {
      if (source !== es) return;
      if (es.readyState === EventSource.CLOSED) {
        // An HTTP error on a reconnect: the ticket is dead. Get a new one.
        source = null;
        retryLater(gen, 'Stream closed');
      } else {
        setStatus('reconnecting', 'Connection lost; the browser is reconnecting…');
      }
    };
    for (const kind of ['actions', 'summary', 'message']) {
      es.addEventListener(kind, (event) => {
        if (source === es) receive(event);
      });
    }
  }

  function receive(event) {
    let payload;
    try {
      payload = JSON.parse(event.data);
    } catch (_) {
      return;
    }
    if (event.lastEventId) lastId = event.lastEventId;
    const type = payload.type || event.type;
    if (type === 'actions') addActions(payload);
    else if (type === 'summary') addSummary(payload);
    $('counts').hidden = false;
    $('n-sessions').textContent = String(sessions.size);
    $('n-actions').textContent = String(counts.actions);
    $('n-summaries').textContent = String(counts.summaries);
    $('last-id').textContent = lastId === null ? '–' : `#${lastId}`;
  }

  function session(payload) {
    const id = payload.session_id || 'unknown';
    let card = sessions.get(id);
    if (!card) {
      const root = element('article', 'session');
      root.dataset.session = id;
      const head = element('div', 'session-head');
      head.append(element('span', 'session-id', id));
      const count = element('span', 'session-count', '0 actions');
      head.append(count);
      const user = element('div', 'session-user');
      const summaries = element('div', 'summaries');
      const actions = element('ol', 'actions');
      root.append(head, user, summaries, actions);
      card = { root, count, user, summaries, actions, n: 0 };
      sessions.set(id, card);
      if (sessions.size > MAX_SESSIONS) {
        const [oldest] = sessions.keys();
        sessions.get(oldest).root.remove();
        sessions.delete(oldest);
      }
    }
    const who = [payload.email, payload.user_id].filter(Boolean).join(' · ');
    if (who) card.user.textContent = who;
    // The most recently active session goes first.
    $('sessions').prepend(card.root);
    card.root.classList.remove('fresh');
    void card.root.offsetWidth;
    card.root.classList.add('fresh');
    return card;
  }

  function clock(ts) {
    const at = ts ? new Date(ts) : null;
    if (!at || Number.isNaN(at.getTime())) return '';
    return at.toISOString().slice(11, 19);
  }

  function addActions(payload) {
    const card = session(payload);
    for (const action of payload.actions || []) {
      const item = element('li', 'action');
      const kind = String(action.event_type || action.type || 'event');
      const badge = element('span', 'kind', kind);
      if (/^[a-z_]+$/.test(kind)) badge.classList.add(kind);
      item.append(badge, element('span', 'what', action.description || action.title || kind));
      item.append(element('time', 'when', clock(action.ts)));
      if (action.canonical_url) item.append(element('span', 'where', action.canonical_url));
      card.actions.append(item);
      card.n += 1;
      counts.actions += 1;
      while (card.actions.children.length > MAX_ACTIONS) card.actions.firstChild.remove();
    }
    card.count.textContent = `${card.n} action${card.n === 1 ? '' : 's'}`;
    card.actions.scrollTop = card.actions.scrollHeight;
  }

  function addSummary(payload) {
    const card = session(payload);
    const box = element('div', 'summary');
    const covers = payload.replaces ? ` · covers ${payload.replaces} actions` : '';
    box.append(element('div', 'summary-label', `Summary${covers}`));
    box.append(element('div', 'summary-text', payload.summary || payload.content || ''));
    card.summaries.prepend(box);
    while (card.summaries.children.length > MAX_SUMMARIES) card.summaries.lastChild.remove();
    counts.summaries += 1;
  }

  function start(event) {
    event.preventDefault();
    const newProduct = $('product').value.trim();
    const newKey = $('key').value.trim();
    if (!newProduct || !newKey) return;
    stop();
    if (newProduct !== product) {
      sessions.clear();
      $('sessions').replaceChildren();
      counts.actions = 0;
      counts.summaries = 0;
      lastId = null;
    }
    product = newProduct;
    key = newKey;
    failures = 0;
    $('key').value = '';
    $('key').placeholder = 'kept in memory';
    $('key').required = false;
    $('hint').hidden = true;
    try {
      localStorage.setItem('autoplay.product', product);
    } catch (_) { /* storage may be off */ }
    open(generation);
  }

  document.addEventListener('DOMContentLoaded', () => {
    const fromUrl = new URLSearchParams(location.search).get('product');
    let remembered = null;
    try {
      remembered = localStorage.getItem('autoplay.product');
    } catch (_) { /* storage may be off */ }
    $('product').value = fromUrl || remembered || '';
    $('connect').addEventListener('submit', (event) => {
      if (!$('key').value.trim() && key && $('product').value.trim() === product) {
        // Reconnect with the key already held.
        event.preventDefault();
        stop();
        failures = 0;
        open(generation);
        return;
      }
      start(event);
    });
  });
})();

// progress-bridge dashboard: a live job list (#/) and a job view (#/jobs/<id>).
// Plain ES module, no framework, CSP-friendly (no inline styles or scripts: widths go through el.style).

import { ProgressClient } from './progress-client.js';

const JOB_STATES = ['pending', 'running', 'pausing', 'paused', 'completing', 'completed', 'canceling', 'canceled', 'failed'];
const VIDEO_STATES = ['pending', 'processing', 'completed', 'failed', 'skipped', 'canceled'];
const TOKEN_KEY = 'progress-bridge.token';
const THEME_KEY = 'progress-bridge.theme';
const DEFAULT_TOKEN = 'dashboard';
const THEMES = ['system', 'light', 'dark'];
const PAGE_SIZE = 50;
const API = '/api/v1/bulk-jobs';

// Sort order for "state": the jobs that need attention first.
const JOB_STATE_ORDER = ['running', 'completing', 'pausing', 'paused', 'pending', 'canceling', 'failed', 'canceled', 'completed'];

// ====================================================================== small utilities

function storageGet(kind, key) {
  try {
    return globalThis[kind]?.getItem(key) ?? null;
  } catch {
    return null;
  }
}

function storageSet(kind, key, value) {
  try {
    if (value == null) globalThis[kind]?.removeItem(key);
    else globalThis[kind]?.setItem(key, value);
  } catch {
    // storage unavailable (private mode, quota): the value lives for this page only
  }
}

/** Creates an element. props: class, text, testid, dataset, on<event>, and plain attributes. */
function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value == null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = value;
    else if (key === 'testid') el.setAttribute('data-testid', value);
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

function setText(el, text) {
  const value = text == null ? '' : String(text);
  if (el.textContent !== value) el.textContent = value;
}

function setAttr(el, name, value) {
  if (value == null) {
    if (el.hasAttribute(name)) el.removeAttribute(name);
    return;
  }
  const v = String(value);
  if (el.getAttribute(name) !== v) el.setAttribute(name, v);
}

function setHidden(el, hidden) {
  if (el.hidden !== hidden) el.hidden = hidden;
}

/** Sets `state-<state>` on an element, keeping its other classes. */
function setStateClass(el, state) {
  const wanted = `state-${state || 'unknown'}`;
  if (el.classList.contains(wanted)) return;
  for (const cls of [...el.classList]) if (cls.startsWith('state-')) el.classList.remove(cls);
  el.classList.add(wanted);
}

function clampPercent(value) {
  const n = Number(value);
  if (!Number.isFinite(n)) return 0;
  return Math.min(100, Math.max(0, n));
}

/** A role=progressbar element with a fill; update with setProgress. */
function progressBar({ label, large = false, testid } = {}) {
  const fill = h('span', { class: 'bar-fill' });
  const bar = h('div', {
    class: large ? 'bar bar-lg' : 'bar',
    role: 'progressbar',
    'aria-valuemin': '0',
    'aria-valuemax': '100',
    'aria-valuenow': '0',
    'aria-label': label,
    testid,
  }, fill);
  bar.fill = fill;
  return bar;
}

function setProgress(bar, percent, valueText) {
  const raw = typeof percent === 'number' && Number.isFinite(percent) ? percent : 0;
  setAttr(bar, 'aria-valuenow', raw); // the number as given
  setAttr(bar, 'aria-valuetext', valueText ?? `${formatPercent(raw)}`);
  const width = `${clampPercent(raw)}%`;
  if (bar.fill.style.width !== width) bar.fill.style.width = width;
}

/** Keyed list rendering: reuses elements by key, moves only what is out of place. */
function reconcile(container, items, keyOf, create, update, cache) {
  const seen = new Set();
  let prev = null;
  for (const item of items) {
    const key = keyOf(item);
    seen.add(key);
    let el = cache.get(key);
    if (!el) {
      el = create(item);
      cache.set(key, el);
    }
    update(el, item);
    const expected = prev ? prev.nextSibling : container.firstChild;
    if (expected !== el) container.insertBefore(el, expected);
    prev = el;
  }
  for (const [key, el] of cache) {
    if (!seen.has(key)) {
      el.remove();
      cache.delete(key);
    }
  }
}

/** Coalesces many update requests into one render per animation frame. */
class FrameScheduler {
  constructor(render) {
    this.render = render;
    this.handle = null;
    this.stopped = false;
  }

  schedule() {
    if (this.handle != null || this.stopped) return;
    this.handle = requestAnimationFrame(() => {
      this.handle = null;
      if (!this.stopped) this.render();
    });
  }

  stop() {
    this.stopped = true;
    if (this.handle != null) cancelAnimationFrame(this.handle);
    this.handle = null;
  }
}

// ====================================================================== formatting

function formatPercent(value) {
  if (typeof value !== 'number' || !Number.isFinite(value)) return '—';
  return `${Math.round(value * 10) / 10}%`;
}

function formatRate(value) {
  if (typeof value !== 'number' || !Number.isFinite(value)) return '—';
  return `${Math.round(value * 1000) / 10}%`;
}

function formatCount(value) {
  return typeof value === 'number' && Number.isFinite(value) ? String(value) : '0';
}

function formatDuration(seconds) {
  if (typeof seconds !== 'number' || !Number.isFinite(seconds) || seconds < 0) return '—';
  if (seconds < 1) return '<1s';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, '0')}s`;
  const hours = Math.floor(m / 60);
  if (hours < 48) return `${hours}h ${String(m % 60).padStart(2, '0')}m`;
  return `${Math.floor(hours / 24)}d ${hours % 24}h`;
}

function formatMs(ms) {
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return formatDuration(ms / 1000);
}

function formatThroughput(value) {
  if (typeof value !== 'number' || !Number.isFinite(value)) return '—';
  return `${value < 10 ? value.toFixed(1) : Math.round(value)}/min`;
}

const timeCache = new Map();

/** Date.parse with a small cache: sorting thousands of rows per frame parses the same strings again and again. */
function parseTime(iso) {
  if (typeof iso !== 'string' || !iso) return null;
  let t = timeCache.get(iso);
  if (t === undefined) {
    t = Date.parse(iso);
    if (!Number.isFinite(t)) t = null;
    if (timeCache.size > 20000) timeCache.clear();
    timeCache.set(iso, t);
  }
  return t;
}

const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: 'base' });

function formatRelative(iso, now = Date.now()) {
  const t = parseTime(iso);
  if (t == null) return '—';
  const diff = Math.round((now - t) / 1000);
  const abs = Math.abs(diff);
  if (abs < 5) return 'just now';
  let text;
  if (abs < 60) text = `${abs}s`;
  else if (abs < 3600) text = `${Math.floor(abs / 60)}m`;
  else if (abs < 86400) text = `${Math.floor(abs / 3600)}h`;
  else if (abs < 30 * 86400) text = `${Math.floor(abs / 86400)}d`;
  else return new Date(t).toLocaleDateString(undefined, { year: 'numeric', month: 'short', day: 'numeric' });
  return diff >= 0 ? `${text} ago` : `in ${text}`;
}

function formatAbsolute(iso) {
  const t = parseTime(iso);
  return t == null ? '' : new Date(t).toLocaleString();
}

function formatAge(ms) {
  if (typeof ms !== 'number' || !Number.isFinite(ms)) return '—';
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s ago`;
  return `${formatDuration(s)} ago`;
}

function jobTotal(job) {
  if (!job) return 0;
  if (typeof job.total_videos === 'number') return job.total_videos;
  return VIDEO_STATES.reduce((sum, s) => sum + (Number(job[s]) || 0), 0);
}

function stateLabel(state) {
  return state ? state.replace(/_/g, ' ') : 'unknown';
}

function jobHref(jobId) {
  return `#/jobs/${encodeURIComponent(jobId)}`;
}

// ====================================================================== theme

const darkQuery = typeof globalThis.matchMedia === 'function' ? globalThis.matchMedia('(prefers-color-scheme: dark)') : null;

function themePreference() {
  const stored = storageGet('localStorage', THEME_KEY);
  return THEMES.includes(stored) ? stored : 'system';
}

function effectiveTheme(preference) {
  if (preference === 'light' || preference === 'dark') return preference;
  return darkQuery?.matches ? 'dark' : 'light';
}

function applyTheme() {
  const pref = themePreference();
  const effective = effectiveTheme(pref);
  const root = document.documentElement;
  if (root.dataset.theme !== effective) root.dataset.theme = effective;
  root.dataset.themePreference = pref;
  const button = document.getElementById('theme-toggle');
  if (button) {
    const next = THEMES[(THEMES.indexOf(pref) + 1) % THEMES.length];
    const name = pref === 'system' ? `System (${effective})` : pref[0].toUpperCase() + pref.slice(1);
    setText(button, `Theme: ${name}`);
    button.setAttribute('aria-label', `Theme: ${name}. Switch to ${next}.`);
    button.title = `Switch to ${next} theme`;
  }
}

function cycleTheme() {
  const pref = themePreference();
  const next = THEMES[(THEMES.indexOf(pref) + 1) % THEMES.length];
  storageSet('localStorage', THEME_KEY, next);
  applyTheme();
}

// ====================================================================== token

/**
 * Takes `token=` from the hash (`#token=…`, `#/jobs/x?token=…`) or the query, stores it, removes it from the URL.
 * Returns true when a token was found.
 */
function captureTokenFromUrl() {
  let found = null;
  const url = new URL(window.location.href);
  let hash = url.hash.replace(/^#/, '');
  const match = hash.match(/(^|[?&])token=([^&]*)/);
  if (match) {
    try {
      found = decodeURIComponent(match[2].replace(/\+/g, ' '));
    } catch {
      found = match[2];
    }
    hash = hash.replace(match[0], match[1] === '?' ? '?' : '').replace(/\?&/, '?').replace(/^&/, '').replace(/[?&]$/, '');
  }
  if (url.searchParams.has('token')) {
    if (found == null) found = url.searchParams.get('token');
    url.searchParams.delete('token');
  }
  if (found == null && !match) return false;
  if (found) storageSet('sessionStorage', TOKEN_KEY, found);
  const search = url.searchParams.toString();
  const clean = `${url.pathname}${search ? `?${search}` : ''}${hash ? `#${hash}` : ''}`;
  try {
    window.history.replaceState(window.history.state, '', clean);
  } catch {
    // some embedders forbid it; the token then stays visible but works
  }
  return Boolean(found);
}

function currentToken() {
  return storageGet('sessionStorage', TOKEN_KEY) || DEFAULT_TOKEN;
}

/** Asks the REST API whether the token is accepted. {denied, status, code, message, reachable} */
async function probeAuth(path) {
  try {
    const response = await fetch(path, {
      headers: { Authorization: `Bearer ${currentToken()}`, Accept: 'application/json' },
      cache: 'no-store',
      credentials: 'same-origin',
    });
    if (response.status === 401 || response.status === 403) {
      let body = null;
      try {
        body = await response.json();
      } catch {
        body = null;
      }
      return {
        denied: true,
        reachable: true,
        status: response.status,
        code: body?.error?.code ?? (response.status === 401 ? 'unauthorized' : 'forbidden'),
        message: body?.error?.message ?? '',
      };
    }
    return { denied: false, reachable: response.ok || response.status === 404, status: response.status };
  } catch (err) {
    return { denied: false, reachable: false, status: 0, message: err instanceof Error ? err.message : String(err) };
  }
}

const tokenUi = {
  waiters: [],
  form: null,
};

function awaitNewToken() {
  return new Promise((resolve) => {
    tokenUi.waiters.push(resolve);
  });
}

function releaseTokenWaiters(value) {
  const waiters = tokenUi.waiters.splice(0);
  for (const resolve of waiters) resolve(value);
  return waiters.length;
}

function hideTokenForm() {
  const slot = document.getElementById('token-slot');
  if (slot) slot.replaceChildren();
  tokenUi.form = null;
}

/** Shows the "token needed" form. `denied` is a probeAuth answer, or null when opened by hand. */
function showTokenForm(denied, { focus = true } = {}) {
  const slot = document.getElementById('token-slot');
  if (!slot) return;
  const reason = denied
    ? `The bridge refused the current token (${denied.status} ${denied.code}${denied.message ? `: ${denied.message}` : ''}).`
    : 'Paste an access token (JWT) for the bridge. It is kept in this tab only (sessionStorage).';
  if (tokenUi.form) {
    setText(tokenUi.form.querySelector('.token-reason'), reason);
    if (denied) setText(tokenUi.form.querySelector('h2'), 'Token needed');
    if (focus) tokenUi.form.querySelector('input').focus();
    return;
  }
  const input = h('input', {
    id: 'token-input',
    name: 'token',
    class: 'input mono',
    type: 'text',
    autocomplete: 'off',
    spellcheck: 'false',
    autocapitalize: 'off',
    required: true,
    testid: 'token-input',
    'aria-describedby': 'token-reason',
  });
  const error = h('p', { class: 'muted', id: 'token-error', 'aria-live': 'polite' });
  const form = h('form', {
    class: 'token-form',
    novalidate: true,
    onsubmit: (event) => {
      event.preventDefault();
      const value = input.value.trim();
      if (!value) {
        setText(error, 'Enter a token first.');
        input.focus();
        return;
      }
      storageSet('sessionStorage', TOKEN_KEY, value);
      hideTokenForm();
      if (releaseTokenWaiters(value) === 0) restartView();
    },
  },
  h('div', { class: 'field' }, h('label', { class: 'field-label', for: 'token-input', text: 'Access token' }), input),
  h('button', { class: 'btn btn-primary', type: 'submit', testid: 'token-submit', text: 'Use token' }),
  h('button', { class: 'btn', type: 'button', text: 'Cancel', onclick: () => hideTokenForm() }));
  const card = h('section', { class: 'card token-card', testid: 'token-form', 'aria-labelledby': 'token-title' },
    h('h2', { id: 'token-title', text: denied ? 'Token needed' : 'Access token' }),
    h('p', { class: 'token-reason', id: 'token-reason', text: reason }),
    form,
    error);
  tokenUi.form = card;
  slot.replaceChildren(card);
  if (focus) input.focus();
}

// ====================================================================== job commands (REST)

const TERMINAL_STATES = new Set(['completed', 'failed', 'canceled']);
const CONTROL_ACTIONS = ['pause', 'resume', 'cancel'];
const ACTION_TEXT = {
  pause: { verb: 'Pause', what: 'pause the job', expected: ['pausing', 'paused'] },
  resume: { verb: 'Resume', what: 'resume the job', expected: ['running', 'pending'] },
  cancel: { verb: 'Cancel', what: 'cancel the job', expected: ['canceling', 'canceled'] },
};
const DISALLOWED_TITLE = {
  pause: 'Only a running job can be paused',
  resume: 'Only a paused or pausing job can be resumed',
  cancel: 'A finished job, or one completing or being canceled, cannot be canceled',
};
const COMMAND_REQUEST_TIMEOUT_MS = 20000;
/** Tunables; `window.__dashboard.commandSettings` exposes this object (tests shorten the wait). */
const commandSettings = { pendingTimeoutMs: 60000, noteMs: 10000 };

/** Which of pause / resume / cancel the job's state allows: the bridge's rule, the state machine's next moves. */
function allowedActions(job) {
  if (!job) return { pause: false, resume: false, cancel: false };
  const state = job.state ?? null;
  return {
    pause: state === 'running',
    resume: state === 'paused' || state === 'pausing',
    cancel: !TERMINAL_STATES.has(state) && state !== 'canceling' && state !== 'completing',
  };
}

function newIdempotencyKey() {
  const c = globalThis.crypto;
  if (typeof c?.randomUUID === 'function') return c.randomUUID(); // secure contexts only (https, localhost)
  const b = new Uint8Array(16);
  c.getRandomValues(b);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const x = Array.from(b, (v) => v.toString(16).padStart(2, '0')).join('');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

/**
 * Idempotency-Keys of requests that may or may not have been published (network error, timeout, 5xx), by
 * request (path + body). Sending the same request again reuses its key, so the bridge answers the first
 * outcome (`repeated: true`) instead of publishing twice. Any other answer forgets the key: the next
 * request is a new user action with a fresh key.
 */
const retryKeys = new Map();

function rememberRetryKey(memo, key) {
  retryKeys.delete(memo);
  retryKeys.set(memo, key);
  while (retryKeys.size > 50) retryKeys.delete(retryKeys.keys().next().value);
}

/**
 * POSTs a command. Resolves (never rejects) with
 * `{ok, status, data, location, code, message, retryable, network, key}`; `message` is the server's, or null.
 */
async function sendCommand(path, body) {
  const bodyText = JSON.stringify(body ?? {});
  const memo = `${path}\u0000${bodyText}`;
  const key = retryKeys.get(memo) ?? newIdempotencyKey();
  retryKeys.delete(memo);
  const controller = typeof AbortController === 'function' ? new AbortController() : null;
  const timer = controller ? setTimeout(() => controller.abort(), COMMAND_REQUEST_TIMEOUT_MS) : null;
  try {
    let response;
    try {
      response = await fetch(path, {
        method: 'POST',
        headers: {
          Authorization: `Bearer ${currentToken()}`,
          'Content-Type': 'application/json',
          Accept: 'application/json',
          'Idempotency-Key': key,
        },
        body: bodyText,
        cache: 'no-store',
        credentials: 'same-origin',
        signal: controller?.signal,
      });
    } catch (err) {
      rememberRetryKey(memo, key);
      return {
        ok: false, status: 0, network: true, retryable: true, key, code: 'network_error', message: null,
        detail: controller?.signal.aborted ? 'timeout' : (err instanceof Error ? err.message : String(err)),
      };
    }
    let data = null;
    try {
      const text = await response.text();
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
    const { status } = response;
    if (status >= 200 && status < 300) {
      return { ok: true, status, data, key, location: response.headers.get('Location') };
    }
    const error = data && typeof data === 'object' && data.error && typeof data.error === 'object' ? data.error : null;
    const retryable = status >= 500 || status === 408 || status === 429;
    if (retryable) rememberRetryKey(memo, key);
    return {
      ok: false, status, network: false, retryable, key,
      code: typeof error?.code === 'string' ? error.code : null,
      message: typeof error?.message === 'string' && error.message ? error.message : null,
    };
  } finally {
    if (timer != null) clearTimeout(timer);
  }
}

/** What to show for a failed command: {title, message, hint, retry, token}. `message` is the server's when it sent one. */
function describeFailure(result, what) {
  const s = result.status;
  let title = `Couldn’t ${what}`;
  let fallback = `The bridge answered HTTP ${s}.`;
  let hint = '';
  let retry = false;
  let token = false;
  if (result.network) {
    title = 'No answer from the bridge';
    fallback = result.detail === 'timeout'
      ? `The request to ${what} timed out.`
      : `The request to ${what} did not reach the bridge (network error).`;
    hint = 'It may or may not have been sent. Try again reuses the same Idempotency-Key, so it is never published twice.';
    retry = true;
  } else if (s === 401) {
    fallback = 'The bridge needs a valid access token.';
    hint = 'Enter a token in the form above, then try again.';
    retry = true;
    token = true;
  } else if (s === 403) {
    fallback = 'The token does not allow this.';
    hint = 'This token can watch jobs but not control them: it needs the control claim.';
    retry = true;
    token = true;
  } else if (s === 404) {
    hint = 'The bridge knows no job with this id (yet).';
  } else if (s === 409) {
    title = `Can’t ${what} now`;
  } else if (s === 413) {
    fallback = 'The request is too large for the bridge.';
  } else if (s === 422) {
    hint = 'Try again sends it as a new request.';
    retry = true;
  } else if (s === 503) {
    hint = 'Kafka did not take it. Try again reuses the same Idempotency-Key, so it is never published twice.';
    retry = true;
  } else if (result.retryable) {
    hint = 'Try again reuses the same Idempotency-Key, so it is never published twice.';
    retry = true;
  }
  return { title, message: result.message ?? fallback, hint, retry, token };
}

/**
 * An inline error region for commands: `[data-testid=command-error]` is an always-present live region whose text
 * is exactly the error message (the server's when there is one); the title, hint and buttons sit beside it.
 */
function commandErrorBox({ onRetry, onToken }) {
  const title = h('strong', { class: 'command-error-title', hidden: true });
  const message = h('p', {
    class: 'command-error-message', testid: 'command-error', role: 'alert', 'aria-live': 'assertive', 'aria-atomic': 'true',
  });
  const hint = h('p', { class: 'command-error-hint', hidden: true });
  const retry = h('button', { class: 'btn', type: 'button', testid: 'command-retry', text: 'Try again', hidden: true, onclick: () => onRetry() });
  const token = h('button', { class: 'btn', type: 'button', text: 'Change token', hidden: true, onclick: () => onToken() });
  const actions = h('div', { class: 'command-error-actions', hidden: true }, retry, token);
  const dismiss = h('button', {
    class: 'btn btn-ghost btn-icon', type: 'button', 'aria-label': 'Dismiss error', title: 'Dismiss', text: '×', hidden: true,
    onclick: () => box.clear(),
  });
  const box = h('div', { class: 'command-error' }, h('div', { class: 'command-error-body' }, title, message, hint), actions, dismiss);
  box.show = (info) => {
    box.classList.add('is-shown');
    setText(title, info.title);
    setHidden(title, !info.title);
    setText(message, info.message);
    setText(hint, info.hint);
    setHidden(hint, !info.hint);
    setHidden(retry, !info.retry);
    setHidden(token, !info.token);
    setHidden(actions, !(info.retry || info.token));
    setHidden(dismiss, false);
  };
  box.setHint = (text) => {
    setText(hint, text);
    setHidden(hint, !text);
  };
  box.clear = () => {
    box.classList.remove('is-shown');
    setText(message, '');
    for (const el of [title, hint, actions, dismiss]) setHidden(el, true);
  };
  box.shown = () => box.classList.contains('is-shown');
  return box;
}

/** Opens the token form for a refused command; `then(token)` runs once a new token was entered. */
function askForCommandToken(result, then) {
  const denied = result && !result.network && (result.status === 401 || result.status === 403)
    ? { status: result.status, code: result.code ?? (result.status === 401 ? 'unauthorized' : 'forbidden'), message: result.message ?? '' }
    : null;
  showTokenForm(denied, { focus: true });
  awaitNewToken().then((token) => {
    if (token) then(token);
  });
}

/** Opens a modal `<dialog>` (Escape closes it) and focuses `focus`. No `autofocus` attributes: Chrome reports those. */
function openModal(dialog, focus = null) {
  if (!dialog.open) {
    if (typeof dialog.showModal === 'function') dialog.showModal();
    else dialog.setAttribute('open', '');
  }
  focus?.focus();
}

function closeModal(dialog) {
  if (!dialog.open) return;
  if (typeof dialog.close === 'function') dialog.close();
  else dialog.removeAttribute('open');
}

// ====================================================================== connection status (header)

function statusText(health) {
  switch (health.state) {
    case 'open': return 'Live';
    case 'connecting': return 'Connecting…';
    case 'reconnecting': return health.attempts > 0 ? `Reconnecting… (attempt ${health.attempts})` : 'Reconnecting…';
    case 'offline': return 'Offline';
    case 'closed': return 'Disconnected';
    default: return 'Idle';
  }
}

function updateHeaderStatus(client) {
  const el = document.getElementById('connection-status');
  const text = document.getElementById('connection-status-text');
  if (!el || !text || !client) return;
  const health = client.health();
  setAttr(el, 'data-state', health.state);
  setText(text, statusText(health));
  const close = health.lastClose;
  setAttr(el, 'title', close ? `Last close: ${close.code}${close.reason ? ` ${close.reason}` : ''}` : null);
}

// ====================================================================== views: shared behaviour

/** Base of both views: owns the client, the frame scheduler, a 1 s tick and the connection notices. */
class LiveView {
  constructor(root) {
    this.root = root;
    this.client = null;
    this.scheduler = new FrameScheduler(() => this.render());
    this.tick = null;
    this.everOpened = false;
    this.probed = false;
    this.authDenied = null; // probeAuth answer when the token was refused
    this.unreachable = null; // probeAuth answer when the bridge could not be asked
    this.stateBlockKind = null;
    this.destroyed = false;
  }

  /** REST path used to tell a refused token from an unreachable bridge. */
  authProbePath() {
    return `${API}?limit=1`;
  }

  makeClient(options) {
    const client = new ProgressClient({
      ...options,
      token: currentToken(),
      getToken: ({ force }) => this.getToken(force),
      onStatus: (health) => this.onStatus(health),
    });
    this.client = client;
    return client;
  }

  async getToken(force) {
    if (!force) return currentToken();
    const answer = await probeAuth(this.authProbePath());
    if (this.destroyed) return currentToken();
    if (answer.denied) {
      this.authDenied = answer;
      this.scheduler.schedule();
      showTokenForm(answer, { focus: false });
      const token = await awaitNewToken();
      this.authDenied = null;
      return token || currentToken();
    }
    return currentToken();
  }

  onStatus(health) {
    if (health.state === 'open') {
      this.client?.ping(); // a first RTT right away instead of after a whole ping interval
      this.everOpened = true;
      this.authDenied = null;
      this.unreachable = null;
    }
    if (health.state === 'reconnecting' && !this.everOpened && !this.probed) {
      // The first failure before `open`: a refused upgrade looks like any network error (1006), so ask REST why.
      this.probed = true;
      probeAuth(this.authProbePath()).then((answer) => {
        if (this.destroyed) return;
        if (answer.denied) {
          this.authDenied = answer;
          showTokenForm(answer, { focus: false });
        } else if (!this.everOpened) {
          this.unreachable = answer;
        }
        this.scheduler.schedule();
      });
    }
    updateHeaderStatus(this.client);
    this.scheduler.schedule();
  }

  start() {
    updateHeaderStatus(this.client);
    this.client.connect();
    this.tick = setInterval(() => this.onTick(), 1000);
  }

  onTick() {
    updateHeaderStatus(this.client);
    this.scheduler.schedule();
  }

  destroy() {
    this.destroyed = true;
    if (this.tick != null) clearInterval(this.tick);
    this.tick = null;
    this.scheduler.stop();
    this.client?.close();
  }

  /**
   * Fills `container` with the right notice for the connection: before any data (`hasData` false) one of
   * loading / error / offline blocks; with data, a banner when not live. Rebuilt only when its kind changes.
   */
  renderConnectionNotice(container, hasData, noun) {
    const health = this.client.health();
    let kind = null;
    if (!hasData) {
      if (this.authDenied) kind = 'auth';
      else if (health.state === 'offline') kind = 'offline';
      else if (health.state === 'closed') kind = 'closed';
      else if (health.state === 'reconnecting') kind = 'error';
      else kind = 'loading';
    } else if (health.state === 'offline') kind = 'offline-banner';
    else if (health.state === 'reconnecting') kind = 'stale-banner';
    else if (health.state === 'closed') kind = 'closed-banner';

    if (kind !== this.stateBlockKind) {
      this.stateBlockKind = kind;
      container.replaceChildren(...(kind ? [this.buildNotice(kind, noun)] : []));
    }
    const retry = container.querySelector('[data-retry-text]');
    if (retry) {
      const seconds = health.nextRetryInMs == null ? null : Math.ceil(health.nextRetryInMs / 1000);
      const attempt = health.attempts ? ` (attempt ${health.attempts})` : '';
      setText(retry, seconds == null ? `Trying again…${attempt}` : `Retrying in ${seconds}s${attempt}.`);
    }
    const detail = container.querySelector('[data-error-detail]');
    if (detail) {
      let text = '';
      const code = health.lastClose ? ` (close code ${health.lastClose.code})` : '';
      if (this.unreachable && this.unreachable.status === 0) text = 'The server did not answer.';
      else if (this.unreachable) text = `The live connection failed${code}; the REST API answered HTTP ${this.unreachable.status}.`;
      else if (health.lastClose) text = `The live connection failed${code}.`;
      setText(detail, text);
    }
  }

  buildNotice(kind, noun) {
    const retryNow = () => {
      if (!this.client.retryNow()) restartView();
    };
    switch (kind) {
      case 'loading':
        return h('div', { class: 'state-block', testid: 'loading-state', role: 'status' },
          h('span', { class: 'spinner', 'aria-hidden': 'true' }),
          h('strong', { text: `Loading ${noun}…` }),
          h('span', { text: 'Waiting for the bridge to send the current state.' }));
      case 'error':
        return h('div', { class: 'state-block state-error', testid: 'error-state', role: 'alert' },
          h('strong', { text: 'Can’t reach the progress bridge' }),
          h('span', { 'data-error-detail': '' }),
          ' ',
          h('span', { 'data-retry-text': '' }),
          h('div', {}, h('button', { class: 'btn', type: 'button', text: 'Retry now', onclick: retryNow })));
      case 'auth':
        return h('div', { class: 'state-block state-error', testid: 'error-state', role: 'alert' },
          h('strong', { text: 'Token needed' }),
          h('span', { text: `The bridge refused the access token (${this.authDenied.status} ${this.authDenied.code}). Enter a token to continue.` }),
          h('div', {}, h('button', { class: 'btn btn-primary', type: 'button', text: 'Enter token', onclick: () => showTokenForm(this.authDenied) })));
      case 'offline':
        return h('div', { class: 'state-block', testid: 'offline-state', role: 'status' },
          h('strong', { text: 'You are offline' }),
          h('span', { text: `The ${noun} will load as soon as the network is back.` }));
      case 'closed':
        return h('div', { class: 'state-block state-error', testid: 'error-state', role: 'alert' },
          h('strong', { text: 'Disconnected' }),
          h('span', { text: 'The bridge ended the live connection.' }),
          h('div', {}, h('button', { class: 'btn', type: 'button', text: 'Reconnect', onclick: () => restartView() })));
      case 'offline-banner':
        return h('div', { class: 'notice notice-warn', testid: 'offline-state', role: 'status' },
          h('div', { class: 'notice-body' }, h('strong', { text: 'You are offline' }), 'Showing the last data received; live updates resume when the network is back.'));
      case 'stale-banner':
        return h('div', { class: 'notice notice-warn', testid: 'stale-banner', role: 'status' },
          h('div', { class: 'notice-body' }, h('strong', { text: 'Connection lost — showing the last data received' }), h('span', { 'data-retry-text': '' })),
          h('button', { class: 'btn', type: 'button', text: 'Retry now', onclick: retryNow }));
      case 'closed-banner':
        return h('div', { class: 'notice notice-error', testid: 'closed-banner', role: 'status' },
          h('div', { class: 'notice-body' }, h('strong', { text: 'Disconnected' }), 'The bridge ended the live connection; the data shown is no longer updated.'),
          h('button', { class: 'btn', type: 'button', text: 'Reconnect', onclick: () => restartView() }));
      default:
        return h('div');
    }
  }
}

// ====================================================================== job list (#/)

function compareIds(a, b) {
  const x = String(a);
  const y = String(b);
  if (x === y) return 0;
  return x < y ? -1 : 1;
}

function stateRank(state) {
  const i = JOB_STATE_ORDER.indexOf(state);
  return i === -1 ? JOB_STATE_ORDER.length : i;
}

const listPrefs = { q: '', state: '', sort: 'updated' };

const JOB_SORTS = {
  updated: { label: 'Recently updated', compare: (a, b) => (parseTime(b.updated_at) ?? -Infinity) - (parseTime(a.updated_at) ?? -Infinity) },
  progress: { label: 'Progress', compare: (a, b) => (b.percent_complete ?? -1) - (a.percent_complete ?? -1) },
  title: { label: 'Title', compare: (a, b) => collator.compare(a.title || a.job_id, b.title || b.job_id) },
  state: { label: 'State', compare: (a, b) => stateRank(a.state) - stateRank(b.state) },
};

// ---------------------------------------------------------------------- "New job" dialog

const PRIORITIES = ['low', 'normal', 'high', 'urgent'];
const OUTPUT_FORMATS = ['mp4', 'webm', 'mov'];
const VIDEO_CODECS = ['h264', 'h265', 'vp9', 'av1'];
const AUDIO_CODECS = ['aac', 'opus', 'mp3'];
const RESOLUTIONS = ['480p', '720p', '1080p', '1440p', '2160p'];
const SHEET_ID_RE = /^[A-Za-z0-9_-]{1,128}$/;
const BUCKET_RE = /^[a-z0-9][a-z0-9._-]{2,221}$/;
/** Body fields (as JSON pointers and names in the bridge's invalid_body messages) → form fields. */
const CREATE_FIELD_NAMES = {
  title: 'title', priority: 'priority', processing_deadline_ms: 'deadline', input_source: 'sheet', sheet_id: 'sheet',
  range: 'range', output: 'format', format: 'format', video_codec: 'videoCodec', audio_codec: 'audioCodec',
  resolution: 'resolution', output_bucket: 'bucket', template: 'template', template_id: 'template',
};

function jobIdFromLocation(location) {
  if (typeof location !== 'string') return null;
  const last = location.split('?')[0].split('/').filter(Boolean).pop();
  if (!last) return null;
  try {
    return decodeURIComponent(last);
  } catch {
    return last;
  }
}

/** The form's fields named in an invalid_body message ("…: /input_source/sheet_id: …" or "output.format"). */
function fieldsInMessage(message) {
  const found = [];
  if (typeof message !== 'string') return found;
  const add = (name) => {
    const key = CREATE_FIELD_NAMES[name];
    if (key && !found.includes(key)) found.push(key);
  };
  for (const m of message.matchAll(/(?:^|[\s'"`(])\/([a-z_]+(?:\/[a-z_]+)*)/g)) add(m[1].split('/').pop());
  for (const m of message.matchAll(/\b((?:[a-z]+_[a-z_]+|title|priority|output|range|format|resolution|template)(?:\.[a-z_]+)+)\b/g)) {
    add(m[1].split('.').pop());
  }
  for (const m of message.matchAll(/\b([a-z]+(?:_[a-z]+)+)\b/g)) add(m[1]);
  return found;
}

class NewJobDialog {
  constructor({ onCreated }) {
    this.onCreated = onCreated;
    this.inFlight = false;
    this.destroyed = false;
    this.fields = {};
    this.build();
  }

  build() {
    const f = this.fields;
    const options = (values, { empty = null, selected = null } = {}) => [
      empty ? h('option', { value: '', text: empty, selected: selected == null }) : null,
      ...values.map((v) => h('option', { value: v, text: v, selected: v === selected })),
    ];
    const field = (key, label, control, { required = false, hint = null, wide = false } = {}) => {
      const id = `new-job-${key}`;
      control.id = id;
      const error = h('p', { class: 'field-error', id: `${id}-error`, hidden: true });
      const hintEl = hint ? h('p', { class: 'field-hint', id: `${id}-hint`, text: hint }) : null;
      control.setAttribute('aria-describedby', [hintEl ? hintEl.id : null, error.id].filter(Boolean).join(' '));
      if (required) {
        control.required = true;
        control.setAttribute('aria-required', 'true');
      }
      f[key] = { control, error, label };
      return h('div', { class: wide ? 'field field-wide' : 'field' },
        h('label', { class: 'field-label', for: id }, label,
          required ? h('span', { class: 'req', 'aria-hidden': 'true', text: ' *' }) : null,
          !required && control.tagName === 'INPUT' ? h('span', { class: 'optional', text: ' (optional)' }) : null),
        control, hintEl, error);
    };
    const text = (props) => h('input', { class: 'input', type: 'text', autocomplete: 'off', ...props });

    this.errorBox = commandErrorBox({
      onRetry: () => this.submit(),
      onToken: () => this.askForToken(null),
    });
    this.submitButton = h('button', { class: 'btn btn-primary', type: 'submit', testid: 'new-job-submit', text: 'Create job' });
    this.form = h('form', {
      class: 'dialog-form', testid: 'new-job-form', novalidate: true, 'aria-labelledby': 'new-job-dialog-title',
      onsubmit: (event) => {
        event.preventDefault();
        this.submit();
      },
      oninput: (event) => this.clearFieldError(event.target),
      onchange: (event) => this.clearFieldError(event.target),
    },
    h('div', { class: 'dialog-head' },
      h('h2', { id: 'new-job-dialog-title', class: 'dialog-title', text: 'New job' }),
      h('button', { class: 'btn btn-ghost btn-icon', type: 'button', 'aria-label': 'Close', title: 'Close', text: '×', onclick: () => this.close() })),
    h('div', { class: 'dialog-body' },
    h('p', { class: 'dialog-intro', text: 'The bridge passes the request to the monitor, which creates the job. Fields marked * are required.' }),
    h('fieldset', { class: 'form-section' },
      h('legend', { text: 'Job' }),
      field('title', 'Title', text({ maxlength: '200', testid: 'new-job-title' }), { required: true, wide: true }),
      field('priority', 'Priority', h('select', { class: 'select', testid: 'new-job-priority' }, options(PRIORITIES, { selected: 'normal' }))),
      field('deadline', 'Deadline (minutes)', h('input', {
        class: 'input', type: 'number', min: '0', step: 'any', inputmode: 'decimal', placeholder: 'e.g. 120', testid: 'new-job-deadline',
      }), { hint: 'Empty for no deadline.' })),
    h('fieldset', { class: 'form-section' },
      h('legend', { text: 'Input sheet' }),
      field('sheet', 'Sheet id', text({ maxlength: '128', spellcheck: 'false', autocapitalize: 'off', testid: 'new-job-sheet', placeholder: '1A2B3C4D5E6F7G8H9I0J' }),
        { required: true, hint: 'Letters, digits, _ and -.' }),
      field('range', 'Range', text({ maxlength: '64', spellcheck: 'false', testid: 'new-job-range', placeholder: 'A1:Z1000' }))),
    h('fieldset', { class: 'form-section' },
      h('legend', { text: 'Output' }),
      field('format', 'Format', h('select', { class: 'select', testid: 'new-job-format' }, options(OUTPUT_FORMATS, { selected: 'mp4' })), { required: true }),
      field('videoCodec', 'Video codec', h('select', { class: 'select', testid: 'new-job-video-codec' }, options(VIDEO_CODECS, { empty: 'Default' }))),
      field('audioCodec', 'Audio codec', h('select', { class: 'select', testid: 'new-job-audio-codec' }, options(AUDIO_CODECS, { empty: 'Default' }))),
      field('resolution', 'Resolution', h('select', { class: 'select', testid: 'new-job-resolution' }, options(RESOLUTIONS, { empty: 'Default' }))),
      field('bucket', 'Output bucket', text({ maxlength: '222', spellcheck: 'false', autocapitalize: 'off', testid: 'new-job-bucket', placeholder: 'content-outputs' }),
        { hint: 'Lower-case letters, digits, ., _ and -; 3 to 222 characters.' })),
    h('fieldset', { class: 'form-section' },
      h('legend', { text: 'Template' }),
      field('template', 'Template id', text({ maxlength: '128', spellcheck: 'false', testid: 'new-job-template', placeholder: 'default_template' }))),
    this.errorBox),
    h('div', { class: 'dialog-actions' },
      h('button', { class: 'btn', type: 'button', text: 'Cancel', onclick: () => this.close() }),
      this.submitButton));
    this.dialog = h('dialog', { class: 'dialog dialog-wide', testid: 'new-job-dialog', 'aria-labelledby': 'new-job-dialog-title' }, this.form);
  }

  open({ focus = true } = {}) {
    const wasOpen = this.dialog.open;
    openModal(this.dialog);
    if (focus && !wasOpen) {
      const invalid = Object.values(this.fields).find((e) => e.control.getAttribute('aria-invalid') === 'true');
      (invalid ?? this.fields.title).control.focus();
    }
  }

  close() {
    closeModal(this.dialog);
  }

  destroy() {
    this.destroyed = true;
  }

  clearFieldError(control) {
    const entry = Object.values(this.fields).find((e) => e.control === control);
    if (!entry || entry.error.hidden) return;
    setHidden(entry.error, true);
    setText(entry.error, '');
    control.removeAttribute('aria-invalid');
  }

  setFieldError(key, message) {
    const { control, error } = this.fields[key];
    setText(error, message);
    setHidden(error, false);
    control.setAttribute('aria-invalid', 'true');
  }

  /** Reads the form: {body, errors: [field keys]}; shows the client-side problems next to their fields. */
  collect() {
    const f = this.fields;
    for (const entry of Object.values(f)) this.clearFieldError(entry.control);
    const value = (key) => f[key].control.value.trim();
    const errors = [];
    const fail = (key, message) => {
      this.setFieldError(key, message);
      errors.push(key);
    };
    const title = value('title');
    if (!title) fail('title', 'Enter a title.');
    else if (title.length > 200) fail('title', 'At most 200 characters.');
    const deadlineText = value('deadline');
    let deadlineMs = null;
    if (f.deadline.control.validity?.badInput) fail('deadline', 'Enter a number of minutes.');
    else if (deadlineText) {
      const minutes = Number(deadlineText);
      deadlineMs = Math.round(minutes * 60000);
      if (!Number.isFinite(minutes) || minutes <= 0 || deadlineMs < 1) fail('deadline', 'Enter a number of minutes greater than 0.');
      else if (!Number.isSafeInteger(deadlineMs)) fail('deadline', 'That deadline is too far away.');
    }
    const sheet = value('sheet');
    if (!sheet) fail('sheet', 'Enter the sheet id.');
    else if (!SHEET_ID_RE.test(sheet)) fail('sheet', 'Use only letters, digits, _ and - (at most 128).');
    const range = value('range');
    if (range.length > 64) fail('range', 'At most 64 characters.');
    const format = f.format.control.value;
    if (!OUTPUT_FORMATS.includes(format)) fail('format', 'Choose a format.');
    const bucket = value('bucket');
    if (bucket && !BUCKET_RE.test(bucket)) fail('bucket', 'Use 3 to 222 lower-case letters, digits, ., _ or -, starting with a letter or digit.');
    const template = value('template');
    if (template.length > 128) fail('template', 'At most 128 characters.');

    const body = { title, priority: f.priority.control.value || 'normal' };
    if (deadlineMs != null) body.processing_deadline_ms = deadlineMs;
    body.input_source = { type: 'sheet', sheet_id: sheet };
    if (range) body.input_source.range = range;
    body.output = { format };
    const videoCodec = f.videoCodec.control.value;
    const audioCodec = f.audioCodec.control.value;
    const resolution = f.resolution.control.value;
    if (videoCodec) body.output.video_codec = videoCodec;
    if (audioCodec) body.output.audio_codec = audioCodec;
    if (resolution) body.output.resolution = resolution;
    if (bucket) body.output.output_bucket = bucket;
    if (template) body.template = { template_id: template };
    return { body, errors };
  }

  setBusy(busy) {
    this.inFlight = busy;
    setAttr(this.submitButton, 'aria-disabled', busy ? 'true' : null);
    setAttr(this.form, 'aria-busy', busy ? 'true' : null);
    this.submitButton.classList.toggle('is-busy', busy);
    setText(this.submitButton, busy ? 'Creating…' : 'Create job');
  }

  async submit() {
    if (this.inFlight || this.destroyed) return;
    const { body, errors } = this.collect();
    if (errors.length) {
      this.errorBox.clear();
      this.fields[errors[0]].control.focus();
      return;
    }
    this.errorBox.clear();
    this.setBusy(true);
    const result = await sendCommand(API, body);
    if (this.destroyed) return;
    this.setBusy(false);
    if (result.ok) {
      const jobId = (typeof result.data?.job_id === 'string' && result.data.job_id) || jobIdFromLocation(result.location);
      this.form.reset();
      this.close();
      this.onCreated({ jobId, data: result.data });
      return;
    }
    this.open({ focus: false }); // closed with Escape while the request was under way: show what happened
    const info = describeFailure(result, 'create the job');
    this.errorBox.show(info);
    if (result.status === 400) {
      const named = fieldsInMessage(result.message);
      for (const key of named) this.setFieldError(key, 'The bridge refused this field (see below).');
      if (named.length) this.fields[named[0]].control.focus();
    }
    if (result.status === 401) this.askForToken(result);
  }

  /** The token form sits outside the modal dialog: close it, ask, and reopen it once a token was entered. */
  askForToken(result) {
    this.close();
    askForCommandToken(result, () => {
      if (this.destroyed) return;
      this.open({ focus: false });
      this.errorBox.setHint('Token saved. Press “Create job” to send the request with it.');
      this.submitButton.focus();
    });
  }
}

class JobListView extends LiveView {
  constructor(root) {
    super(root);
    this.name = 'job-list';
    this.jobs = new Map();
    this.snapshot = null; // {jobs_total, jobs_truncated} once the first jobs.snapshot arrived
    this.rows = new Map();
    this.forceRows = false;
  }

  matches(route) {
    return route.view === 'list';
  }

  mount() {
    document.title = 'Jobs · Progress Bridge';
    this.heading = h('h1', { tabindex: '-1', id: 'jobs-heading', text: 'Jobs' });
    this.summary = h('span', { class: 'page-sub', text: '' });
    this.newJob = new NewJobDialog({ onCreated: ({ jobId }) => this.showCreated(jobId) });
    this.newJobButton = h('button', {
      class: 'btn btn-primary', type: 'button', testid: 'new-job', text: 'New job', 'aria-haspopup': 'dialog',
      onclick: () => this.newJob.open(),
    });
    this.createdSlot = h('div', { class: 'created-slot', 'aria-live': 'polite' });
    this.created = null;

    this.search = h('input', {
      id: 'job-search', class: 'input', type: 'search', placeholder: 'Title or job id', autocomplete: 'off',
      testid: 'job-search', value: listPrefs.q,
      oninput: () => { listPrefs.q = this.search.value; this.forceRows = true; this.scheduler.schedule(); },
    });
    this.stateFilter = h('select', {
      id: 'job-state-filter', class: 'select', testid: 'job-state-filter',
      onchange: () => { listPrefs.state = this.stateFilter.value; this.forceRows = true; this.scheduler.schedule(); },
    }, h('option', { value: '', text: 'All states' }), JOB_STATES.map((s) => h('option', { value: s, text: stateLabel(s) })));
    this.stateFilter.value = listPrefs.state;
    this.sort = h('select', {
      id: 'job-sort', class: 'select', testid: 'job-sort',
      onchange: () => { listPrefs.sort = this.sort.value; this.forceRows = true; this.scheduler.schedule(); },
    }, Object.entries(JOB_SORTS).map(([value, s]) => h('option', { value, text: s.label })));
    this.sort.value = listPrefs.sort;
    this.meta = h('span', { class: 'toolbar-meta', 'aria-live': 'polite' });

    this.notice = h('div', { class: 'view-status' });
    this.truncated = h('p', { class: 'truncated-note', hidden: true });
    this.empty = h('div', { class: 'state-block', testid: 'empty-state', hidden: true },
      h('strong', { text: 'No jobs yet' }),
      h('span', { text: 'Jobs appear here as soon as the bridge receives their first event.' }));
    this.noMatch = h('div', { class: 'state-block', testid: 'empty-state', hidden: true },
      h('strong', { text: 'No jobs match these filters' }),
      h('div', {}, h('button', { class: 'btn', type: 'button', text: 'Clear filters', onclick: () => this.clearFilters() })));
    this.list = h('ul', { class: 'job-list', testid: 'job-list', 'aria-label': 'Jobs' });

    const view = h('section', { class: 'view', testid: 'job-list-view', 'aria-labelledby': 'jobs-heading' },
      h('div', { class: 'page-head' }, this.heading, this.summary, h('div', { class: 'page-actions' }, this.newJobButton)),
      this.createdSlot,
      this.newJob.dialog,
      h('div', { class: 'toolbar', role: 'search' },
        h('div', { class: 'field field-grow' }, h('label', { class: 'field-label', for: 'job-search', text: 'Search' }), this.search),
        h('div', { class: 'field' }, h('label', { class: 'field-label', for: 'job-state-filter', text: 'State' }), this.stateFilter),
        h('div', { class: 'field' }, h('label', { class: 'field-label', for: 'job-sort', text: 'Sort by' }), this.sort),
        this.meta),
      this.notice,
      this.truncated,
      this.empty,
      this.noMatch,
      this.list);
    this.root.replaceChildren(view);

    this.makeClient({
      jobs: '*',
      onJobsSnapshot: (data) => {
        this.jobs = new Map();
        for (const entry of Array.isArray(data?.jobs) ? data.jobs : []) {
          const job = entry?.job;
          if (job && typeof job === 'object') this.jobs.set(entry.job_id ?? job.job_id, job);
        }
        this.snapshot = { total: data?.jobs_total ?? this.jobs.size, truncated: Boolean(data?.jobs_truncated) };
        this.forceRows = true;
        this.scheduler.schedule();
      },
      onMessage: (message) => {
        if (!message.type.startsWith('job.') || message.type === 'job.snapshot') return;
        const job = message.data;
        const id = message.job_id ?? job?.job_id;
        if (!id || !job || typeof job !== 'object') return;
        this.jobs.set(id, job);
        this.scheduler.schedule();
      },
    });
    this.start();
    this.render();
  }

  unmount() {
    this.newJob.destroy();
    this.destroy();
  }

  /** After a 202: "Job <id> requested", with a link; it notes when the job shows up in the list. */
  showCreated(jobId) {
    if (this.destroyed) return;
    if (!jobId) {
      this.created = null;
      this.createdSlot.replaceChildren(h('div', { class: 'notice notice-ok', testid: 'new-job-result' },
        h('div', { class: 'notice-body' }, h('strong', { text: 'Job requested' }), 'The bridge accepted the request but named no job id.')));
      return;
    }
    const hint = h('span', { text: 'It appears in the list once the monitor publishes its first event.' });
    const dismiss = h('button', {
      class: 'btn btn-ghost btn-icon', type: 'button', 'aria-label': 'Dismiss', title: 'Dismiss', text: '×',
      onclick: () => {
        this.created = null;
        this.createdSlot.replaceChildren();
        this.newJobButton.focus();
      },
    });
    const el = h('div', { class: 'notice notice-ok', testid: 'new-job-result', 'data-job-id': jobId },
      h('div', { class: 'notice-body' },
        h('strong', {}, 'Job ', h('a', { href: jobHref(jobId), class: 'mono wrap-anywhere', text: jobId }), ' requested'),
        hint),
      dismiss);
    this.created = { jobId, hint, seen: false };
    this.createdSlot.replaceChildren(el);
    this.scheduler.schedule();
  }

  clearFilters() {
    listPrefs.q = '';
    listPrefs.state = '';
    this.search.value = '';
    this.stateFilter.value = '';
    this.forceRows = true;
    this.render();
    this.search.focus();
  }

  onTick() {
    this.forceRows = true; // relative "updated" times
    super.onTick();
  }

  visibleJobs() {
    const q = listPrefs.q.trim().toLowerCase();
    const out = [];
    for (const job of this.jobs.values()) {
      if (listPrefs.state && job.state !== listPrefs.state) continue;
      if (q && !`${job.title ?? ''}\u0000${job.job_id}`.toLowerCase().includes(q)) continue;
      out.push(job);
    }
    const primary = (JOB_SORTS[listPrefs.sort] ?? JOB_SORTS.updated).compare;
    const byUpdated = JOB_SORTS.updated.compare;
    out.sort((a, b) => primary(a, b) || byUpdated(a, b) || compareIds(a.job_id, b.job_id));
    return out;
  }

  render() {
    const hasData = this.snapshot != null;
    this.renderConnectionNotice(this.notice, hasData, 'jobs');
    const visible = hasData ? this.visibleJobs() : [];
    setHidden(this.empty, !(hasData && this.jobs.size === 0));
    setHidden(this.noMatch, !(hasData && this.jobs.size > 0 && visible.length === 0));
    setText(this.summary, hasData ? `${this.jobs.size} job${this.jobs.size === 1 ? '' : 's'}` : '');
    setText(this.meta, hasData && this.jobs.size ? `Showing ${visible.length} of ${this.jobs.size}` : '');
    if (this.created && !this.created.seen && this.jobs.has(this.created.jobId)) {
      this.created.seen = true;
      setText(this.created.hint, 'It is in the list now.');
    }
    const truncated = hasData && this.snapshot.truncated;
    setHidden(this.truncated, !truncated);
    if (truncated) setText(this.truncated, `The bridge sent the ${this.jobs.size} most recently updated of ${this.snapshot.total} jobs.`);

    const now = Date.now();
    const force = this.forceRows;
    this.forceRows = false;
    reconcile(this.list, visible, (job) => job.job_id, (job) => this.createRow(job), (el, job) => {
      if (force || el.job !== job) this.updateRow(el, job, now);
    }, this.rows);
  }

  createRow(job) {
    const row = h('li', { class: 'card job-row', testid: 'job-row' });
    const refs = {};
    refs.link = h('a', { class: 'job-title' });
    refs.badge = h('span', { class: 'badge' });
    refs.risk = h('span', { class: 'flag', text: 'Deadline at risk', hidden: true });
    refs.id = h('span', { class: 'job-id mono' });
    refs.bar = progressBar({ label: 'Progress' });
    refs.pct = h('span', { class: 'pct' });
    refs.completed = h('span', { testid: 'job-completed' });
    refs.failed = h('span', { testid: 'job-failed' });
    refs.total = h('span', { testid: 'job-total' });
    refs.success = h('dd');
    refs.eta = h('dd');
    refs.updated = h('dd');
    row.append(
      h('div', { class: 'job-main' },
        h('div', { class: 'job-title-line' }, refs.link, refs.badge, refs.risk),
        refs.id),
      h('div', { class: 'job-progress' }, refs.bar, refs.pct),
      h('dl', { class: 'job-stats' },
        h('div', { class: 'stat' }, h('dt', { text: 'Done' }), h('dd', {}, refs.completed, ' / ', refs.total)),
        h('div', { class: 'stat' }, h('dt', { text: 'Failed' }), h('dd', {}, refs.failed)),
        h('div', { class: 'stat' }, h('dt', { text: 'Success' }), refs.success),
        h('div', { class: 'stat' }, h('dt', { text: 'ETA' }), refs.eta),
        h('div', { class: 'stat' }, h('dt', { text: 'Updated' }), refs.updated)));
    row.refs = refs;
    return row;
  }

  updateRow(row, job, now) {
    const r = row.refs;
    row.job = job;
    const state = job.state ?? '';
    setAttr(row, 'data-job-id', job.job_id);
    setAttr(row, 'data-state', state);
    const name = job.title || job.job_id;
    setText(r.link, name);
    setAttr(r.link, 'href', jobHref(job.job_id));
    setText(r.badge, stateLabel(state));
    setStateClass(r.badge, state);
    setHidden(r.risk, !job.deadline_at_risk);
    setText(r.id, job.job_id);
    setHidden(r.id, !job.title);
    setStateClass(r.bar, state);
    setAttr(r.bar, 'aria-label', `Progress of ${name}`);
    setProgress(r.bar, job.percent_complete);
    setText(r.pct, formatPercent(job.percent_complete));
    setText(r.completed, formatCount(job.completed));
    setText(r.failed, formatCount(job.failed));
    r.failed.classList.toggle('count-failed-nonzero', (job.failed ?? 0) > 0);
    setText(r.total, String(jobTotal(job)));
    setText(r.success, formatRate(job.success_rate));
    setText(r.eta, job.finished_at ? 'done' : formatDuration(job.eta_seconds));
    setText(r.updated, formatRelative(job.updated_at, now));
    setAttr(r.updated, 'title', formatAbsolute(job.updated_at) || null);
  }
}

// ====================================================================== job view (#/jobs/<id>)

const VIDEO_COLUMNS = [
  { key: 'id', label: 'Video', defaultDir: 'asc', value: (v) => v.title || v.id },
  { key: 'state', label: 'State', defaultDir: 'asc', value: (v) => VIDEO_STATES.indexOf(v.state) },
  { key: 'progress_percent', label: 'Progress', defaultDir: 'desc', value: (v) => v.progress_percent },
  { key: 'stage', label: 'Stage', defaultDir: 'asc', value: (v) => v.stage },
  { key: 'attempt', label: 'Attempt', defaultDir: 'desc', value: (v) => v.attempt, num: true },
  { key: 'processing_ms', label: 'Processing', defaultDir: 'desc', value: (v) => v.processing_ms, num: true },
  { key: 'error', label: 'Error', defaultDir: 'asc', value: (v) => v.error?.message ?? v.error?.code ?? null },
  { key: 'updated_at', label: 'Updated', defaultDir: 'desc', value: (v) => parseTime(v.updated_at) },
];

function compareValues(a, b) {
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  return collator.compare(String(a), String(b));
}

function isEmptyValue(value) {
  return value == null || value === '' || value === -1;
}

class JobView extends LiveView {
  constructor(root, jobId) {
    super(root);
    this.name = 'job';
    this.jobId = jobId;
    this.job = null;
    this.snapshotReceived = false;
    this.videos = new Map();
    this.videosTotal = 0;
    this.videosTruncated = false;
    this.table = { q: '', state: '', sort: 'updated_at', dir: 'desc', page: 0 };
    this.dirty = { job: true, videos: true };
    this.videosUrgent = false;
    this.lastVideoRender = -Infinity;
    this.videoRows = [];
    // job control: the request under way, the accepted command waiting for the monitor, the last failed one
    this.cmd = { inFlight: null, pending: null, watch: null, last: null, note: null, noteTimer: null, follow: null };
  }

  matches(route) {
    return route.view === 'job' && route.jobId === this.jobId;
  }

  authProbePath() {
    return `${API}/${encodeURIComponent(this.jobId)}`;
  }

  mount() {
    document.title = `${this.jobId} · Progress Bridge`;
    this.buildDom();
    this.makeClient({
      jobId: this.jobId,
      onSnapshot: (data) => {
        this.job = data?.job ?? null;
        this.videos = new Map();
        for (const video of Array.isArray(data?.videos) ? data.videos : []) {
          if (video && video.id != null) this.videos.set(video.id, video);
        }
        this.videosTotal = typeof data?.videos_total === 'number' ? data.videos_total : this.videos.size;
        this.videosTruncated = Boolean(data?.videos_truncated);
        this.snapshotReceived = true;
        this.markDirty(true, true, true);
      },
      onMessage: (message) => {
        const { type, data } = message;
        if (!data || typeof data !== 'object') return;
        if (type.startsWith('job.') && type !== 'job.snapshot') {
          this.job = data;
          this.markDirty(true, false);
        } else if (type.startsWith('video.') && data.id != null) {
          if (!this.videos.has(data.id) && type === 'video.created') this.videosTotal += 1;
          this.videos.set(data.id, data);
          this.markDirty(false, true);
        }
      },
    });
    this.start();
    this.render();
  }

  unmount() {
    this.clearPending();
    this.clearNote();
    this.destroy();
  }

  // ------------------------------------------------------------------ job control

  /** Enables the buttons the job's state allows (`disabled`); a request under way or waiting marks them aria-disabled. */
  renderControls() {
    const r = this.refs;
    const allowed = allowedActions(this.job);
    const focused = document.activeElement;
    let lostFocus = false;
    for (const action of CONTROL_ACTIONS) {
      const button = r.buttons[action];
      const allow = allowed[action];
      const inFlight = this.cmd.inFlight === action;
      const waiting = this.cmd.pending?.action === action;
      const busy = allow && (this.cmd.inFlight != null || waiting);
      if (button.disabled !== !allow) {
        button.disabled = !allow;
        if (!allow && focused === button) lostFocus = true;
      }
      setAttr(button, 'aria-disabled', busy ? 'true' : null);
      setAttr(button, 'aria-busy', inFlight ? 'true' : null);
      button.classList.toggle('is-busy', inFlight);
      let title = null;
      if (!this.job) title = 'Waiting for the job’s state';
      else if (!allow) title = DISALLOWED_TITLE[action];
      else if (inFlight) title = 'Sending…';
      else if (waiting) title = `${ACTION_TEXT[action].verb} requested — waiting for the monitor`;
      else if (this.cmd.inFlight) title = 'Another command is being sent';
      setAttr(button, 'title', title);
    }
    if (lostFocus) {
      // The focused button was just disabled (e.g. Pause once the job is paused): keep keyboard users in place.
      const next = CONTROL_ACTIONS.map((a) => r.buttons[a]).find((b) => !b.disabled) ?? r.title;
      next.focus({ preventScroll: true });
    }
  }

  requestCommand(action, body = {}) {
    const button = this.refs.buttons[action];
    if (button.disabled || button.getAttribute('aria-disabled') === 'true') return;
    this.runCommand(action, body);
  }

  retryCommand() {
    const last = this.cmd.last;
    if (last) this.runCommand(last.action, last.body);
  }

  tokenChanged() {
    if (this.destroyed || !this.refs.commandError.shown()) return;
    this.refs.commandError.setHint('Token saved. Press “Try again” to send the request with it.');
  }

  async runCommand(action, body) {
    const c = this.cmd;
    if (c.inFlight || this.destroyed) return;
    const fromState = this.job ? (this.job.state ?? null) : null;
    c.inFlight = action;
    c.last = { action, body };
    this.refs.commandError.clear();
    this.clearNote();
    this.renderControls();
    const result = await sendCommand(`${API}/${encodeURIComponent(this.jobId)}/${action}`, body);
    if (this.destroyed) return;
    c.inFlight = null;
    if (result.ok) {
      c.last = null;
      this.clearPending(); // a newer command supersedes one still waiting
      c.watch = null;
      const now = this.job ? (this.job.state ?? null) : null;
      if (now !== fromState) this.showStateNote(action, now);
      else this.startPending(action, fromState, result.data);
    } else {
      const info = describeFailure(result, ACTION_TEXT[action].what);
      this.refs.commandError.show(info);
      if (result.status === 401) askForCommandToken(result, () => this.tokenChanged());
    }
    this.renderControls();
  }

  startPending(action, fromState, data) {
    this.clearNote();
    const el = h('div', {
      class: 'notice command-pending', testid: 'command-pending', dataset: { command: action },
      'data-command-id': typeof data?.command_id === 'string' ? data.command_id : null,
    },
    h('span', { class: 'spinner spinner-sm', 'aria-hidden': 'true' }),
    h('div', { class: 'notice-body' },
      h('strong', { text: `${ACTION_TEXT[action].verb} requested — waiting for the monitor` }),
      h('span', { text: 'The bridge passed the command on; the job changes when the monitor’s events say so.' })));
    const timer = setTimeout(() => this.pendingTimedOut(), commandSettings.pendingTimeoutMs);
    this.cmd.pending = { action, fromState, el, timer, since: Date.now() };
    this.refs.commandLive.append(el);
  }

  clearPending() {
    const p = this.cmd.pending;
    if (!p) return;
    clearTimeout(p.timer);
    p.el.remove();
    this.cmd.pending = null;
  }

  pendingTimedOut() {
    const p = this.cmd.pending;
    if (!p || this.destroyed) return;
    this.clearPending();
    this.cmd.watch = { action: p.action, fromState: p.fromState }; // a late change still gets reported
    const seconds = Math.round((Date.now() - p.since) / 1000);
    const state = this.job?.state ? stateLabel(this.job.state) : 'unchanged';
    this.showNote('warn', p.action, 'No change seen yet',
      `The ${p.action} request was sent ${seconds} s ago, but the job is still ${state}. The monitor may be slow or down; this page updates as soon as it acts.`);
    this.renderControls();
  }

  /** Called on every job render: a state change ends the wait. */
  checkPending() {
    const c = this.cmd;
    if (!this.job) return;
    const now = this.job.state ?? null;
    if (c.follow && c.note === c.follow.el && now !== c.follow.state) {
      // The note follows later steps (pausing → paused) while it is shown.
      this.showStateNote(c.follow.action, now);
      return;
    }
    const watched = c.pending ?? c.watch;
    if (!watched) return;
    if (now === watched.fromState) return;
    this.clearPending();
    c.watch = null;
    this.showStateNote(watched.action, now);
  }

  showStateNote(action, state) {
    const expected = ACTION_TEXT[action].expected.includes(state);
    this.showNote('ok', action, `Job is now ${state ? stateLabel(state) : 'unknown'}`,
      expected ? `The monitor acted on the ${action} request.` : `The state changed after the ${action} request.`);
    this.cmd.follow = { action, state, el: this.cmd.note };
    this.cmd.noteTimer = setTimeout(() => this.clearNote(), commandSettings.noteMs);
  }

  showNote(kind, action, title, text) {
    this.clearNote();
    const el = h('div', { class: `notice command-note notice-${kind}`, testid: 'command-note', dataset: { command: action } },
      h('div', { class: 'notice-body' }, h('strong', { text: title }), h('span', { text })),
      h('button', {
        class: 'btn btn-ghost btn-icon', type: 'button', 'aria-label': 'Dismiss', title: 'Dismiss', text: '×',
        onclick: () => this.clearNote(),
      }));
    this.cmd.note = el;
    this.refs.commandLive.append(el);
  }

  clearNote() {
    if (this.cmd.noteTimer != null) clearTimeout(this.cmd.noteTimer);
    this.cmd.noteTimer = null;
    this.cmd.note?.remove();
    this.cmd.note = null;
    this.cmd.follow = null;
  }

  openCancelDialog() {
    const r = this.refs;
    const button = r.buttons.cancel;
    if (button.disabled || button.getAttribute('aria-disabled') === 'true') return;
    const name = this.job?.title || this.jobId;
    setText(r.cancelText, `“${name}” stops for good: videos not processed yet are not made. This cannot be undone.`);
    r.cancelReason.value = '';
    openModal(r.cancelDialog, r.keepJob); // the safe choice first
  }

  confirmCancel() {
    const reason = this.refs.cancelReason.value.trim().slice(0, 500);
    closeModal(this.refs.cancelDialog);
    this.runCommand('cancel', reason ? { reason } : {});
  }

  cancelDialogClosed() {
    if (this.destroyed) return;
    const button = this.refs.buttons.cancel;
    (button.disabled ? this.refs.title : button).focus({ preventScroll: true });
  }

  markDirty(job, videos, urgent = false) {
    if (job) this.dirty.job = true;
    if (videos) this.dirty.videos = true;
    if (urgent) this.videosUrgent = true;
    this.scheduler.schedule();
  }

  onTick() {
    this.dirty.job = true; // relative times
    super.onTick();
  }

  buildDom() {
    const k = (label, testid) => {
      const dd = h('dd', { testid });
      return { dt: h('dt', { text: label }), dd };
    };
    this.refs = {};
    const r = this.refs;

    r.title = h('h1', { tabindex: '-1', id: 'job-heading' });
    r.badge = h('span', { class: 'badge' });
    r.risk = h('span', { class: 'flag', text: 'Deadline at risk', hidden: true });
    r.metaId = h('span', { class: 'mono wrap-anywhere' });
    r.metaCreated = h('span');
    r.metaStarted = h('span');
    r.metaFinished = h('span');
    r.metaPriority = h('span');
    r.metaSheet = h('span', { class: 'wrap-anywhere' });
    r.notice = h('div', { class: 'view-status' });

    // job control
    r.buttons = {
      pause: h('button', { class: 'btn', type: 'button', testid: 'job-pause', text: 'Pause', disabled: true, onclick: () => this.requestCommand('pause') }),
      resume: h('button', { class: 'btn', type: 'button', testid: 'job-resume', text: 'Resume', disabled: true, onclick: () => this.requestCommand('resume') }),
      cancel: h('button', {
        class: 'btn btn-danger', type: 'button', testid: 'job-cancel', text: 'Cancel', disabled: true, 'aria-haspopup': 'dialog',
        onclick: () => this.openCancelDialog(),
      }),
    };
    r.actions = h('div', { class: 'job-actions', role: 'group', 'aria-label': 'Job control' }, r.buttons.pause, r.buttons.resume, r.buttons.cancel);
    r.commandLive = h('div', { class: 'command-live', 'aria-live': 'polite' });
    r.commandError = commandErrorBox({
      onRetry: () => this.retryCommand(),
      onToken: () => askForCommandToken(null, () => this.tokenChanged()),
    });
    r.cancelText = h('p', { id: 'cancel-dialog-desc' });
    r.cancelReason = h('input', {
      id: 'cancel-reason', class: 'input', type: 'text', maxlength: '500', autocomplete: 'off', testid: 'cancel-reason',
      'aria-describedby': 'cancel-reason-hint',
    });
    r.cancelDialog = h('dialog', {
      class: 'dialog', testid: 'cancel-dialog', 'aria-labelledby': 'cancel-dialog-title', 'aria-describedby': 'cancel-dialog-desc',
      onclose: () => this.cancelDialogClosed(),
    },
    h('form', {
      class: 'dialog-form', novalidate: true,
      onsubmit: (event) => {
        event.preventDefault();
        this.confirmCancel();
      },
    },
    h('div', { class: 'dialog-head' }, h('h2', { id: 'cancel-dialog-title', class: 'dialog-title', text: 'Cancel this job?' })),
    h('div', { class: 'dialog-body' },
      r.cancelText,
      h('div', { class: 'field' },
        h('label', { class: 'field-label', for: 'cancel-reason' }, 'Reason ', h('span', { class: 'optional', text: '(optional)' })),
        r.cancelReason,
        h('p', { class: 'field-hint', id: 'cancel-reason-hint', text: 'Kept in the monitor’s logs. Up to 500 characters.' }))),
    h('div', { class: 'dialog-actions' },
      r.keepJob = h('button', { class: 'btn', type: 'button', text: 'Keep job', onclick: () => closeModal(r.cancelDialog) }),
      h('button', { class: 'btn btn-danger-solid', type: 'submit', testid: 'confirm-cancel', text: 'Cancel job' }))));

    r.waiting = h('div', { class: 'notice', testid: 'job-waiting', hidden: true },
      h('div', { class: 'notice-body' }, h('strong', { text: 'No data for this job yet' }),
        'The bridge knows no event for this job id (yet). This page updates as soon as one arrives.'));

    // overall
    r.percent = h('span', { class: 'big-number' });
    r.eta = h('span');
    r.elapsed = h('span', { class: 'muted' });
    r.deadline = h('span', { class: 'flag flag-neutral' });
    r.progress = progressBar({ label: 'Overall progress', large: true, testid: 'job-progress' });

    // counts
    r.counts = {};
    const tiles = VIDEO_STATES.map((state) => {
      const dd = h('dd', { testid: `count-${state}` });
      r.counts[state] = dd;
      return h('div', { class: `count-tile state-${state}` }, h('dt', { text: stateLabel(state) }), dd);
    });
    r.total = h('dd', { testid: 'job-total' });
    tiles.push(h('div', { class: 'count-tile count-total' }, h('dt', { text: 'total' }), r.total));

    // metrics
    const m = {
      throughput: k('Throughput'),
      success: k('Success rate'),
      mean: k('Processing mean'),
      p50: k('Processing p50'),
      p95: k('Processing p95'),
      samples: k('Samples'),
      deadline: k('Deadline'),
      events: k('Events applied'),
      source: k('Counts from'),
    };
    r.metrics = m;

    // connection
    const c = {
      state: k('State', 'connection-state'),
      age: k('Last message', 'last-message-age'),
      rtt: k('Round trip', 'connection-rtt'),
      attempts: k('Reconnect attempts', 'reconnect-attempts'),
      seq: k('Last seq', 'last-seq'),
      close: k('Last close'),
      id: k('Connection id'),
    };
    r.conn = c;

    r.errorCard = h('section', { class: 'card job-error', testid: 'job-error', hidden: true, 'aria-labelledby': 'job-error-title' },
      h('h2', { id: 'job-error-title', text: 'Job error' }));
    r.errorCode = h('p', { class: 'mono' });
    r.errorMessage = h('p', { class: 'wrap-anywhere' });
    r.errorCard.append(r.errorCode, r.errorMessage);

    // videos
    r.videoSearch = h('input', {
      id: 'video-search', class: 'input', type: 'search', placeholder: 'Id, title, stage or error', autocomplete: 'off',
      testid: 'video-search',
      oninput: () => { this.table.q = r.videoSearch.value; this.table.page = 0; this.markDirty(false, true, true); },
    });
    r.videoState = h('select', {
      id: 'video-state-filter', class: 'select', testid: 'video-state-filter',
      onchange: () => { this.table.state = r.videoState.value; this.table.page = 0; this.markDirty(false, true, true); },
    }, h('option', { value: '', text: 'All states' }), VIDEO_STATES.map((s) => h('option', { value: s, text: stateLabel(s) })));
    r.videoMeta = h('span', { class: 'toolbar-meta' });
    r.truncated = h('p', { class: 'truncated-note', testid: 'videos-truncated', hidden: true });
    r.headers = new Map();
    const headRow = h('tr', {}, VIDEO_COLUMNS.map((col) => {
      const ind = h('span', { class: 'sort-ind', 'aria-hidden': 'true' });
      const button = h('button', {
        class: 'sort-btn', type: 'button', dataset: { sort: col.key },
        onclick: () => this.sortBy(col.key),
      }, col.label, ind);
      const th = h('th', { scope: 'col', class: col.num ? 'num' : null }, button);
      r.headers.set(col.key, { th, ind, button, col });
      return th;
    }));
    r.tbody = h('tbody');
    r.emptyRow = h('tr', { class: 'empty-row' }, h('td', { colspan: String(VIDEO_COLUMNS.length) }));
    r.prev = h('button', { class: 'btn', type: 'button', testid: 'video-prev', text: '‹ Previous', onclick: () => this.goPage(-1) });
    r.next = h('button', { class: 'btn', type: 'button', testid: 'video-next', text: 'Next ›', onclick: () => this.goPage(1) });
    r.page = h('span', { class: 'pager-info', testid: 'video-page', 'aria-live': 'polite' });

    const kv = (items) => h('dl', { class: 'kv' }, Object.values(items).flatMap((i) => [i.dt, i.dd]));

    const view = h('section', { class: 'view', testid: 'job-view', 'aria-labelledby': 'job-heading' },
      h('a', { class: 'back-link', href: '#/', text: '← All jobs' }),
      h('div', { class: 'job-head' }, h('div', { class: 'job-head-main' }, r.title, r.badge, r.risk), r.actions),
      h('div', { class: 'job-meta' }, r.metaId, r.metaCreated, r.metaStarted, r.metaFinished, r.metaPriority, r.metaSheet),
      h('div', { class: 'command-feedback' }, r.commandLive, r.commandError),
      r.cancelDialog,
      r.notice,
      r.waiting,
      r.body = h('div', { class: 'job-body', hidden: true },
      h('section', { class: 'card overall-card', 'aria-labelledby': 'overall-title' },
        h('h2', { id: 'overall-title', text: 'Overall progress' }),
        h('div', { class: 'overall' },
          h('div', { class: 'overall-top' }, r.percent, r.eta, r.elapsed, r.deadline),
          r.progress)),
      r.errorCard,
      h('div', { class: 'panels' },
        h('section', { class: 'card', 'aria-labelledby': 'counts-title' },
          h('h2', { id: 'counts-title', text: 'Videos by state' }),
          h('dl', { class: 'counts' }, tiles)),
        h('section', { class: 'card', 'aria-labelledby': 'metrics-title' },
          h('h2', { id: 'metrics-title', text: 'Throughput & timing' }), kv(m)),
        h('section', { class: 'card', testid: 'connection-panel', 'aria-labelledby': 'conn-title' },
          h('h2', { id: 'conn-title', text: 'Connection' }), kv(c))),
      h('section', { class: 'card', 'aria-labelledby': 'videos-title' },
        h('div', { class: 'videos-head' }, h('h2', { id: 'videos-title', text: 'Videos' })),
        h('div', { class: 'toolbar', role: 'search' },
          h('div', { class: 'field field-grow' }, h('label', { class: 'field-label', for: 'video-search', text: 'Search videos' }), r.videoSearch),
          h('div', { class: 'field' }, h('label', { class: 'field-label', for: 'video-state-filter', text: 'State' }), r.videoState),
          r.videoMeta),
        r.truncated,
        h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-labelledby': 'videos-title' },
          h('table', { class: 'video-table', testid: 'video-table' },
            h('caption', { class: 'sr-only', text: 'Videos of this job; use the column buttons to sort' }),
            h('colgroup', {}, VIDEO_COLUMNS.map((col) => h('col', { class: `col-${col.key}` }))),
            h('thead', {}, headRow),
            r.tbody)),
        h('div', { class: 'pager' }, r.prev, r.page, r.next))));
    this.viewEl = view;
    this.root.replaceChildren(view);
    setAttr(view, 'data-job-id', this.jobId);
    setAttr(view, 'data-state', '');
  }

  sortBy(key) {
    const col = VIDEO_COLUMNS.find((c) => c.key === key);
    if (!col) return;
    if (this.table.sort === key) this.table.dir = this.table.dir === 'asc' ? 'desc' : 'asc';
    else {
      this.table.sort = key;
      this.table.dir = col.defaultDir;
    }
    this.table.page = 0;
    this.markDirty(false, true, true);
  }

  goPage(delta) {
    this.table.page = Math.max(0, this.table.page + delta);
    this.markDirty(false, true, true);
  }

  render() {
    this.renderConnectionNotice(this.refs.notice, this.snapshotReceived, 'job');
    setHidden(this.refs.waiting, !(this.snapshotReceived && this.job == null));
    setHidden(this.refs.body, !this.snapshotReceived);
    this.renderConnection();
    if (this.dirty.job) {
      this.dirty.job = false;
      this.renderJob();
    }
    if (this.dirty.videos) {
      // Big tables re-sort at most ~5 times a second under a flood of events; user actions render at once.
      const t = performance.now();
      const gap = this.videos.size > 500 ? 200 : 0;
      if (this.videosUrgent || t - this.lastVideoRender >= gap) {
        this.dirty.videos = false;
        this.videosUrgent = false;
        this.lastVideoRender = t;
        this.renderVideos();
      } else {
        this.scheduler.schedule();
      }
    }
  }

  renderJob() {
    const r = this.refs;
    const job = this.job;
    const now = Date.now();
    const state = job?.state ?? '';
    setAttr(this.viewEl, 'data-state', state);
    const name = job?.title || this.jobId;
    setText(r.title, name);
    document.title = `${name} · Progress Bridge`;
    setText(r.badge, job ? stateLabel(state) : 'waiting');
    setStateClass(r.badge, state);
    setHidden(r.risk, !job?.deadline_at_risk);
    setText(r.metaId, this.jobId);
    setHidden(r.metaId, !job?.title);
    setText(r.metaCreated, job?.created_at ? `Created ${formatRelative(job.created_at, now)}` : '');
    setAttr(r.metaCreated, 'title', formatAbsolute(job?.created_at) || null);
    setText(r.metaStarted, job?.started_at ? `Started ${formatRelative(job.started_at, now)}` : '');
    setAttr(r.metaStarted, 'title', formatAbsolute(job?.started_at) || null);
    const endLabel = job?.finished_at ? `Finished ${formatRelative(job.finished_at, now)}` : (job?.updated_at ? `Updated ${formatRelative(job.updated_at, now)}` : '');
    setText(r.metaFinished, endLabel);
    setAttr(r.metaFinished, 'title', formatAbsolute(job?.finished_at ?? job?.updated_at) || null);
    setText(r.metaPriority, job?.priority != null ? `Priority ${job.priority}` : '');
    setText(r.metaSheet, job?.sheet_source ? `Sheet ${job.sheet_source.sheet_id}${job.sheet_source.range ? ` · ${job.sheet_source.range}` : ''}` : '');

    // overall
    const percent = job?.percent_complete ?? 0;
    setText(r.percent, job ? formatPercent(percent) : '—');
    setStateClass(r.progress, state);
    setProgress(r.progress, percent);
    let eta = '';
    if (job?.finished_at) eta = `Finished ${formatRelative(job.finished_at, now)}`;
    else if (job?.eta_seconds != null) eta = `ETA ${formatDuration(job.eta_seconds)}`;
    else if (job) eta = 'ETA —';
    setText(r.eta, eta);
    setText(r.elapsed, job?.elapsed_ms != null ? `Elapsed ${formatMs(job.elapsed_ms)}` : '');
    let deadline = 'No deadline';
    let deadlineClass = 'flag flag-neutral';
    if (job?.deadline_at_risk) {
      deadline = 'Deadline at risk';
      deadlineClass = 'flag';
    } else if (job?.processing_deadline_ms != null) {
      deadline = 'On track';
      deadlineClass = 'flag flag-ok';
    }
    setText(r.deadline, deadline);
    if (r.deadline.className !== deadlineClass) r.deadline.className = deadlineClass;

    // counts
    for (const s of VIDEO_STATES) setText(r.counts[s], formatCount(job?.[s]));
    setText(r.total, String(jobTotal(job)));

    // metrics
    const m = r.metrics;
    const times = job?.processing_time_ms;
    setText(m.throughput.dd, formatThroughput(job?.throughput_per_minute));
    setText(m.success.dd, formatRate(job?.success_rate));
    setText(m.mean.dd, formatMs(times?.mean));
    setText(m.p50.dd, formatMs(times?.p50));
    setText(m.p95.dd, formatMs(times?.p95));
    setText(m.samples.dd, times?.samples != null ? String(times.samples) : '—');
    setText(m.deadline.dd, job?.processing_deadline_ms != null
      ? `${formatMs(job.processing_deadline_ms)}${job.deadline_at_risk ? ' · at risk' : ''}` : (job?.deadline_at_risk ? 'at risk' : '—'));
    setText(m.events.dd, job?.events_applied != null ? String(job.events_applied) : '—');
    setText(m.source.dd, job?.counts_source ?? '—');

    // error
    const error = job?.error;
    setHidden(r.errorCard, !error);
    if (error) {
      setText(r.errorCode, error.code ?? '');
      setText(r.errorMessage, error.message ?? '');
    }

    this.checkPending();
    this.renderControls();
  }

  renderConnection() {
    const c = this.refs.conn;
    const health = this.client.health();
    setText(c.state.dd, statusText(health));
    setAttr(c.state.dd, 'data-state', health.state);
    setText(c.age.dd, health.lastMessageAgeMs == null ? '—' : formatAge(health.lastMessageAgeMs));
    setAttr(c.age.dd, 'data-age-ms', health.lastMessageAgeMs);
    setText(c.rtt.dd, health.rttMs == null ? '—' : `${Math.round(health.rttMs)} ms`);
    setText(c.attempts.dd, String(health.attempts));
    setText(c.seq.dd, health.lastSeq == null ? '—' : String(health.lastSeq));
    const close = health.lastClose;
    setText(c.close.dd, close ? `${close.code}${close.reason ? ` · ${close.reason}` : ''}` : '—');
    setText(c.id.dd, health.connectionId);
  }

  filteredVideos() {
    const q = this.table.q.trim().toLowerCase();
    const state = this.table.state;
    const col = VIDEO_COLUMNS.find((c) => c.key === this.table.sort) ?? VIDEO_COLUMNS[VIDEO_COLUMNS.length - 1];
    const sign = this.table.dir === 'asc' ? 1 : -1;
    // Decorate once, then sort: keys are computed per video, not per comparison.
    const rows = [];
    for (const v of this.videos.values()) {
      if (state && v.state !== state) continue;
      if (q) {
        const hay = `${v.id}\u0000${v.title ?? ''}\u0000${v.stage ?? ''}\u0000${v.error?.message ?? ''}\u0000${v.error?.code ?? ''}`.toLowerCase();
        if (!hay.includes(q)) continue;
      }
      const key = col.value(v);
      rows.push({ v, key, empty: isEmptyValue(key), updated: parseTime(v.updated_at) ?? 0, id: String(v.id) });
    }
    rows.sort((a, b) => {
      if (a.empty !== b.empty) return a.empty ? 1 : -1; // empty values last, either direction
      const primary = a.empty ? 0 : sign * compareValues(a.key, b.key);
      return primary || (b.updated - a.updated) || compareIds(a.id, b.id);
    });
    return rows.map((row) => row.v);
  }

  renderVideos() {
    const r = this.refs;
    const list = this.filteredVideos();
    const pages = Math.max(1, Math.ceil(list.length / PAGE_SIZE));
    this.table.page = Math.min(this.table.page, pages - 1);
    const start = this.table.page * PAGE_SIZE;
    const pageItems = list.slice(start, start + PAGE_SIZE);

    for (const [key, { th, ind }] of r.headers) {
      const active = key === this.table.sort;
      setAttr(th, 'aria-sort', active ? (this.table.dir === 'asc' ? 'ascending' : 'descending') : null);
      setText(ind, active ? (this.table.dir === 'asc' ? '▲' : '▼') : '');
    }

    if (pageItems.length === 0) {
      setText(r.emptyRow.firstChild, this.videos.size === 0
        ? (this.snapshotReceived ? 'No videos yet.' : 'Loading videos…')
        : 'No videos match these filters.');
      if (r.emptyRow.parentNode !== r.tbody || r.tbody.childElementCount !== 1) r.tbody.replaceChildren(r.emptyRow);
    } else {
      if (r.emptyRow.parentNode) r.emptyRow.remove();
      // Positional rows (a pool of at most PAGE_SIZE): under a flood of events only the cells whose video
      // changed are rewritten; no rows are created, moved or dropped while the page stays full.
      const rows = this.videoRows;
      while (rows.length < pageItems.length) rows.push(this.createVideoRow());
      for (let i = 0; i < pageItems.length; i += 1) {
        const row = rows[i];
        if (row.video !== pageItems[i]) this.updateVideoRow(row, pageItems[i]);
        if (row.parentNode !== r.tbody) r.tbody.append(row);
      }
      for (let i = pageItems.length; i < rows.length; i += 1) {
        if (rows[i].parentNode) rows[i].remove();
        rows[i].video = null;
      }
    }

    setText(r.page, list.length === 0 ? 'No videos' : `Page ${this.table.page + 1} of ${pages} · ${start + 1}–${start + pageItems.length} of ${list.length}`);
    r.prev.disabled = this.table.page === 0;
    r.next.disabled = this.table.page >= pages - 1;
    const filtered = this.table.q || this.table.state;
    setText(r.videoMeta, filtered ? `${list.length} of ${this.videos.size} videos` : `${this.videos.size} video${this.videos.size === 1 ? '' : 's'}`);
    const total = Math.max(this.videosTotal, this.videos.size);
    const truncated = this.videosTruncated && total > this.videos.size;
    setHidden(r.truncated, !truncated);
    if (truncated) setText(r.truncated, `Showing the ${this.videos.size} most recently updated of ${total} videos.`);
  }

  createVideoRow() {
    const refs = {};
    refs.title = h('span', { class: 'video-title' });
    refs.id = h('span', { class: 'mono muted wrap-anywhere' });
    refs.output = h('a', { class: 'mono', target: '_blank', rel: 'noopener noreferrer', hidden: true, text: 'output' });
    refs.outputText = h('span', { class: 'mono muted wrap-anywhere', hidden: true });
    refs.badge = h('span', { class: 'badge' });
    refs.bar = progressBar({ label: 'Video progress' });
    refs.pct = h('span', { class: 'pct' });
    refs.stage = h('td');
    refs.attempt = h('td', { class: 'num' });
    refs.processing = h('td', { class: 'num' });
    refs.error = h('td', { class: 'cell-error', testid: 'video-error' });
    refs.updated = h('td', { class: 'num' });
    const row = h('tr', { testid: 'video-row' },
      h('td', { class: 'cell-id' }, refs.title, refs.id, ' ', refs.output, refs.outputText),
      h('td', {}, refs.badge),
      h('td', { class: 'cell-progress' }, h('div', { class: 'job-progress' }, refs.bar, refs.pct)),
      refs.stage,
      refs.attempt,
      refs.processing,
      refs.error,
      refs.updated);
    row.refs = refs;
    return row;
  }

  updateVideoRow(row, v) {
    const r = row.refs;
    row.video = v;
    const state = v.state ?? '';
    setAttr(row, 'data-video-id', v.id);
    setAttr(row, 'data-state', state);
    setText(r.title, v.title || '');
    setHidden(r.title, !v.title);
    setText(r.id, v.id);
    const url = typeof v.output_url === 'string' ? v.output_url : '';
    const linkable = /^https?:\/\//i.test(url);
    setHidden(r.output, !linkable);
    setAttr(r.output, 'href', linkable ? url : null);
    setHidden(r.outputText, !url || linkable);
    setText(r.outputText, linkable ? '' : url);
    setText(r.badge, stateLabel(state));
    setStateClass(r.badge, state);
    setStateClass(r.bar, state);
    let percent = v.progress_percent;
    if (percent == null && state === 'completed') percent = 100;
    setAttr(r.bar, 'aria-label', `Progress of ${v.title || v.id}`);
    setProgress(r.bar, percent ?? 0, percent == null ? 'unknown' : undefined);
    setText(r.pct, percent == null ? '—' : formatPercent(percent));
    setText(r.stage, v.stage ?? '—');
    setText(r.attempt, v.attempt ?? '—');
    setText(r.processing, formatMs(v.processing_ms));
    const message = v.error ? (v.error.message || v.error.code || '') : '';
    setText(r.error, message);
    setAttr(r.error, 'title', v.error?.code ? `${v.error.code}${v.retryable != null ? (v.retryable ? ' · retryable' : ' · not retryable') : ''}` : null);
    setText(r.updated, formatRelative(v.updated_at));
    setAttr(r.updated, 'title', formatAbsolute(v.updated_at) || null);
  }
}

// ====================================================================== router

let currentView = null;

function parseRoute() {
  const hash = window.location.hash.replace(/^#/, '');
  const match = hash.match(/^\/jobs\/([^?&/]+)/);
  if (match) {
    let jobId = match[1];
    try {
      jobId = decodeURIComponent(jobId);
    } catch {
      // keep it as written
    }
    return { view: 'job', jobId };
  }
  return { view: 'list' };
}

function route({ focus = false } = {}) {
  const next = parseRoute();
  if (currentView && currentView.matches(next)) return;
  if (currentView) currentView.unmount();
  releaseTokenWaiters(null);
  const root = document.getElementById('app');
  currentView = next.view === 'job' ? new JobView(root, next.jobId) : new JobListView(root);
  currentView.mount();
  const navJobs = document.getElementById('nav-jobs');
  if (navJobs) setAttr(navJobs, 'aria-current', next.view === 'list' ? 'page' : null);
  if (focus) {
    const heading = root.querySelector('h1');
    if (heading) heading.focus({ preventScroll: false });
    window.scrollTo(0, 0);
  }
}

function restartView() {
  if (currentView) currentView.unmount();
  currentView = null;
  route();
}

// ====================================================================== start

function start() {
  applyTheme();
  darkQuery?.addEventListener('change', applyTheme);
  window.addEventListener('storage', (event) => {
    if (event.key === THEME_KEY) applyTheme();
  });
  document.getElementById('theme-toggle')?.addEventListener('click', cycleTheme);
  document.getElementById('token-button')?.addEventListener('click', () => {
    if (tokenUi.form) hideTokenForm();
    else showTokenForm(null);
  });
  captureTokenFromUrl();
  window.addEventListener('hashchange', () => {
    if (captureTokenFromUrl()) {
      // a link carrying a new token: start over with it
      if (currentView) currentView.unmount();
      currentView = null;
    }
    route({ focus: true });
  });
  window.__dashboard = {
    client: () => currentView?.client ?? null,
    view: () => currentView?.name ?? null,
    commandSettings,
  };
  route();
}

start();

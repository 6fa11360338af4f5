// progress-client.js — a framework-free WebSocket client for the progress-bridge.
//
// The equivalent of the seed dashboard's React `useWebSocket` hook: it connects to the bridge
// (`/?job_id=…` for one job, `/?jobs=*|a,b` for a job-list feed), reconnects with exponential backoff
// and jitter, resumes one-job connections with `last_seq`, drops duplicate / old messages by the
// per-job seq rule, pings to measure the round trip, and reports everything through typed callbacks
// and DOM events (`client.addEventListener('job.progress', e => e.detail)`).
//
// No dependencies, no build step: an ES module for current browsers.

/** Messages that are not part of a job's sequence (their seq is 0). */
export const CONTROL_TYPES = Object.freeze(['connection.ack', 'resume.ok', 'pong', 'error', 'jobs.snapshot']);

/** Live job events: `data` is the job's whole JobProgress. */
export const JOB_EVENT_TYPES = Object.freeze([
  'job.state_changed', 'job.progress', 'job.completed', 'job.failed', 'job.canceled',
]);

/** Live video events: `data` is that video's whole VideoProgress. */
export const VIDEO_EVENT_TYPES = Object.freeze([
  'video.created', 'video.updated', 'video.completed', 'video.failed',
]);

/** Close codes the bridge uses. */
export const CLOSE_CODES = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  ABNORMAL: 1006,
  POLICY_VIOLATION: 1008,
  MESSAGE_TOO_BIG: 1009,
  TRY_AGAIN_LATER: 1013,
  SEND_QUEUE_OVERFLOW: 4001,
  TOKEN_EXPIRED: 4401,
});

/** Client states, as reported by `client.state` and `health().state`. */
export const CLIENT_STATES = Object.freeze(['idle', 'connecting', 'open', 'reconnecting', 'offline', 'closed']);

const CONTROL = new Set(CONTROL_TYPES);

const CALLBACK_FOR_TYPE = Object.freeze({
  'job.snapshot': 'onSnapshot',
  'jobs.snapshot': 'onJobsSnapshot',
  'job.state_changed': 'onJobStateChanged',
  'job.progress': 'onProgress',
  'job.completed': 'onJobCompleted',
  'job.failed': 'onJobFailed',
  'job.canceled': 'onJobCanceled',
  'video.created': 'onVideoCreated',
  'video.updated': 'onVideoUpdated',
  'video.completed': 'onVideoCompleted',
  'video.failed': 'onVideoFailed',
  error: 'onError',
});

const CALLBACK_NAMES = Object.freeze([
  ...new Set(Object.values(CALLBACK_FOR_TYPE)), 'onStatus', 'onMessage',
]);

const WS_CONNECTING = 0;
const WS_OPEN = 1;
/** A connection that stayed open this long counts as healthy: the backoff starts again from the beginning. */
export const STABLE_AFTER_MS = 5000;
/** Consecutive failures before `open` after which `getToken` is asked for a fresh token. */
export const REFUSED_AFTER_FAILURES = 3;
const MAX_SENDS_PER_SECOND = 20;
const MAX_PENDING_PINGS = 8;
const MAX_JOB_IDS = 100;

const DEFAULT_BACKOFF = Object.freeze({ initialMs: 500, maxMs: 15000, factor: 2, jitter: 0.3 });

function defaultBaseUrl() {
  const loc = globalThis.location;
  if (!loc || !loc.host) return 'ws://localhost:8765/';
  return `${loc.protocol === 'https:' ? 'wss' : 'ws'}://${loc.host}/`;
}

function randomConnectionId() {
  const bytes = new Uint8Array(8);
  if (globalThis.crypto?.getRandomValues) {
    globalThis.crypto.getRandomValues(bytes);
  } else {
    for (let i = 0; i < bytes.length; i += 1) bytes[i] = Math.floor(Math.random() * 256);
  }
  return `conn_${Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')}`;
}

function defaultTimers() {
  return {
    setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
    clearTimeout: (id) => globalThis.clearTimeout(id),
    setInterval: (fn, ms) => globalThis.setInterval(fn, ms),
    clearInterval: (id) => globalThis.clearInterval(id),
  };
}

function isFiniteNumber(value) {
  return typeof value === 'number' && Number.isFinite(value);
}

function errorMessage(err) {
  if (err instanceof Error) return err.message || err.name;
  return String(err);
}

/**
 * Delay before reconnect attempt `attempt` (1-based): `initialMs * factor^(attempt-1)`, capped at `maxMs`,
 * then spread by ±`jitter` (a fraction) and capped at `maxMs` again.
 */
export function backoffDelay(attempt, backoff = DEFAULT_BACKOFF, random = Math.random) {
  const { initialMs, maxMs, factor, jitter } = { ...DEFAULT_BACKOFF, ...backoff };
  const n = Math.max(1, attempt);
  const base = Math.min(maxMs, initialMs * factor ** (n - 1));
  const spread = Math.min(1, Math.max(0, jitter));
  const delay = base * (1 - spread + 2 * spread * random());
  return Math.round(Math.min(maxMs, Math.max(0, delay)));
}

/**
 * Builds the subscription URL. `base` may already carry a path and query (e.g. `wss://host/ws?x=1`).
 * Job ids are percent-encoded one by one and joined with literal commas; `*` stays as it is.
 */
export function buildSubscriptionUrl({ url, jobId = null, jobs = null, token = null, connectionId, lastSeq = null }) {
  const base = String(url).split('#')[0];
  const parts = [];
  if (jobId != null) parts.push(`job_id=${encodeURIComponent(jobId)}`);
  else if (jobs === '*') parts.push('jobs=*');
  else if (Array.isArray(jobs)) parts.push(`jobs=${jobs.map((j) => encodeURIComponent(j)).join(',')}`);
  if (token != null && token !== '') parts.push(`token=${encodeURIComponent(token)}`);
  if (connectionId) parts.push(`connection_id=${encodeURIComponent(connectionId)}`);
  if (jobId != null && isFiniteNumber(lastSeq) && lastSeq > 0) parts.push(`last_seq=${Math.floor(lastSeq)}`);
  let sep = '?';
  if (base.includes('?')) sep = base.endsWith('?') || base.endsWith('&') ? '' : '&';
  return `${base}${sep}${parts.join('&')}`;
}

/**
 * A live connection to the progress-bridge for one job (`jobId`) or a job-list feed (`jobs`).
 *
 * Events dispatched (all `CustomEvent`s): one per accepted message type (`connection.ack`,
 * `job.snapshot`, `jobs.snapshot`, `job.progress`, …, `resume.ok`, `pong`, `error`) with the message as
 * `detail`; `message` for every accepted message; `status` with `health()` on every state change.
 * Client-side problems (a bad frame, a callback that threw, a token that could not be fetched) are also
 * dispatched as `error` with `detail = {type: 'error', local: true, data: {code, message}}`.
 */
export class ProgressClient extends EventTarget {
  #url;
  #token;
  #getToken;
  #connectionId;
  #backoff;
  #pingIntervalMs;
  #historyLimit;
  #WebSocketImpl;
  #now;
  #timers;
  #random;
  #windowTarget;
  #callbacks = {};

  #state = 'idle';
  #ws = null;
  #opened = false; // the current socket reached `open`
  #gen = 0; // bumps whenever the current connection attempt is abandoned
  #attempts = 0;
  #failuresBeforeOpen = 0;
  #forceToken = false;
  #tokenReason = 'connect';
  #reconnectTimer = null;
  #nextRetryAt = null;
  #pingTimer = null;
  #stableTimer = null;
  #windowAttached = false;

  #seqs = new Map();
  #history = [];
  #lastMessageAt = null;
  #rttMs = null;
  #pendingPings = new Map();
  #pingCounter = 0;
  #sendTimes = [];
  #lastClose = null;
  /** The previous close and when, to tell a close that repeats at once from a first one. */
  #lastQuickClose = null;
  #lastError = null;
  #ack = null;
  #dropped = 0;

  /**
   * @param {object} options
   * @param {string} [options.url] WebSocket base URL; default `ws(s)://${location.host}/`.
   * @param {string} [options.jobId] One job to follow …
   * @param {'*'|string[]} [options.jobs] … or a job-list feed (exactly one of jobId / jobs).
   * @param {string} [options.token] Bearer token sent as `?token=`.
   * @param {(info: {reason: string, force: boolean, attempts: number}) => Promise<string>|string} [options.getToken]
   *   Called before each connect; `force` is true after a 4401 close and after three consecutive
   *   failures before `open` (a refused token), when a fresh token is wanted.
   */
  constructor(options = {}) {
    super();
    const o = options ?? {};
    const hasJob = o.jobId != null && o.jobId !== '';
    const hasJobs = o.jobs != null;
    if (hasJob === hasJobs) {
      throw new TypeError('ProgressClient: pass exactly one of `jobId` (one job) or `jobs` (a feed)');
    }
    if (hasJobs && o.jobs !== '*') {
      const ok = Array.isArray(o.jobs) && o.jobs.length > 0 && o.jobs.length <= MAX_JOB_IDS
        && o.jobs.every((j) => typeof j === 'string' && j !== '');
      if (!ok) throw new TypeError(`ProgressClient: \`jobs\` must be '*' or an array of 1-${MAX_JOB_IDS} job ids`);
    }
    /** The job this client follows, or null for a feed. */
    this.jobId = hasJob ? String(o.jobId) : null;
    /** The feed's jobs ('*' or a list), or null for a one-job client. */
    this.jobs = hasJobs ? (o.jobs === '*' ? '*' : [...o.jobs]) : null;

    this.#url = o.url ?? defaultBaseUrl();
    this.#token = o.token ?? null;
    this.#getToken = typeof o.getToken === 'function' ? o.getToken : null;
    this.#connectionId = o.connectionId ?? randomConnectionId();
    this.#backoff = { ...DEFAULT_BACKOFF, ...(o.backoff ?? {}) };
    this.#pingIntervalMs = o.pingIntervalMs ?? 15000;
    this.#historyLimit = Math.max(0, o.historyLimit ?? 200);
    this.#WebSocketImpl = o.WebSocketImpl ?? globalThis.WebSocket;
    this.#now = typeof o.now === 'function' ? o.now : () => Date.now();
    this.#timers = { ...defaultTimers(), ...(o.timers ?? {}) };
    this.#random = typeof o.random === 'function' ? o.random : Math.random;
    this.#windowTarget = o.windowTarget !== undefined ? o.windowTarget : (globalThis.window ?? null);
    for (const name of CALLBACK_NAMES) {
      if (typeof o[name] === 'function') this.#callbacks[name] = o[name];
    }
  }

  // ---------------------------------------------------------------- public API

  /** 'idle' | 'connecting' | 'open' | 'reconnecting' | 'offline' | 'closed' */
  get state() {
    return this.#state;
  }

  /** This client's `connection_id` (kept across reconnects). */
  get connectionId() {
    return this.#connectionId;
  }

  /** The latest accepted messages (at most `historyLimit`), oldest first. A copy. */
  get history() {
    return this.#history.slice();
  }

  /** The data of the last `connection.ack`, or null. */
  get ack() {
    return this.#ack;
  }

  /** Starts connecting. Idempotent; a closed client stays closed (make a new one). */
  connect() {
    if (this.#state !== 'idle') return this;
    this.#attachWindow();
    if (globalThis.navigator?.onLine === false) {
      this.#setState('offline');
      return this;
    }
    this.#startAttempt('connecting');
    return this;
  }

  /** Stops for good: closes the socket with 1000, cancels every timer, never reconnects. */
  close() {
    if (this.#state === 'closed') return;
    this.#shutdown();
    this.#setState('closed');
  }

  /** While waiting to reconnect (or offline), tries again now. Returns whether an attempt started. */
  retryNow() {
    if (this.#state !== 'reconnecting' && this.#state !== 'offline') return false;
    if (this.#state === 'reconnecting' && this.#reconnectTimer == null) return false; // an attempt is under way
    this.#clearReconnectTimer();
    this.#startAttempt('reconnecting');
    return true;
  }

  /** Sends a ping with a fresh id; the RTT is measured when its pong arrives. Returns the id, or null. */
  ping() {
    const id = `ping_${(this.#pingCounter += 1)}`;
    if (!this.#send({ type: 'ping', id })) return null;
    this.#pendingPings.set(id, this.#now());
    while (this.#pendingPings.size > MAX_PENDING_PINGS) {
      this.#pendingPings.delete(this.#pendingPings.keys().next().value);
    }
    return id;
  }

  /** A snapshot of the connection's health. */
  health() {
    const t = this.#now();
    return {
      state: this.#state,
      connected: this.#state === 'open',
      attempts: this.#attempts,
      lastMessageAt: this.#lastMessageAt,
      lastMessageAgeMs: this.#lastMessageAt == null ? null : Math.max(0, t - this.#lastMessageAt),
      rttMs: this.#rttMs,
      lastSeq: this.jobId != null ? (this.#seqs.get(this.jobId) ?? null) : null,
      seqs: new Map(this.#seqs),
      lastClose: this.#lastClose ? { ...this.#lastClose } : null,
      lastError: this.#lastError ? { ...this.#lastError } : null,
      connectionId: this.#connectionId,
      mode: this.jobId != null ? 'job' : 'feed',
      failuresBeforeOpen: this.#failuresBeforeOpen,
      nextRetryInMs: this.#nextRetryAt == null ? null : Math.max(0, this.#nextRetryAt - t),
      droppedMessages: this.#dropped,
    };
  }

  // ---------------------------------------------------------------- connection lifecycle

  #startAttempt(stateName) {
    this.#gen += 1;
    const gen = this.#gen;
    this.#nextRetryAt = null;
    this.#setState(stateName);
    if (!this.#getToken) {
      this.#openSocket(gen);
      return;
    }
    const force = this.#forceToken;
    const reason = force ? this.#tokenReason : (stateName === 'connecting' ? 'connect' : 'reconnect');
    let pending;
    try {
      pending = Promise.resolve(this.#getToken({ reason, force, attempts: this.#attempts }));
    } catch (err) {
      pending = Promise.reject(err);
    }
    pending.then(
      (token) => {
        if (gen !== this.#gen) return;
        if (typeof token === 'string' && token !== '') this.#token = token;
        this.#forceToken = false;
        this.#openSocket(gen);
      },
      (err) => {
        if (gen !== this.#gen) return;
        this.#localError('token_error', `getToken failed: ${errorMessage(err)}`, { notify: true });
        this.#failuresBeforeOpen += 1;
        this.#scheduleReconnect(null);
      },
    );
  }

  #openSocket(gen) {
    if (gen !== this.#gen) return;
    const url = buildSubscriptionUrl({
      url: this.#url,
      jobId: this.jobId,
      jobs: this.jobs,
      token: this.#token,
      connectionId: this.#connectionId,
      lastSeq: this.jobId != null ? this.#seqs.get(this.jobId) : null,
    });
    let ws;
    try {
      if (typeof this.#WebSocketImpl !== 'function') throw new Error('no WebSocket implementation');
      ws = new this.#WebSocketImpl(url);
    } catch (err) {
      this.#localError('connect_failed', errorMessage(err), { notify: true });
      this.#failuresBeforeOpen += 1;
      this.#scheduleReconnect(null);
      return;
    }
    this.#ws = ws;
    this.#opened = false;
    ws.onopen = () => {
      if (this.#ws === ws) this.#handleOpen();
    };
    ws.onmessage = (event) => {
      if (this.#ws === ws) this.#handleFrame(event?.data);
    };
    ws.onerror = () => {
      if (this.#ws === ws) this.#lastError = { code: 'socket_error', message: 'WebSocket error', at: this.#now() };
    };
    ws.onclose = (event) => {
      if (this.#ws === ws) this.#handleClose(event);
    };
  }

  #handleOpen() {
    this.#opened = true;
    this.#failuresBeforeOpen = 0;
    this.#stopConnectionTimers();
    if (this.#pingIntervalMs > 0) {
      this.#pingTimer = this.#timers.setInterval(() => this.#pingTick(), this.#pingIntervalMs);
    }
    this.#stableTimer = this.#timers.setTimeout(() => {
      this.#stableTimer = null;
      this.#markHealthy();
    }, STABLE_AFTER_MS);
    this.#setState('open');
  }

  #handleClose(event) {
    const code = isFiniteNumber(event?.code) ? event.code : CLOSE_CODES.ABNORMAL;
    const reason = typeof event?.reason === 'string' ? event.reason : '';
    this.#lastClose = { code, reason, wasClean: Boolean(event?.wasClean), at: this.#now() };
    const wasOpen = this.#opened;
    this.#releaseSocket(false);
    if (this.#state === 'closed' || this.#state === 'offline') return;

    if (code === CLOSE_CODES.NORMAL) {
      // The bridge ended the subscription on purpose: nothing to recover.
      this.#shutdown();
      this.#setState('closed');
      return;
    }
    if (!wasOpen) this.#failuresBeforeOpen += 1;
    if (code === CLOSE_CODES.TOKEN_EXPIRED) {
      this.#forceToken = true;
      this.#tokenReason = 'expired';
    } else if (!wasOpen && this.#failuresBeforeOpen >= REFUSED_AFTER_FAILURES) {
      this.#forceToken = true;
      this.#tokenReason = 'refused';
    }
    // After an overflow or an expired token, reconnect at once — unless the previous connection ended the same way
    // shortly before: a subscriber that keeps overflowing must back off, not reconnect in a tight loop.
    const now = this.#now();
    const repeated = this.#lastQuickClose && this.#lastQuickClose.code === code && now - this.#lastQuickClose.at < STABLE_AFTER_MS;
    const immediate = (code === CLOSE_CODES.SEND_QUEUE_OVERFLOW || code === CLOSE_CODES.TOKEN_EXPIRED) && !repeated;
    this.#lastQuickClose = { code, at: now };
    this.#scheduleReconnect(immediate ? 0 : null);
  }

  #scheduleReconnect(delayMs) {
    this.#clearReconnectTimer();
    this.#attempts += 1;
    const delay = delayMs ?? backoffDelay(this.#attempts, this.#backoff, this.#random);
    this.#nextRetryAt = this.#now() + delay;
    this.#reconnectTimer = this.#timers.setTimeout(() => {
      this.#reconnectTimer = null;
      this.#startAttempt('reconnecting');
    }, delay);
    this.#setState('reconnecting');
  }

  #markHealthy() {
    this.#attempts = 0;
    this.#failuresBeforeOpen = 0;
    if (this.#stableTimer != null) {
      this.#timers.clearTimeout(this.#stableTimer);
      this.#stableTimer = null;
    }
  }

  /** Forgets the current socket (its late events are ignored) and closes it quietly. */
  #releaseSocket(closeIt) {
    const ws = this.#ws;
    this.#ws = null;
    this.#opened = false;
    this.#stopConnectionTimers();
    this.#pendingPings.clear();
    if (!ws) return;
    ws.onmessage = null;
    ws.onerror = null;
    ws.onclose = null;
    ws.onopen = null;
    if (!closeIt) return;
    try {
      if (ws.readyState === WS_CONNECTING) {
        // Closing a socket that is still connecting makes browsers log an error: close it once it opens.
        ws.onopen = () => {
          try { ws.close(CLOSE_CODES.NORMAL, 'client closed'); } catch { /* already gone */ }
        };
      } else if (ws.readyState === WS_OPEN) {
        ws.close(CLOSE_CODES.NORMAL, 'client closed');
      }
    } catch {
      // the socket is already gone
    }
  }

  #shutdown() {
    this.#gen += 1;
    this.#clearReconnectTimer();
    this.#nextRetryAt = null;
    this.#releaseSocket(true);
    this.#detachWindow();
  }

  #stopConnectionTimers() {
    if (this.#pingTimer != null) {
      this.#timers.clearInterval(this.#pingTimer);
      this.#pingTimer = null;
    }
    if (this.#stableTimer != null) {
      this.#timers.clearTimeout(this.#stableTimer);
      this.#stableTimer = null;
    }
  }

  #clearReconnectTimer() {
    if (this.#reconnectTimer != null) {
      this.#timers.clearTimeout(this.#reconnectTimer);
      this.#reconnectTimer = null;
    }
  }

  #pingTick() {
    // A connection that answered nothing since a ping two intervals ago is dead (sleep, lost network):
    // drop it and reconnect rather than wait for TCP to notice.
    const t = this.#now();
    for (const sentAt of this.#pendingPings.values()) {
      const silentSince = this.#lastMessageAt == null || this.#lastMessageAt < sentAt;
      if (silentSince && t - sentAt >= 2 * this.#pingIntervalMs) {
        this.#lastClose = { code: CLOSE_CODES.ABNORMAL, reason: 'pong timeout', wasClean: false, at: t };
        this.#releaseSocket(true);
        this.#scheduleReconnect(null);
        return;
      }
      break; // only the oldest matters
    }
    this.ping();
  }

  // ---------------------------------------------------------------- browser online / offline

  #onOffline = () => {
    if (this.#state === 'idle' || this.#state === 'closed' || this.#state === 'offline') return;
    this.#gen += 1;
    this.#clearReconnectTimer();
    this.#nextRetryAt = null;
    this.#releaseSocket(true);
    this.#setState('offline');
  };

  #onOnline = () => {
    if (this.#state !== 'offline') return;
    this.#startAttempt('reconnecting');
  };

  #attachWindow() {
    const w = this.#windowTarget;
    if (this.#windowAttached || !w || typeof w.addEventListener !== 'function') return;
    w.addEventListener('offline', this.#onOffline);
    w.addEventListener('online', this.#onOnline);
    this.#windowAttached = true;
  }

  #detachWindow() {
    const w = this.#windowTarget;
    if (!this.#windowAttached || !w) return;
    w.removeEventListener('offline', this.#onOffline);
    w.removeEventListener('online', this.#onOnline);
    this.#windowAttached = false;
  }

  // ---------------------------------------------------------------- messages

  #send(message) {
    const ws = this.#ws;
    if (!ws || ws.readyState !== WS_OPEN) return false;
    const t = this.#now();
    while (this.#sendTimes.length && t - this.#sendTimes[0] >= 1000) this.#sendTimes.shift();
    if (this.#sendTimes.length >= MAX_SENDS_PER_SECOND) return false; // the bridge closes with 1008 past 20/s
    try {
      ws.send(JSON.stringify(message));
    } catch {
      return false;
    }
    this.#sendTimes.push(t);
    return true;
  }

  #handleFrame(raw) {
    this.#lastMessageAt = this.#now();
    if (typeof raw !== 'string') {
      this.#localError('bad_frame', 'expected a JSON text frame', { notify: true });
      return;
    }
    let message;
    try {
      message = JSON.parse(raw);
    } catch (err) {
      this.#localError('bad_frame', `invalid JSON: ${errorMessage(err)}`, { notify: true });
      return;
    }
    if (message == null || typeof message !== 'object' || Array.isArray(message) || typeof message.type !== 'string') {
      this.#localError('bad_frame', 'a message must be a JSON object with a string `type`', { notify: true });
      return;
    }
    if (!this.#accept(message)) {
      this.#dropped += 1;
      return;
    }
    this.#afterAccept(message);
    if (this.#historyLimit > 0) {
      this.#history.push(message);
      if (this.#history.length > this.#historyLimit) this.#history.splice(0, this.#history.length - this.#historyLimit);
    }
    this.#deliver(message);
  }

  /** The seq rule: returns false for a message to drop (a duplicate or older one of its job). */
  #accept(message) {
    const { type } = message;
    if (CONTROL.has(type)) {
      if (type === 'jobs.snapshot') {
        // A feed's snapshot is its whole state, possibly from a replica that has read less: start its seqs afresh
        // (older ones would drop that replica's messages until it passed them), and keep only the jobs it names.
        this.#seqs.clear();
        const entries = Array.isArray(message.data?.jobs) ? message.data.jobs : [];
        for (const entry of entries) {
          if (entry && typeof entry.job_id === 'string' && isFiniteNumber(entry.seq)) this.#seqs.set(entry.job_id, entry.seq);
        }
      }
      return true;
    }
    const jobId = typeof message.job_id === 'string' ? message.job_id : this.jobId;
    const seq = isFiniteNumber(message.seq) ? message.seq : null;
    if (type === 'job.snapshot') {
      if (jobId != null && seq != null) this.#seqs.set(jobId, seq);
      return true;
    }
    if (jobId == null || seq == null || seq <= 0) return true; // not sequenced: nothing to compare
    const last = this.#seqs.get(jobId);
    if (last !== undefined && seq <= last) return false;
    this.#seqs.set(jobId, seq); // gaps are fine: job.progress is conflated
    return true;
  }

  #afterAccept(message) {
    switch (message.type) {
      case 'connection.ack':
        this.#ack = message.data ?? null;
        break;
      case 'job.snapshot':
      case 'jobs.snapshot':
      case 'resume.ok':
        this.#markHealthy();
        break;
      case 'pong': {
        const id = message.data?.id;
        const sentAt = id == null ? undefined : this.#pendingPings.get(id);
        if (sentAt !== undefined) {
          this.#pendingPings.delete(id);
          this.#rttMs = Math.max(0, this.#now() - sentAt);
        }
        break;
      }
      case 'error':
        this.#lastError = {
          code: message.data?.code ?? 'error',
          message: message.data?.message ?? '',
          source: 'server',
          at: this.#now(),
        };
        break;
      default:
        break;
    }
  }

  #deliver(message) {
    const name = CALLBACK_FOR_TYPE[message.type];
    if (name) {
      const payload = message.type === 'error' ? (message.data ?? {}) : message.data;
      this.#invoke(name, payload, message);
    }
    this.#invoke('onMessage', message);
    this.#emit(message.type, message);
    this.#emit('message', message);
  }

  // ---------------------------------------------------------------- reporting

  #setState(next) {
    if (this.#state === next) return;
    this.#state = next;
    const health = this.health();
    this.#invoke('onStatus', health);
    this.#emit('status', health);
  }

  #emit(type, detail) {
    try {
      this.dispatchEvent(new CustomEvent(type, { detail }));
    } catch {
      // dispatchEvent itself does not throw for listener errors; this is belt and braces
    }
  }

  /** Calls a user callback; a throw (or a rejected promise) is reported through the `error` event only. */
  #invoke(name, ...args) {
    const fn = this.#callbacks[name];
    if (!fn) return;
    let result;
    try {
      result = fn(...args);
    } catch (err) {
      this.#callbackFailed(name, err);
      return;
    }
    if (result && typeof result.then === 'function') {
      result.then(undefined, (err) => this.#callbackFailed(name, err));
    }
  }

  #callbackFailed(name, err) {
    this.#localError('callback_error', `${name} threw: ${errorMessage(err)}`, { callback: name, error: err });
  }

  /** A client-side problem: remembered as lastError, dispatched as a local `error` event, optionally given to onError. */
  #localError(code, message, { notify = false, callback = undefined, error = undefined } = {}) {
    const data = { code, message };
    if (callback) data.callback = callback;
    this.#lastError = { code, message, source: 'client', at: this.#now() };
    if (notify) this.#invoke('onError', data, null);
    this.#emit('error', {
      type: 'error',
      job_id: null,
      seq: 0,
      ts: new Date(this.#now()).toISOString(),
      data,
      local: true,
      error,
    });
  }
}

export default ProgressClient;

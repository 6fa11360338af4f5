// Unit tests of progress-client.js, run in a real browser with an injected fake WebSocket (no server).
// Results: window.__testResults = {done, passed, failed, failures: [{name, message}]} and <pre id="results">.

import { ProgressClient, backoffDelay, buildSubscriptionUrl } from '../progress-client.js';

// ------------------------------------------------------------------ tiny harness

const tests = [];
function test(name, fn) {
  tests.push({ name, fn });
}

class AssertionError extends Error {}

function assert(condition, message) {
  if (!condition) throw new AssertionError(message || 'assertion failed');
}

function show(value) {
  return JSON.stringify(value, (k, v) => (v instanceof Map ? Object.fromEntries(v) : v));
}

function assertEqual(actual, expected, message) {
  const a = show(actual);
  const e = show(expected);
  if (a !== e) throw new AssertionError(`${message ? `${message}: ` : ''}expected ${e}, got ${a}`);
}

function assertThrows(fn, message) {
  let threw = false;
  try {
    fn();
  } catch {
    threw = true;
  }
  assert(threw, message || 'expected a throw');
}

/** Lets pending promise callbacks (getToken) run. */
function flush() {
  return new Promise((resolve) => { setTimeout(resolve, 0); });
}

function sleep(ms) {
  return new Promise((resolve) => { setTimeout(resolve, ms); });
}

// ------------------------------------------------------------------ fakes

/** A fresh fake WebSocket class per test; `instances` holds every socket the client made. */
function makeFakeWebSocket() {
  class FakeWebSocket {
    static CONNECTING = 0;
    static OPEN = 1;
    static CLOSING = 2;
    static CLOSED = 3;
    static instances = [];

    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.sent = [];
      this.closedWith = null;
      this.onopen = null;
      this.onmessage = null;
      this.onerror = null;
      this.onclose = null;
      FakeWebSocket.instances.push(this);
    }

    send(data) {
      if (this.readyState !== 1) throw new Error('InvalidStateError: not open');
      this.sent.push(data);
    }

    close(code = 1000, reason = '') {
      this.closedWith = { code, reason };
      this.readyState = 3;
    }

    // ---- the server's side
    get params() {
      return new URL(this.url).searchParams;
    }

    get sentMessages() {
      return this.sent.map((s) => JSON.parse(s));
    }

    serverOpen() {
      this.readyState = 1;
      if (this.onopen) this.onopen({ type: 'open' });
    }

    serverSend(message) {
      const data = typeof message === 'string' ? message : JSON.stringify(message);
      if (this.onmessage) this.onmessage({ type: 'message', data });
    }

    serverClose(code, reason = '') {
      this.readyState = 3;
      if (this.onclose) this.onclose({ type: 'close', code, reason, wasClean: code !== 1006 });
    }

    /** A refused upgrade (401/403) as a browser sees it: error, then close 1006 before open. */
    refuse() {
      this.readyState = 3;
      if (this.onerror) this.onerror({ type: 'error' });
      if (this.onclose) this.onclose({ type: 'close', code: 1006, reason: '', wasClean: false });
    }
  }
  return FakeWebSocket;
}

/** Manual clock + timers: nothing runs until advance(). */
class FakeClock {
  constructor() {
    this.t = 1_700_000_000_000;
    this.nextId = 1;
    this.timers = new Map();
    this.timeouts = []; // every setTimeout delay, in order
    this.now = () => this.t;
    this.setTimeout = (fn, ms = 0) => this.#add(fn, ms, false);
    this.setInterval = (fn, ms = 0) => this.#add(fn, ms, true);
    this.clearTimeout = (id) => { this.timers.delete(id); };
    this.clearInterval = (id) => { this.timers.delete(id); };
  }

  #add(fn, ms, repeat) {
    const id = this.nextId;
    this.nextId += 1;
    const delay = Math.max(0, Number(ms) || 0);
    if (!repeat) this.timeouts.push(delay);
    this.timers.set(id, { fn, at: this.t + delay, every: repeat ? Math.max(1, delay) : null });
    return id;
  }

  get pending() {
    return this.timers.size;
  }

  advance(ms) {
    const end = this.t + ms;
    for (;;) {
      let nextId = null;
      let next = null;
      for (const [id, timer] of this.timers) {
        if (timer.at <= end && (next === null || timer.at < next.at)) {
          next = timer;
          nextId = id;
        }
      }
      if (next === null) break;
      this.t = Math.max(this.t, next.at);
      if (next.every != null) next.at += next.every;
      else this.timers.delete(nextId);
      next.fn();
    }
    this.t = end;
  }
}

/** An EventTarget standing in for `window` that counts its listeners. */
class CountingTarget extends EventTarget {
  listeners = 0;

  addEventListener(type, fn, opts) {
    this.listeners += 1;
    super.addEventListener(type, fn, opts);
  }

  removeEventListener(type, fn, opts) {
    this.listeners -= 1;
    super.removeEventListener(type, fn, opts);
  }
}

const JOB = 'job_1';

function jobProgress(overrides = {}) {
  return {
    job_id: JOB,
    state: 'running',
    title: 'Spring campaign',
    total_videos: 10,
    pending: 5,
    processing: 1,
    completed: 3,
    failed: 1,
    skipped: 0,
    canceled: 0,
    percent_complete: 40,
    success_rate: 0.75,
    throughput_per_minute: 2.5,
    eta_seconds: 120,
    elapsed_ms: 60000,
    processing_deadline_ms: null,
    deadline_at_risk: false,
    priority: null,
    created_at: '2026-01-01T00:00:00Z',
    started_at: '2026-01-01T00:00:01Z',
    finished_at: null,
    updated_at: '2026-01-01T00:01:00Z',
    events_applied: 12,
    counts_source: 'videos',
    processing_time_ms: null,
    error: null,
    sheet_source: null,
    ...overrides,
  };
}

const msg = {
  ack: (jobId = JOB) => ({ type: 'connection.ack', job_id: null, seq: 0, ts: 't', data: { connection_id: 'conn_test', server_time: 't', job_id: jobId } }),
  snapshot: (seq, extra = {}) => ({
    type: 'job.snapshot', job_id: JOB, seq, ts: 't',
    data: { job: jobProgress(), videos: [], videos_total: 0, videos_truncated: false, ...extra },
  }),
  progress: (seq, percent = 50, jobId = JOB) => ({
    type: 'job.progress', job_id: jobId, seq, ts: 't', event_id: `ev_${jobId}_${seq}`,
    data: jobProgress({ job_id: jobId, percent_complete: percent }),
  }),
  video: (type, seq, id, state) => ({
    type, job_id: JOB, seq, ts: 't', event_id: `ev_${seq}`,
    data: { id, job_id: JOB, state, progress_percent: null, stage: null, attempt: 1, processing_ms: null, error: null, retryable: null, output_url: null, title: null, row_index: 1, updated_at: 't' },
  }),
  jobsSnapshot: (entries) => ({
    type: 'jobs.snapshot', job_id: null, seq: 0, ts: 't',
    data: { jobs: entries.map(([id, seq]) => ({ job_id: id, seq, job: jobProgress({ job_id: id }) })), jobs_total: entries.length, jobs_truncated: false },
  }),
};

const created = [];

/** A client wired to a fake socket, a fake clock and a private window target. */
function setup(options = {}) {
  const WS = makeFakeWebSocket();
  const clock = new FakeClock();
  const win = new CountingTarget();
  const client = new ProgressClient({
    url: 'ws://bridge.test/',
    jobId: options.jobs ? undefined : JOB,
    token: 't1',
    connectionId: 'conn_test',
    backoff: { initialMs: 500, maxMs: 15000, factor: 2, jitter: 0 },
    WebSocketImpl: WS,
    now: clock.now,
    timers: clock,
    windowTarget: win,
    ...options,
  });
  created.push(client);
  const last = () => WS.instances[WS.instances.length - 1];
  return { client, WS, clock, win, last };
}

/** Connects, opens, acks and (one job) snapshots at `seq`. */
function openWithSnapshot(env, seq = 10) {
  env.client.connect();
  const ws = env.last();
  ws.serverOpen();
  ws.serverSend(msg.ack());
  ws.serverSend(msg.snapshot(seq));
  return ws;
}

// ------------------------------------------------------------------ tests: URLs and construction

test('one-job URL carries job_id, token and connection_id, and no last_seq on the first connect', () => {
  const env = setup();
  env.client.connect();
  assertEqual(env.WS.instances.length, 1, 'one socket');
  const p = env.last().params;
  assertEqual(p.get('job_id'), JOB);
  assertEqual(p.get('token'), 't1');
  assertEqual(p.get('connection_id'), 'conn_test');
  assertEqual(p.has('last_seq'), false, 'no last_seq before any message');
  assert(env.last().url.startsWith('ws://bridge.test/?'), `url ${env.last().url}`);
});

test('feed URLs: jobs=* and a comma-separated, per-id-encoded list', () => {
  const star = setup({ jobs: '*' });
  star.client.connect();
  assert(star.last().url.includes('jobs=*&'), `url ${star.last().url}`);
  assertEqual(star.last().params.has('job_id'), false, 'no job_id in a feed');
  const list = setup({ jobs: ['job_a', 'job b&c'] });
  list.client.connect();
  assert(list.last().url.includes('jobs=job_a,job%20b%26c&'), `url ${list.last().url}`);
  assertEqual(list.last().params.get('jobs'), 'job_a,job b&c');
  assertEqual(buildSubscriptionUrl({ url: 'wss://h/ws?x=1', jobId: 'j', connectionId: 'c', lastSeq: 7 }),
    'wss://h/ws?x=1&job_id=j&connection_id=c&last_seq=7');
});

test('constructor requires exactly one of jobId / jobs and at most 100 ids', () => {
  assertThrows(() => new ProgressClient({ WebSocketImpl: makeFakeWebSocket() }), 'neither');
  assertThrows(() => new ProgressClient({ jobId: 'a', jobs: '*', WebSocketImpl: makeFakeWebSocket() }), 'both');
  const many = Array.from({ length: 101 }, (_, i) => `job_${i}`);
  assertThrows(() => new ProgressClient({ jobs: many, WebSocketImpl: makeFakeWebSocket() }), '101 ids');
  const client = new ProgressClient({ jobs: many.slice(0, 100), WebSocketImpl: makeFakeWebSocket() });
  assertEqual(client.state, 'idle');
  assert(/^conn_[0-9a-f]{16}$/.test(client.connectionId), `default connection id ${client.connectionId}`);
});

test('default URL is the page origin with ws: (or wss:)', () => {
  const WS = makeFakeWebSocket();
  const client = new ProgressClient({ jobId: 'x', WebSocketImpl: WS, windowTarget: null, pingIntervalMs: 0 });
  created.push(client);
  client.connect();
  const expected = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/?job_id=x&`;
  assert(WS.instances[0].url.startsWith(expected), `url ${WS.instances[0].url}`);
  client.close();
});

// ------------------------------------------------------------------ tests: states and delivery

test('state goes idle → connecting → open; onStatus and status events on every change; connect() is idempotent', () => {
  const statuses = [];
  const events = [];
  const env = setup({ onStatus: (h) => statuses.push(h.state) });
  env.client.addEventListener('status', (e) => events.push(e.detail.state));
  assertEqual(env.client.state, 'idle');
  env.client.connect();
  env.client.connect();
  assertEqual(env.WS.instances.length, 1, 'connect() twice makes one socket');
  assertEqual(env.client.state, 'connecting');
  env.last().serverOpen();
  env.client.connect();
  assertEqual(env.WS.instances.length, 1, 'connect() while open makes no socket');
  assertEqual(env.client.state, 'open');
  assertEqual(env.client.health().connected, true);
  assertEqual(statuses, ['connecting', 'open']);
  assertEqual(events, ['connecting', 'open']);
});

test('typed callbacks, onMessage and DOM events receive accepted messages; history keeps them in order', () => {
  const calls = [];
  const env = setup({
    onSnapshot: (data, m) => calls.push(['snapshot', data.job.job_id, m.seq]),
    onProgress: (job, m) => calls.push(['progress', job.percent_complete, m.seq]),
    onVideoCreated: (v) => calls.push(['video.created', v.id]),
    onVideoFailed: (v) => calls.push(['video.failed', v.id]),
    onJobCompleted: (job) => calls.push(['completed', job.job_id]),
    onMessage: (m) => calls.push(['message', m.type]),
  });
  const domEvents = [];
  for (const type of ['connection.ack', 'job.snapshot', 'job.progress', 'video.created', 'video.failed', 'job.completed']) {
    env.client.addEventListener(type, (e) => domEvents.push([type, e.detail.seq]));
  }
  const ws = openWithSnapshot(env, 10);
  ws.serverSend(msg.progress(11, 55));
  ws.serverSend(msg.video('video.created', 12, 'v1', 'pending'));
  ws.serverSend(msg.video('video.failed', 13, 'v1', 'failed'));
  ws.serverSend({ ...msg.progress(14, 100), type: 'job.completed' });
  assertEqual(calls.filter((c) => c[0] !== 'message'), [
    ['snapshot', JOB, 10], ['progress', 55, 11], ['video.created', 'v1'], ['video.failed', 'v1'], ['completed', JOB],
  ]);
  assertEqual(calls.filter((c) => c[0] === 'message').map((c) => c[1]),
    ['connection.ack', 'job.snapshot', 'job.progress', 'video.created', 'video.failed', 'job.completed']);
  assertEqual(domEvents, [['connection.ack', 0], ['job.snapshot', 10], ['job.progress', 11], ['video.created', 12], ['video.failed', 13], ['job.completed', 14]]);
  assertEqual(env.client.history.map((m) => m.type),
    ['connection.ack', 'job.snapshot', 'job.progress', 'video.created', 'video.failed', 'job.completed']);
  assertEqual(env.client.ack.job_id, JOB, 'ack data kept');
});

// ------------------------------------------------------------------ tests: the seq rule

test('seq rule: duplicates and older messages are dropped (no callback, not in history); gaps are accepted', () => {
  const progress = [];
  const env = setup({ onProgress: (job, m) => progress.push(m.seq) });
  const ws = openWithSnapshot(env, 10);
  ws.serverSend(msg.progress(10)); // equal to the snapshot's seq: already included
  ws.serverSend(msg.progress(9)); // older
  ws.serverSend(msg.progress(15)); // a gap (conflated): fine
  ws.serverSend(msg.progress(15)); // duplicate
  ws.serverSend(msg.progress(12)); // older than the largest seen
  ws.serverSend(msg.progress(16));
  assertEqual(progress, [15, 16]);
  assertEqual(env.client.history.filter((m) => m.type === 'job.progress').map((m) => m.seq), [15, 16]);
  assertEqual(env.client.health().lastSeq, 16);
  assertEqual(env.client.health().droppedMessages, 4);
});

test('seq rule: a job.snapshot resets the baseline to its seq, even a lower one', () => {
  const progress = [];
  const env = setup({ onProgress: (job, m) => progress.push(m.seq) });
  const ws = openWithSnapshot(env, 50);
  ws.serverSend(msg.progress(51));
  ws.serverSend(msg.snapshot(30)); // e.g. after resume_unavailable: the snapshot is the truth
  assertEqual(env.client.health().lastSeq, 30);
  ws.serverSend(msg.progress(30)); // included in the snapshot
  ws.serverSend(msg.progress(31));
  assertEqual(progress, [51, 31]);
});

test('seq rule: control messages (seq 0) are never dropped and do not move a job\'s seq', () => {
  const errors = [];
  const env = setup({ onError: (e) => errors.push(e.code) });
  const ws = openWithSnapshot(env, 20);
  ws.serverSend({ type: 'resume.ok', job_id: JOB, seq: 0, ts: 't', data: { from_seq: 5, to_seq: 20 } });
  ws.serverSend({ type: 'error', job_id: JOB, seq: 0, ts: 't', data: { code: 'resume_unavailable', message: 'gone' } });
  ws.serverSend({ type: 'error', job_id: JOB, seq: 0, ts: 't', data: { code: 'invalid_message', message: 'x' } });
  assertEqual(errors, ['resume_unavailable', 'invalid_message']);
  assertEqual(env.client.health().lastSeq, 20);
  assertEqual(env.client.history.filter((m) => m.type === 'error').length, 2, 'both errors kept');
  assertEqual(env.client.health().lastError.code, 'invalid_message');
});

test('feed: jobs.snapshot sets each job\'s seq; each job is deduplicated on its own', () => {
  const seen = [];
  const snapshots = [];
  const env = setup({ jobs: '*', onJobsSnapshot: (data) => snapshots.push(data.jobs.length), onProgress: (job, m) => seen.push(`${m.job_id}:${m.seq}`) });
  env.client.connect();
  const ws = env.last();
  ws.serverOpen();
  ws.serverSend(msg.ack(null));
  ws.serverSend(msg.jobsSnapshot([['job_a', 5], ['job_b', 100]]));
  ws.serverSend(msg.progress(5, 10, 'job_a')); // already in the snapshot
  ws.serverSend(msg.progress(6, 20, 'job_a'));
  ws.serverSend(msg.progress(7, 20, 'job_b')); // old for job_b
  ws.serverSend(msg.progress(101, 30, 'job_b'));
  ws.serverSend(msg.progress(1, 1, 'job_new')); // a job that appeared later
  assertEqual(snapshots, [2]);
  assertEqual(seen, ['job_a:6', 'job_b:101', 'job_new:1']);
  const { seqs, lastSeq } = env.client.health();
  assertEqual(lastSeq, null, 'no lastSeq on a feed');
  assertEqual(seqs.get('job_a'), 6);
  assertEqual(seqs.get('job_b'), 101);
  assertEqual(seqs.get('job_new'), 1);
});

// ------------------------------------------------------------------ tests: robustness

test('bad frames are reported as onError({code: "bad_frame"}) and an error event, then ignored', () => {
  const errors = [];
  const localEvents = [];
  const env = setup({ onError: (e) => errors.push(e.code) });
  env.client.addEventListener('error', (e) => localEvents.push(e.detail.local === true && e.detail.data.code));
  const ws = openWithSnapshot(env, 1);
  ws.serverSend('{not json');
  ws.serverSend('[1,2]');
  ws.serverSend('{"seq":3}');
  ws.onmessage({ data: new ArrayBuffer(4) });
  ws.serverSend(msg.progress(2));
  assertEqual(errors, ['bad_frame', 'bad_frame', 'bad_frame', 'bad_frame']);
  assertEqual(localEvents, ['bad_frame', 'bad_frame', 'bad_frame', 'bad_frame']);
  assertEqual(env.client.state, 'open', 'still open');
  assertEqual(env.client.health().lastSeq, 2, 'later messages still handled');
  assert(!env.client.history.some((m) => m.seq === 3), 'bad frames are not in history');
});

test('a throwing callback never breaks the socket handler; reported via the error event only, no console output', () => {
  const originalError = console.error;
  const originalWarn = console.warn;
  let consoleCalls = 0;
  console.error = () => { consoleCalls += 1; };
  console.warn = () => { consoleCalls += 1; };
  try {
    const onErrorCalls = [];
    const after = [];
    const env = setup({
      onProgress: () => { throw new Error('boom'); },
      onMessage: (m) => after.push(m.seq),
      onError: (e) => onErrorCalls.push(e.code),
    });
    const reported = [];
    env.client.addEventListener('error', (e) => reported.push(e.detail));
    const ws = openWithSnapshot(env, 1);
    ws.serverSend(msg.progress(2));
    ws.serverSend(msg.progress(3));
    assertEqual(after, [0, 1, 2, 3], 'onMessage still runs after the throwing callback');
    assertEqual(reported.length, 2);
    assertEqual(reported[0].data.code, 'callback_error');
    assertEqual(reported[0].data.callback, 'onProgress');
    assert(reported[0].data.message.includes('boom'), reported[0].data.message);
    assertEqual(onErrorCalls, [], 'onError is not used for callback errors');
    assertEqual(env.client.health().lastSeq, 3);
    assertEqual(consoleCalls, 0, 'nothing logged');
  } finally {
    console.error = originalError;
    console.warn = originalWarn;
  }
});

test('history is bounded by historyLimit and keeps the latest, oldest first', () => {
  const env = setup({ historyLimit: 3 });
  const ws = openWithSnapshot(env, 1);
  for (let seq = 2; seq <= 6; seq += 1) ws.serverSend(msg.progress(seq));
  assertEqual(env.client.history.map((m) => m.seq), [4, 5, 6]);
  const copy = env.client.history;
  copy.length = 0;
  assertEqual(env.client.history.length, 3, 'history returns a copy');
});

// ------------------------------------------------------------------ tests: reconnecting

test('backoff: delays grow by factor from initialMs and are capped at maxMs (no jitter)', () => {
  const env = setup({ backoff: { initialMs: 500, maxMs: 3000, factor: 2, jitter: 0 } });
  env.client.connect();
  const delays = [];
  for (let i = 0; i < 5; i += 1) {
    env.last().refuse();
    assertEqual(env.client.state, 'reconnecting');
    delays.push(env.clock.timeouts[env.clock.timeouts.length - 1]);
    const before = env.WS.instances.length;
    env.clock.advance(delays[i] - 1);
    assertEqual(env.WS.instances.length, before, 'not before the delay');
    env.clock.advance(1);
    assertEqual(env.WS.instances.length, before + 1, 'reconnects after the delay');
  }
  assertEqual(delays, [500, 1000, 2000, 3000, 3000]);
  assertEqual(env.client.health().attempts, 5);
});

test('backoff jitter stays within ±jitter of the base delay', () => {
  const b = { initialMs: 1000, maxMs: 15000, factor: 2, jitter: 0.3 };
  assertEqual(backoffDelay(1, b, () => 0), 700);
  assertEqual(backoffDelay(1, b, () => 0.999999), 1300);
  assertEqual(backoffDelay(3, b, () => 0.5), 4000);
  assertEqual(backoffDelay(10, b, () => 0.999999), 15000, 'never above maxMs');
  for (let i = 0; i < 200; i += 1) {
    const d = backoffDelay(2, b);
    assert(d >= 1400 && d <= 2600, `delay ${d} out of range`);
  }
});

test('one-job reconnect resumes with last_seq = the largest seq seen; connection_id is kept', () => {
  const env = setup();
  const ws = openWithSnapshot(env, 10);
  ws.serverSend(msg.progress(14));
  ws.serverSend(msg.progress(12)); // dropped: does not lower last_seq
  ws.serverClose(1001, 'going away');
  assertEqual(env.client.state, 'reconnecting');
  assertEqual(env.client.health().lastClose.code, 1001);
  env.clock.advance(500);
  assertEqual(env.WS.instances.length, 2);
  assertEqual(env.last().params.get('last_seq'), '14');
  assertEqual(env.last().params.get('connection_id'), 'conn_test');
  env.last().serverOpen();
  assertEqual(env.client.state, 'open');
});

test('feed reconnect never sends last_seq', () => {
  const env = setup({ jobs: ['job_a'] });
  env.client.connect();
  env.last().serverOpen();
  env.last().serverSend(msg.jobsSnapshot([['job_a', 9]]));
  env.last().serverClose(1013, 'too many');
  env.clock.advance(500);
  assertEqual(env.WS.instances.length, 2);
  assertEqual(env.last().params.has('last_seq'), false);
  assertEqual(env.last().params.get('jobs'), 'job_a');
});

test('4001 (send queue overflow) reconnects at once with last_seq', () => {
  const env = setup();
  const ws = openWithSnapshot(env, 33);
  ws.serverClose(4001, 'send queue overflow');
  assertEqual(env.clock.timeouts[env.clock.timeouts.length - 1], 0, 'zero delay');
  env.clock.advance(0);
  assertEqual(env.WS.instances.length, 2);
  assertEqual(env.last().params.get('last_seq'), '33');
});

test('4001 again right after a reconnect backs off instead of looping', () => {
  const env = setup();
  const ws = openWithSnapshot(env, 33);
  ws.serverClose(4001, 'send queue overflow');
  env.clock.advance(0);
  const second = env.last();
  second.serverOpen();
  second.serverSend(msg.snapshot(40));
  second.serverClose(4001, 'send queue overflow');
  const delay = env.clock.timeouts[env.clock.timeouts.length - 1];
  assert(delay > 0, `a repeated overflow waits (delay ${delay})`);
  env.clock.advance(delay);
  assertEqual(env.WS.instances.length, 3);
  assertEqual(env.last().params.get('last_seq'), '40');
});

test('feed: a new jobs.snapshot starts the seqs afresh (a replica that has read less)', () => {
  const seen = [];
  const env = setup({ jobs: '*', onProgress: (job, m) => seen.push(`${m.job_id}:${m.seq}`) });
  env.client.connect();
  const ws = env.last();
  ws.serverOpen();
  ws.serverSend(msg.ack(null));
  ws.serverSend(msg.jobsSnapshot([['job_a', 100], ['job_gone', 7]]));
  ws.serverSend(msg.jobsSnapshot([['job_a', 50]]));
  ws.serverSend(msg.progress(60, 10, 'job_a'));
  assertEqual(seen, ['job_a:60'], 'accepted: the new snapshot said 50');
  assertEqual(env.client.health().seqs.has('job_gone'), false, 'only the jobs the snapshot names');
});

test('4401 (token expired) asks getToken for a fresh token, then reconnects with it and last_seq', async () => {
  const asks = [];
  let n = 0;
  const env = setup({
    token: undefined,
    getToken: async (info) => {
      asks.push(info);
      n += 1;
      return `tok${n}`;
    },
  });
  env.client.connect();
  assertEqual(env.WS.instances.length, 0, 'waits for the token');
  await flush();
  assertEqual(env.last().params.get('token'), 'tok1');
  env.last().serverOpen();
  env.last().serverSend(msg.snapshot(7));
  env.last().serverClose(4401, 'token expired');
  env.clock.advance(0);
  await flush();
  assertEqual(env.WS.instances.length, 2);
  assertEqual(env.last().params.get('token'), 'tok2');
  assertEqual(env.last().params.get('last_seq'), '7');
  assertEqual(asks.map((a) => [a.reason, a.force]), [['connect', false], ['expired', true]]);
});

test('three consecutive failures before open force getToken (a refused token)', async () => {
  const asks = [];
  const env = setup({ getToken: (info) => { asks.push(info.force); return 'tok'; } });
  env.client.connect();
  await flush();
  for (let i = 0; i < 3; i += 1) {
    env.last().refuse();
    env.clock.advance(20000);
    await flush();
  }
  assertEqual(env.WS.instances.length, 4);
  assertEqual(asks, [false, false, false, true], 'the 4th connect (after 3 refusals) forces a fresh token');
  env.last().serverOpen();
  assertEqual(env.client.health().failuresBeforeOpen, 0, 'reset by open');
});

test('getToken failures are reported and retried with backoff', async () => {
  const errors = [];
  let fail = true;
  const env = setup({
    getToken: () => (fail ? Promise.reject(new Error('auth server down')) : 'ok'),
    onError: (e) => errors.push(e.code),
  });
  env.client.connect();
  await flush();
  assertEqual(errors, ['token_error']);
  assertEqual(env.client.state, 'reconnecting');
  assertEqual(env.WS.instances.length, 0);
  fail = false;
  env.clock.advance(500);
  await flush();
  assertEqual(env.WS.instances.length, 1);
  assertEqual(env.last().params.get('token'), 'ok');
});

test('attempts reset after the snapshot, or after staying open 5 s', () => {
  const env = setup();
  env.client.connect();
  env.last().refuse();
  env.clock.advance(500);
  env.last().refuse();
  env.clock.advance(1000);
  assertEqual(env.client.health().attempts, 2);
  env.last().serverOpen();
  assertEqual(env.client.health().attempts, 2, 'open alone does not reset');
  env.last().serverSend(msg.snapshot(3));
  assertEqual(env.client.health().attempts, 0, 'the snapshot resets');
  env.last().serverClose(1001);
  assertEqual(env.clock.timeouts[env.clock.timeouts.length - 1], 500, 'backoff starts over');
  env.clock.advance(500);
  env.last().serverOpen(); // no snapshot this time
  env.last().serverClose(1001); // closed quickly: attempts grow
  assertEqual(env.clock.timeouts[env.clock.timeouts.length - 1], 1000);
  env.clock.advance(1000);
  env.last().serverOpen();
  env.clock.advance(4999);
  assertEqual(env.client.health().attempts, 2);
  env.clock.advance(1);
  assertEqual(env.client.health().attempts, 0, 'open for 5 s resets');
});

test('close() stops for good: socket closed with 1000, no reconnect, every timer cleared', () => {
  const env = setup({ pingIntervalMs: 1000 });
  const ws = openWithSnapshot(env, 1);
  assert(env.clock.pending > 0, 'ping/stability timers while open');
  env.client.close();
  assertEqual(ws.closedWith, { code: 1000, reason: 'client closed' });
  assertEqual(env.client.state, 'closed');
  assertEqual(env.clock.pending, 0, 'no timer left');
  assertEqual(env.win.listeners, 0, 'online/offline listeners removed');
  ws.serverClose(1006); // a late close event from the old socket changes nothing
  env.clock.advance(60000);
  env.client.connect();
  assertEqual(env.WS.instances.length, 1, 'no new socket, even on connect()');
  assertEqual(env.client.state, 'closed');
  // closing while a reconnect is pending clears that timer too
  const other = setup();
  other.client.connect();
  other.last().refuse();
  assertEqual(other.clock.pending, 1);
  other.client.close();
  assertEqual(other.clock.pending, 0);
  other.clock.advance(60000);
  assertEqual(other.WS.instances.length, 1);
});

test('a server close 1000 ends the client without reconnecting', () => {
  const env = setup();
  const ws = openWithSnapshot(env, 1);
  ws.serverClose(1000, 'bye');
  assertEqual(env.client.state, 'closed');
  assertEqual(env.client.health().lastClose.code, 1000);
  env.clock.advance(60000);
  assertEqual(env.WS.instances.length, 1);
  assertEqual(env.clock.pending, 0);
});

test('a socket closed while still connecting is closed only once it opens (no browser error)', () => {
  const env = setup();
  env.client.connect();
  const ws = env.last();
  env.client.close();
  assertEqual(ws.closedWith, null, 'not closed while CONNECTING');
  ws.serverOpen();
  assertEqual(ws.closedWith && ws.closedWith.code, 1000, 'closed once open');
  assertEqual(env.client.state, 'closed');
});

test('offline: goes offline, drops the socket, schedules nothing; online: reconnects with last_seq', () => {
  const env = setup();
  const ws = openWithSnapshot(env, 42);
  assertEqual(env.win.listeners, 2, 'listens to online and offline');
  env.win.dispatchEvent(new Event('offline'));
  assertEqual(env.client.state, 'offline');
  assert(ws.closedWith !== null, 'socket closed');
  assertEqual(env.clock.pending, 0, 'no reconnect timer while offline');
  env.clock.advance(60000);
  assertEqual(env.WS.instances.length, 1);
  env.win.dispatchEvent(new Event('online'));
  assertEqual(env.client.state, 'reconnecting');
  assertEqual(env.WS.instances.length, 2);
  assertEqual(env.last().params.get('last_seq'), '42');
  env.last().serverOpen();
  assertEqual(env.client.state, 'open');
});

test('listens to the real window offline/online events by default and detaches on close', () => {
  const WS = makeFakeWebSocket();
  const client = new ProgressClient({ jobId: 'w', url: 'ws://bridge.test/', WebSocketImpl: WS, pingIntervalMs: 0, backoff: { jitter: 0 } });
  created.push(client);
  client.connect();
  WS.instances[0].serverOpen();
  window.dispatchEvent(new Event('offline'));
  assertEqual(client.state, 'offline');
  window.dispatchEvent(new Event('online'));
  assertEqual(WS.instances.length, 2);
  client.close();
  window.dispatchEvent(new Event('online'));
  window.dispatchEvent(new Event('offline'));
  assertEqual(client.state, 'closed');
  assertEqual(WS.instances.length, 2);
});

// ------------------------------------------------------------------ tests: ping / health

test('periodic ping while open; the pong gives the RTT; unknown pong ids are ignored', () => {
  const pongs = [];
  const env = setup({ pingIntervalMs: 15000 });
  env.client.addEventListener('pong', (e) => pongs.push(e.detail.data.id));
  const ws = openWithSnapshot(env, 1);
  assertEqual(ws.sent.length, 0, 'no ping right away');
  env.clock.advance(15000);
  assertEqual(ws.sentMessages.length, 1);
  const ping = ws.sentMessages[0];
  assertEqual(ping.type, 'ping');
  assert(typeof ping.id === 'string' && ping.id.length > 0 && ping.id.length <= 128, 'ping id');
  env.clock.advance(37);
  ws.serverSend({ type: 'pong', job_id: null, seq: 0, ts: 't', data: { id: 'someone-else' } });
  assertEqual(env.client.health().rttMs, null, 'unknown id: no RTT');
  ws.serverSend({ type: 'pong', job_id: null, seq: 0, ts: 't', data: { id: ping.id } });
  assertEqual(env.client.health().rttMs, 37);
  assertEqual(pongs, ['someone-else', ping.id]);
  const id2 = env.client.ping();
  assert(id2 && id2 !== ping.id, 'ping() uses a fresh id');
  assertEqual(ws.sentMessages[1], { type: 'ping', id: id2 });
  env.clock.advance(15000);
  assertEqual(ws.sentMessages.length, 3, 'periodic');
});

test('a silent connection (no answer for two ping intervals) is dropped and reconnected', () => {
  const env = setup({ pingIntervalMs: 1000 });
  const ws = openWithSnapshot(env, 5);
  env.clock.advance(1000); // ping 1
  env.clock.advance(1000); // ping 2
  assertEqual(env.client.state, 'open');
  env.clock.advance(1000); // ping 1 unanswered for 2 intervals with nothing received
  assertEqual(env.client.state, 'reconnecting');
  assert(ws.closedWith !== null, 'old socket closed');
  env.clock.advance(500);
  assertEqual(env.last().params.get('last_seq'), '5');
});

test('sends at most 20 client messages per second; ping() returns null when not open', () => {
  const env = setup({ pingIntervalMs: 0 });
  assertEqual(env.client.ping(), null, 'idle');
  const ws = openWithSnapshot(env, 1);
  const ids = [];
  for (let i = 0; i < 30; i += 1) ids.push(env.client.ping());
  assertEqual(ws.sent.length, 20);
  assertEqual(ids.filter((id) => id === null).length, 10);
  env.clock.advance(1000);
  assert(env.client.ping() !== null, 'allowed again a second later');
  assertEqual(ws.sent.length, 21);
});

test('health() reports message age, lastSeq, attempts and the last close', () => {
  const env = setup();
  assertEqual(env.client.health().lastMessageAgeMs, null);
  const ws = openWithSnapshot(env, 8);
  env.clock.advance(2500);
  const h = env.client.health();
  assertEqual(h.state, 'open');
  assertEqual(h.lastMessageAgeMs, 2500);
  assertEqual(h.lastSeq, 8);
  assertEqual(h.lastClose, null);
  assert(h.seqs instanceof Map && h.seqs.get(JOB) === 8, 'seqs map');
  h.seqs.set(JOB, 999);
  assertEqual(env.client.health().lastSeq, 8, 'seqs is a copy');
  ws.serverClose(1008, 'too fast');
  const after = env.client.health();
  assertEqual(after.lastClose.code, 1008);
  assertEqual(after.lastClose.reason, 'too fast');
  assertEqual(after.attempts, 1);
  assertEqual(after.connected, false);
  assertEqual(after.nextRetryInMs, 500);
});

test('real timers: the default timer path reconnects after the backoff', async () => {
  const WS = makeFakeWebSocket();
  const client = new ProgressClient({
    jobId: 'rt', url: 'ws://bridge.test/', WebSocketImpl: WS, windowTarget: null,
    backoff: { initialMs: 20, maxMs: 100, factor: 2, jitter: 0 },
  });
  created.push(client);
  client.connect();
  WS.instances[0].refuse();
  assertEqual(WS.instances.length, 1);
  await sleep(60);
  assertEqual(WS.instances.length, 2);
  client.close();
  WS.instances[1].refuse();
  await sleep(60);
  assertEqual(WS.instances.length, 2, 'nothing after close()');
});

// ------------------------------------------------------------------ runner

async function run() {
  const out = document.getElementById('results');
  const summary = document.getElementById('summary');
  const lines = [];
  const failures = [];
  let passed = 0;
  for (const { name, fn } of tests) {
    try {
      await Promise.race([
        Promise.resolve().then(fn),
        sleep(5000).then(() => { throw new Error('timed out after 5 s'); }),
      ]);
      passed += 1;
      lines.push(`ok    ${name}`);
    } catch (err) {
      const message = err && err.message ? err.message : String(err);
      failures.push({ name, message });
      lines.push(`FAIL  ${name}\n      ${message}`);
    } finally {
      while (created.length) created.pop().close();
    }
  }
  const failed = failures.length;
  lines.push('', `${passed} passed, ${failed} failed`);
  out.textContent = lines.join('\n');
  summary.textContent = `${passed} passed, ${failed} failed`;
  summary.className = failed ? 'fail' : 'pass';
  window.__testResults = { done: true, passed, failed, failures };
}

run();

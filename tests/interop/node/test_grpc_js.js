// @grpc/grpc-js (a pure-JavaScript gRPC stack on node's own HTTP/2) against
// estore-echo. Run by ctest as interop_grpc_js:
//   ESTORE_ECHO=build/tests/estore-echo ESTORE_PROTO_DIR=proto node --test test_grpc_js.js
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const path = require('node:path');

let grpc, protoLoader;
try {
  grpc = require('@grpc/grpc-js');
  protoLoader = require('@grpc/proto-loader');
} catch (e) {
  throw new Error(`${e.message}\nrun "npm ci" in ${__dirname} (./estore deps does it)`);
}

const ECHO_BIN = process.env.ESTORE_ECHO;
const PROTO_DIR = process.env.ESTORE_PROTO_DIR || path.join(__dirname, '..', '..', '..', 'proto');
if (!ECHO_BIN) throw new Error('ESTORE_ECHO must name the estore-echo binary');

let server; // the child process
let exited; // resolves with the exit code
let client;

// Starts estore-echo on a port the kernel picks and resolves with the port
// it prints ("listening on 127.0.0.1:PORT"), within 15 s.
function startServer() {
  return new Promise((resolve, reject) => {
    server = spawn(ECHO_BIN, ['--listen', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    exited = new Promise((res) => server.on('exit', (code, signal) => res(code ?? signal)));
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`no "listening on" line in 15 s:\n${out}\n${err}`)), 15000);
    // Keep reading both pipes for the server's whole life, so its log lines
    // never block it.
    server.stderr.on('data', (d) => { err += d; });
    server.stdout.on('data', (d) => {
      out += d;
      const m = /^listening on 127\.0\.0\.1:(\d+)$/m.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    server.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`estore-echo exited with ${code} before listening:\n${out}\n${err}`));
    });
  });
}

function call(method, req, options = {}) {
  return new Promise((resolve, reject) => {
    const metadata = options.metadata || new grpc.Metadata();
    const opts = { deadline: Date.now() + (options.timeoutMs || 10000) };
    client[method](req, metadata, opts, (e, reply) => (e ? reject(e) : resolve(reply)));
  });
}

before(async () => {
  const port = await startServer();
  const def = protoLoader.loadSync('estore/testing/v1/echo.proto', {
    includeDirs: [PROTO_DIR], keepCase: true, longs: String, defaults: true,
  });
  const Echo = grpc.loadPackageDefinition(def).estore.testing.v1.Echo;
  client = new Echo(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
});

after(async () => {
  if (client) client.close();
  if (server && server.exitCode === null) {
    // Our own child, by PID.
    process.kill(server.pid, 'SIGTERM');
    const timer = setTimeout(() => process.kill(server.pid, 'SIGKILL'), 20000);
    const code = await exited;
    clearTimeout(timer);
    assert.equal(code, 0, 'estore-echo must exit 0 after SIGTERM');
  }
});

test('unary echo', async () => {
  const payload = Buffer.from([0, 1, 2, 254, 255]);
  const reply = await call('UnaryEcho', { message: 'héllo from grpc-js', payload });
  assert.equal(reply.message, 'héllo from grpc-js');
  assert.deepEqual(Buffer.from(reply.payload), payload);
  assert.equal(reply.index, 0);
});

test('unary reply of 1 MiB', async () => {
  const reply = await call('UnaryEcho', { message: 'big', reply_bytes: 1 << 20 });
  assert.equal(reply.payload.length, 1 << 20);
  for (const i of [0, 250, 251, 252, (1 << 20) - 1]) assert.equal(reply.payload[i], i % 251);
});

test('error status code and message', async () => {
  const msg = 'débit refusé — 拒否';
  await assert.rejects(call('UnaryEcho', { status_code: grpc.status.FAILED_PRECONDITION, status_message: msg }),
    (e) => {
      assert.equal(e.code, grpc.status.FAILED_PRECONDITION);
      assert.equal(e.details, msg);
      return true;
    });
});

test('deadline exceeded', async () => {
  const t0 = Date.now();
  await assert.rejects(call('UnaryEcho', { sleep_ms: 10000 }, { timeoutMs: 300 }),
    (e) => {
      assert.equal(e.code, grpc.status.DEADLINE_EXCEEDED);
      return true;
    });
  assert.ok(Date.now() - t0 < 5000, 'the deadline, not the sleep, ended the call');
});

test('unknown method is UNIMPLEMENTED', async () => {
  const raw = new grpc.Client(client.getChannel().getTarget(), grpc.credentials.createInsecure());
  try {
    await assert.rejects(new Promise((resolve, reject) => {
      raw.makeUnaryRequest('/estore.testing.v1.Echo/Nope', (x) => x, (x) => x, Buffer.alloc(0),
        { deadline: Date.now() + 10000 }, (e, r) => (e ? reject(e) : resolve(r)));
    }), (e) => {
      assert.equal(e.code, grpc.status.UNIMPLEMENTED);
      return true;
    });
  } finally {
    raw.close();
  }
});

test('server stream and metadata', async () => {
  const md = new grpc.Metadata();
  md.set('echo-who', 'grpc-js');
  md.set('echo-raw-bin', Buffer.from([0, 255]));
  const got = [];
  let headers;
  await new Promise((resolve, reject) => {
    const stream = client.ServerStream({ message: 's', count: 3 }, md, { deadline: Date.now() + 10000 });
    stream.on('metadata', (m) => { headers = m; });
    stream.on('data', (r) => got.push(r.index));
    stream.on('error', reject);
    stream.on('status', (s) => {
      if (s.code !== grpc.status.OK) return;
      assert.deepEqual(s.metadata.get('echo-who'), ['grpc-js']);
      resolve();
    });
  });
  assert.deepEqual(got, [0, 1, 2]);
  assert.deepEqual(headers.get('echo-who'), ['grpc-js']);
  assert.deepEqual(Buffer.from(headers.get('echo-raw-bin')[0]), Buffer.from([0, 255]));
});

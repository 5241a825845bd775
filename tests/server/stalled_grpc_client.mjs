// A gRPC client that never reads (tests/server/backpressure_test.cc): one HTTP/2 connection (Node's built-in
// http2, no gRPC library), N Generate streams whose request is a serialized GenerateRequest given in hex. The
// connection answers PING and opens the connection-level window as Node does, but each stream's window is
// 1024 bytes (SETTINGS_INITIAL_WINDOW_SIZE) and is never opened again: the streams are paused and never read.
// After hold_ms it prints one JSON line (per stream: headers seen, closed, RST code, grpc-status and message
// if the trailers arrived, time to close) and exits.
//
//   node stalled_grpc_client.mjs HOST:PORT HEX_REQUEST STREAMS HOLD_MS
import http2 from 'node:http2';

const [target, hex, streamsArg, holdArg] = process.argv.slice(2);
const body = Buffer.from(hex, 'hex');
const frame = Buffer.alloc(5 + body.length);
frame[0] = 0;  // not compressed
frame.writeUInt32BE(body.length, 1);
body.copy(frame, 5);

const start = Date.now();
const session = http2.connect(`http://${target}`, { settings: { initialWindowSize: 1024, enablePush: false } });
let sessionError = null;
session.on('error', (e) => { sessionError = String(e); });

const results = [];
for (let i = 0; i < Number(streamsArg); ++i) {
  const r = { headers: false, closed: false, rstCode: null, grpcStatus: null, grpcMessage: null, closedAfterMs: null };
  results.push(r);
  const req = session.request({
    ':method': 'POST',
    ':path': '/stepserve.v1.StepServe/Generate',
    'content-type': 'application/grpc',
    te: 'trailers',
  });
  req.pause();  // never read: Node does not open this stream's window again
  req.on('response', () => { r.headers = true; });
  req.on('trailers', (t) => {
    r.grpcStatus = t['grpc-status'] ?? null;
    r.grpcMessage = t['grpc-message'] ?? null;
  });
  req.on('error', () => {});
  req.on('close', () => {
    r.closed = true;
    r.rstCode = req.rstCode ?? null;
    r.closedAfterMs = Date.now() - start;
  });
  req.end(frame);
}

setTimeout(() => {
  process.stdout.write(JSON.stringify({ sessionError, streams: results }) + '\n');
  session.destroy();
  process.exit(0);
}, Number(holdArg));

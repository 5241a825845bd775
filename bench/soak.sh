#!/usr/bin/env bash
# Soak (issue 18; a bench script, not in CI): stepserve on the tiny preset under DURATION_S seconds of mixed
# clients at once, all on loopback:
#   - well-behaved: stepbench closed loop over gRPC (token ids) and over the OpenAI HTTP API (text);
#   - slow: curl reading an HTTP stream at 300 bytes/s;
#   - stalled: a raw HTTP/2 client whose streams never open their window (tests/server/stalled_grpc_client.mjs);
#   - cancelling: gRPC streams killed after 0.3 s, HTTP streams dropped after 0.3 s (curl --max-time).
# Every 10 s it samples the server's RSS and times a /metrics scrape; at the end it prints RSS at the start of
# the second minute, its maximum and its last value, and the slowest scrape.
#   DURATION_S=1200 bash bench/soak.sh          (needs a built tree: build/server/stepserve, build/client/*)
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
B="${BUILD_DIR:-$ROOT/build}"
DURATION_S="${DURATION_S:-1200}"
GRPC=50161 HTTP=8161 METRICS=9561
OUT="$(mktemp -d /tmp/stepserve-soak.XXXXXX)"
log() { echo "soak: $*" >&2; }

"$B/server/stepserve" --model=tiny --port=$GRPC --http_port=$HTTP --metrics_port=$METRICS --host=127.0.0.1 \
  --http_host=127.0.0.1 --metrics_host=127.0.0.1 --stream_stall_timeout_s=15 >"$OUT/server.log" 2>&1 &
SERVER=$!
trap 'kill $(jobs -p) 2>/dev/null; kill $SERVER 2>/dev/null' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$METRICS/metrics" >/dev/null && break; sleep 0.2; done
log "server pid $SERVER, logs and samples in $OUT"

END=$((SECONDS + DURATION_S))
printf '{"prompt": "Tell me a story about a robot."}\n{"prompt": "Write a haiku on the sea."}\n' >"$OUT/prompts.jsonl"
# A GenerateRequest (prompt ids 75,154,177; max_new_tokens 3000; logprobs 20), hex, for the stalled client.
HEX="$(node -e '
  const v=n=>{const b=[];do{let x=n&0x7f;n>>>=7;if(n)x|=0x80;b.push(x);}while(n);return b;};
  const ids=[75,154,177].flatMap(v), stop=[0x08,...v(3000)];
  const msg=[0x12,ids.length,...ids,0x22,stop.length,...stop,0x28,20];
  process.stdout.write(Buffer.from(msg).toString("hex"));')"

well_grpc() { while [ $SECONDS -lt $END ]; do "$B/client/stepbench" --target=127.0.0.1:$GRPC --concurrency=4 \
  --num_requests=32 --prompt_len=16:64 --output_len=16:64 >>"$OUT/well_grpc.log" 2>&1; done; }
well_http() { while [ $SECONDS -lt $END ]; do "$B/client/stepbench" --api=openai --http_target=127.0.0.1:$HTTP \
  --prompts_file="$OUT/prompts.jsonl" --concurrency=4 --num_requests=16 --output_len=32 >>"$OUT/well_http.log" 2>&1; done; }
slow() { while [ $SECONDS -lt $END ]; do curl -sN --limit-rate 300 --max-time 60 -H 'content-type: application/json' \
  -d '{"model":"tiny","prompt":"slow","max_tokens":400,"stream":true}' "http://127.0.0.1:$HTTP/v1/completions" >/dev/null; done; }
stalled() { while [ $SECONDS -lt $END ]; do node "$ROOT/tests/server/stalled_grpc_client.mjs" 127.0.0.1:$GRPC "$HEX" 10 30000 \
  >>"$OUT/stalled.log" 2>&1; done; }
cancelling() { while [ $SECONDS -lt $END ]; do
  timeout 0.3 "$B/client/stepctl" --target=127.0.0.1:$GRPC generate --tokens=75,154,177 --max_new_tokens=2000 --stream >/dev/null 2>&1
  curl -sN --max-time 0.3 -H 'content-type: application/json' \
    -d '{"model":"tiny","messages":[{"role":"user","content":"hi"}],"max_tokens":2000,"stream":true}' \
    "http://127.0.0.1:$HTTP/v1/chat/completions" >/dev/null 2>&1; done; }

well_grpc & well_http & slow & stalled & cancelling &
echo "t_s rss_kb scrape_s running" >"$OUT/samples.txt"
while [ $SECONDS -lt $END ]; do
  rss="$(ps -o rss= -p $SERVER | tr -d ' ')"
  [ -n "$rss" ] || { log "the server died: see $OUT/server.log"; exit 1; }
  scrape="$(curl -s -o "$OUT/metrics.txt" -w '%{time_total}' --max-time 10 "http://127.0.0.1:$METRICS/metrics" || echo timeout)"
  running="$(awk '/^stepserve_num_requests_running /{print $2}' "$OUT/metrics.txt" 2>/dev/null)"
  echo "$SECONDS $rss $scrape ${running:-?}" >>"$OUT/samples.txt"
  sleep 10
done
wait $(jobs -p | grep -v "^$SERVER$") 2>/dev/null
awk 'NR>1 { n++; t[n]=$1; r[n]=$2; s=$3; if (s=="timeout") to++; else if (s>ms) ms=s; if (r[n]>mx) mx=r[n] }
     END { for (i=1;i<=n;i++) if (t[i]>=60) { base=r[i]; break }
           printf "soak: %d samples over %d s; RSS at 60 s %d KiB, max %d KiB, last %d KiB (last/60s %.2fx); slowest /metrics scrape %.3f s, timed out %d\n",
                  n, t[n], base, mx, r[n], r[n]/base, ms, to+0 }' "$OUT/samples.txt"
grep -h 'requests' "$OUT/well_grpc.log" | tail -1
curl -s "http://127.0.0.1:$METRICS/metrics" | grep -E '^stepserve_(streams_stalled_total|request_success_total|num_requests_running|requests_finished)' | head

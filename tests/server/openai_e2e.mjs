// End to end with the official `openai` npm package (and curl) against a running stepserve on the tiny preset.
//   node openai_e2e.mjs http://127.0.0.1:PORT /path/to/tests/text/tools
// Exits non-zero (with the failed assertion) on any difference. The text is random (random weights); the
// checks are on shapes, equality of streamed and non-streamed greedy results, tool calls, usage and errors.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';

const [base, toolsDir] = process.argv.slice(2);
const require = createRequire(`${toolsDir}/package.json`);
const openaiModule = require('openai');
const OpenAI = openaiModule.default ?? openaiModule.OpenAI ?? openaiModule;

const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'not-needed', maxRetries: 0, timeout: 120_000 });
const model = 'tiny';
const log = (...args) => console.log('openai_e2e:', ...args);

const tools = [{
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Current weather of a city',
    parameters: { type: 'object', properties: { city: { type: 'string' }, days: { type: 'integer' } }, required: ['city'] },
  },
}];
const history = [
  { role: 'system', content: 'You are a weather bot.' },
  { role: 'user', content: 'Weather in Paris?' },
  { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city": "Paris", "days": 2}' } }] },
  { role: 'tool', tool_call_id: 'call_1', content: 'sunny, 21 C' },
  { role: 'user', content: 'And in Rome?' },
];

async function collectChat(stream) {
  let role = null, content = '', reasoning = '', finish = null, usage = null, chunks = 0;
  const calls = new Map();
  for await (const chunk of stream) {
    chunks++;
    assert.equal(chunk.object, 'chat.completion.chunk');
    assert.equal(chunk.model, model);
    if (chunk.usage) usage = chunk.usage;
    for (const choice of chunk.choices) {
      const d = choice.delta ?? {};
      if (d.role) role = d.role;
      if (d.content) content += d.content;
      if (d.reasoning_content) reasoning += d.reasoning_content;
      for (const tc of d.tool_calls ?? []) {
        const c = calls.get(tc.index) ?? { id: '', name: '', arguments: '' };
        if (tc.id) c.id = tc.id;
        if (tc.function?.name) c.name = tc.function.name;
        if (tc.function?.arguments) c.arguments += tc.function.arguments;
        calls.set(tc.index, c);
      }
      if (choice.finish_reason) finish = choice.finish_reason;
    }
  }
  return { role, content, reasoning, finish, usage, chunks, calls: [...calls.values()] };
}

// 1. Models.
const models = await client.models.list();
assert.deepEqual(models.data.map((m) => m.id), [model]);
log('models ok');

// 2. Chat, not streamed and streamed (greedy: the same text).
const request = { model, messages: [{ role: 'user', content: 'Hello, who are you?' }], max_tokens: 12, temperature: 0, ignore_eos: true };
const chat = await client.chat.completions.create(request);
assert.equal(chat.object, 'chat.completion');
assert.match(chat.id, /^chatcmpl-/);
assert.equal(chat.choices.length, 1);
assert.equal(chat.choices[0].message.role, 'assistant');
assert.equal(chat.choices[0].finish_reason, 'length');
assert.equal(chat.usage.completion_tokens, 12);
assert.equal(chat.usage.total_tokens, chat.usage.prompt_tokens + 12);
const streamed = await collectChat(await client.chat.completions.create({ ...request, stream: true, stream_options: { include_usage: true } }));
assert.equal(streamed.role, 'assistant');
assert.equal(streamed.content, chat.choices[0].message.content ?? '');
assert.equal(streamed.reasoning, chat.choices[0].message.reasoning_content ?? '');
assert.equal(streamed.finish, 'length');
assert.equal(streamed.usage.prompt_tokens, chat.usage.prompt_tokens);
assert.equal(streamed.usage.completion_tokens, chat.usage.completion_tokens);
// The same prompt again: served from the prefix cache (whole blocks of 16 tokens).
assert.equal(streamed.usage.prompt_tokens_details.cached_tokens, Math.floor((chat.usage.prompt_tokens - 1) / 16) * 16);
log('chat ok', JSON.stringify({ content: streamed.content.slice(0, 40), reasoning: streamed.reasoning.slice(0, 40) }));

// 3. Chat with tools, a tool-call history (arguments as a JSON string), each tool_choice; stream and not.
for (const tool_choice of ['auto', 'none', 'required', { type: 'function', function: { name: 'get_weather' } }]) {
  const r = { model, messages: history, tools, tool_choice, max_tokens: 8, temperature: 0, ignore_eos: true };
  const once = await client.chat.completions.create(r);
  const s = await collectChat(await client.chat.completions.create({ ...r, stream: true }));
  assert.ok(['length', 'stop', 'tool_calls'].includes(once.choices[0].finish_reason));
  assert.equal(s.finish, once.choices[0].finish_reason);
  assert.equal(s.content, once.choices[0].message.content ?? '');
  assert.equal(s.calls.length, (once.choices[0].message.tool_calls ?? []).length);
  for (const call of s.calls) JSON.parse(call.arguments); // arguments are JSON objects
}
log('tools ok');

// 4. n = 2 sampled with a seed: two choices, reproducible.
const sampled = { model, messages: [{ role: 'user', content: 'Pick a number' }], max_tokens: 6, temperature: 1, seed: 7, n: 2, ignore_eos: true };
const a = await client.chat.completions.create(sampled);
const b = await client.chat.completions.create(sampled);
assert.equal(a.choices.length, 2);
assert.deepEqual(a.choices.map((c) => c.message), b.choices.map((c) => c.message));
assert.equal(a.usage.completion_tokens, 12);
log('n ok');

// 5. Completions, not streamed and streamed, with logprobs and a stop string.
const comp = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 10, temperature: 0, logprobs: 1, ignore_eos: true });
assert.equal(comp.object, 'text_completion');
assert.equal(comp.choices[0].finish_reason, 'length');
assert.equal(comp.choices[0].logprobs.tokens.length, 10);
let text = '', finish = null;
for await (const chunk of await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 10, temperature: 0, ignore_eos: true, stream: true })) {
  for (const choice of chunk.choices) {
    text += choice.text;
    if (choice.finish_reason) finish = choice.finish_reason;
  }
}
assert.equal(text, comp.choices[0].text);
assert.equal(finish, 'length');
const whole = comp.choices[0].text;
const cut = [...whole].length > 4 ? [...whole].slice(2, 4).join('') : null;
if (cut !== null) {
  const stopped = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 10, temperature: 0, ignore_eos: true, stop: [cut] });
  assert.equal(stopped.choices[0].finish_reason, 'stop');
  assert.equal(stopped.choices[0].text, whole.slice(0, whole.indexOf(cut)));
}
log('completions ok');

// 6. Errors: the SDK's error classes, status and param.
await assert.rejects(client.chat.completions.create({ ...request, model: 'gpt-4o' }), (e) => e.status === 404 && e.error?.param === 'model');
await assert.rejects(client.chat.completions.create({ ...request, temperature: -1 }), (e) => e instanceof OpenAI.BadRequestError && e.status === 400 && e.error?.param === 'temperature');
await assert.rejects(client.chat.completions.create({ ...request, messages: [{ role: 'wizard', content: 'x' }] }), (e) => e.status === 400 && e.error?.param === 'messages[0].role');
log('errors ok');

// 7. curl: /health and /tokenize.
const curl = (...args) => execFileSync('curl', ['-sS', '--max-time', '60', ...args], { encoding: 'utf8' });
assert.equal(curl('-o', '/dev/null', '-w', '%{http_code}', `${base}/health`), '200');
const tokenized = JSON.parse(curl('-X', 'POST', '-H', 'Content-Type: application/json', '-d', JSON.stringify({ model, prompt: 'Hello world' }), `${base}/tokenize`));
assert.equal(tokenized.count, tokenized.tokens.length);
assert.ok(tokenized.count > 1);
assert.ok(tokenized.max_model_len > 0);
const chatTokens = JSON.parse(curl('-X', 'POST', '-H', 'Content-Type: application/json', '-d', JSON.stringify({ messages: history, tools }), `${base}/tokenize`));
const detok = JSON.parse(curl('-X', 'POST', '-H', 'Content-Type: application/json', '-d', JSON.stringify({ tokens: chatTokens.tokens }), `${base}/detokenize`));
assert.ok(detok.prompt.includes('<parameter=city>\nParis\n</parameter>'), detok.prompt);
log('curl ok');
log('all ok');

// Reference ids and texts from Hugging Face's own Rust tokenizer (the npm `tokenizers` binding), for
// tests/text/tokenizer/reference_test.cc.
//
//   node reference_tokenize.mjs TOOLS_DIR MODEL_DIR IN.json OUT.json
//
// IN.json:  {"texts": [string...], "decode_ids": [[id...]...]}
// OUT.json: {"encode": [{"plain": [ids], "special": [ids], "decoded": s, "decoded_skip": s}...],
//            "decode": [{"keep": s, "skip": s}...]}
//
// add_special_tokens: the binding applies tokenizer.json's post-processor only. transformers does more
// for tokenizers whose tokenizer_config.json sets add_bos_token/add_eos_token (DeepSeek-V3's, whose
// tokenizer_class is LlamaTokenizerFast): LlamaTokenizerFast.update_post_processor() replaces the
// post-processor with a template "BOS? $A EOS?" built from those flags (add_bos_token defaults to true for
// the Llama classes, add_eos_token to false). For those, "special" is computed here as transformers would:
// the plain ids with BOS prepended / EOS appended. Everything else comes from the binding unchanged.
import { createRequire } from 'module';
import { readFileSync, writeFileSync, existsSync } from 'fs';
import { join } from 'path';

const [toolsDir, modelDir, inPath, outPath] = process.argv.slice(2);
const require = createRequire(join(toolsDir, 'node_modules', '/'));
const { Tokenizer } = require('tokenizers');

const tokenizerPath = join(modelDir, 'tokenizer.json');
const tok = Tokenizer.fromFile(tokenizerPath);
const tokenizerJson = JSON.parse(readFileSync(tokenizerPath, 'utf8'));
const configPath = join(modelDir, 'tokenizer_config.json');
const config = existsSync(configPath) ? JSON.parse(readFileSync(configPath, 'utf8')) : {};

function contentOf(token) {
  if (token === null || token === undefined) return null;
  return typeof token === 'string' ? token : token.content;
}
function idOf(content) {
  for (const t of tokenizerJson.added_tokens || []) if (t.content === content) return t.id;
  const id = tokenizerJson.model.vocab[content];
  if (id === undefined) throw new Error(`no id for ${content}`);
  return id;
}

let transformersTemplate = null;  // {bos: id|null, eos: id|null} when transformers rebuilds the template
if ('add_bos_token' in config || 'add_eos_token' in config) {
  const cls = config.tokenizer_class || '';
  const llama = cls.startsWith('Llama') || cls.startsWith('CodeLlama');
  const addBos = config.add_bos_token ?? llama;
  const addEos = config.add_eos_token ?? false;
  transformersTemplate = {
    bos: addBos ? idOf(contentOf(config.bos_token)) : null,
    eos: addEos ? idOf(contentOf(config.eos_token)) : null,
  };
}

const input = JSON.parse(readFileSync(inPath, 'utf8'));
const out = { encode: [], decode: [] };
for (const text of input.texts) {
  const plain = (await tok.encode(text, null, { addSpecialTokens: false })).getIds();
  let special;
  if (transformersTemplate) {
    special = [...plain];
    if (transformersTemplate.bos !== null) special.unshift(transformersTemplate.bos);
    if (transformersTemplate.eos !== null) special.push(transformersTemplate.eos);
  } else {
    special = (await tok.encode(text, null, { addSpecialTokens: true })).getIds();
  }
  out.encode.push({
    plain,
    special,
    decoded: await tok.decode(plain, false),
    decoded_skip: await tok.decode(special, true),
  });
}
for (const ids of input.decode_ids || []) {
  out.decode.push({ keep: await tok.decode(ids, false), skip: await tok.decode(ids, true) });
}
writeFileSync(outPath, JSON.stringify(out));

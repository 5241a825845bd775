// The Hugging Face side of bench/tokenizer_bench: encodes each document of DOCS_FILE (a JSON array of
// strings) with the Rust `tokenizers` crate (npm binding) on one thread, one call each, ITERATIONS times,
// and prints {"best_seconds": s} (the whole pass) after writing the ids of the last pass, concatenated, to
// OUT_IDS (JSON), for the C++ side to compare.
//
//   RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false \
//     node tokenizer_bench_reference.mjs TOOLS_DIR MODEL_DIR DOCS_FILE ITERATIONS OUT_IDS
//
// One string per encode call: the crate parallelises only batches (and word-level work of one long input
// when parallelism is on, which the environment above turns off).
import { createRequire } from 'module';
import { readFileSync, writeFileSync } from 'fs';
import { join } from 'path';

const [toolsDir, modelDir, docsFile, iterationsArg, outIds] = process.argv.slice(2);
const require = createRequire(join(toolsDir, 'node_modules', '/'));
const { Tokenizer } = require('tokenizers');

const tok = Tokenizer.fromFile(join(modelDir, 'tokenizer.json'));
const docs = JSON.parse(readFileSync(docsFile, 'utf8'));
const iterations = Number(iterationsArg);
let best = Infinity;
let encodings = [];
for (let i = 0; i < iterations; ++i) {
  const start = process.hrtime.bigint();
  const pass = [];
  for (const d of docs) pass.push(await tok.encode(d, null, { addSpecialTokens: false }));
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  best = Math.min(best, seconds);
  encodings = pass;
}
writeFileSync(outIds, JSON.stringify(encodings.flatMap((e) => e.getIds())));
console.log(JSON.stringify({ best_seconds: best }));

// The Hugging Face side of bench/tokenizer_bench: encodes TEXT_FILE with the Rust `tokenizers` crate (npm
// binding) on one thread, ITERATIONS times, and prints {"best_seconds": s, "ids_file": path} after writing
// the ids of the last run to OUT_IDS (JSON), for the C++ side to compare.
//
//   RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false \
//     node tokenizer_bench_reference.mjs TOOLS_DIR MODEL_DIR TEXT_FILE ITERATIONS OUT_IDS
//
// One string per encode call: the crate parallelises only batches (and word-level work of one long input
// when parallelism is on, which the environment above turns off).
import { createRequire } from 'module';
import { readFileSync, writeFileSync } from 'fs';
import { join } from 'path';

const [toolsDir, modelDir, textFile, iterationsArg, outIds] = process.argv.slice(2);
const require = createRequire(join(toolsDir, 'node_modules', '/'));
const { Tokenizer } = require('tokenizers');

const tok = Tokenizer.fromFile(join(modelDir, 'tokenizer.json'));
const text = readFileSync(textFile, 'utf8');
const iterations = Number(iterationsArg);
let best = Infinity;
let encoding;
for (let i = 0; i < iterations; ++i) {
  const start = process.hrtime.bigint();
  encoding = await tok.encode(text, null, { addSpecialTokens: false });
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  best = Math.min(best, seconds);
}
writeFileSync(outIds, JSON.stringify(encoding.getIds()));
console.log(JSON.stringify({ best_seconds: best, ids_file: outIds }));

// The same row as a plain array, a Float32Array and BigInts, and a scalar, on one bundle:
//   node node_inputs.mjs BUNDLE.zip PUBLIC_KEY ROW_JSON
import { readFileSync } from 'node:fs';
import * as ort from 'onnxruntime-node';
import { EdgeModel } from '../pgmodels-edge.js';

const [file, publicKey, rowJson] = process.argv.slice(2);
const model = await EdgeModel.fromBundle(readFileSync(file), { publicKey, ort });
const row = JSON.parse(rowJson);
const out = { plain: await model.predict(row), float32: await model.predict(Float32Array.from(row)) };
const ints = row.map((v) => BigInt(Math.round(v)));
out.bigint = await model.predict(ints);
out.rounded = await model.predict(ints.map(Number));
for (const [what, bad] of [['scalar', 5], ['huge', [10n ** 400n, 1, 2, 3]]]) {
  try { await model.predict(bad); out[what] = null; } catch (e) { out[what] = { message: e.message, sqlstate: e.sqlstate }; }
}
console.log(JSON.stringify(out));

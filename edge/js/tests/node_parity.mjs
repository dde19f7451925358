// Scores rows with the bundle on onnxruntime-node and prints the answers as JSON:
//   node node_parity.mjs BUNDLE.zip PUBLIC_KEY ROWS.json
// (ROWS.json: a list of feature objects). Errors print {"error": ..., "sqlstate": ...}.
import { readFile } from 'node:fs/promises';
import * as ort from 'onnxruntime-node';
import { EdgeModel } from '../pgmodels-edge.js';

const [bundlePath, key, rowsPath] = process.argv.slice(2);
try {
  const model = await EdgeModel.fromBundle(await readFile(bundlePath), { publicKey: key, ort });
  const rows = JSON.parse(await readFile(rowsPath, 'utf8'));
  const out = { version: model.version, predict: await model.predictBatch(rows) };
  if (model.task === 'classification') {
    out.label = await model.predictLabelBatch(rows);
    if (model.probaOutput) out.proba = await model.predictProbaBatch(rows);
  }
  const errors = [];
  for (const bad of JSON.parse(process.env.EDGE_BAD_ROWS || '[]')) {
    try { await model.predict(bad); errors.push(null); } catch (e) { errors.push({ message: e.message, sqlstate: e.sqlstate }); }
  }
  out.errors = errors;
  console.log(JSON.stringify(out));
} catch (e) {
  console.log(JSON.stringify({ error: e.message, sqlstate: e.sqlstate ?? null }));
}

// Two polls of a bundle URL by a Node.js device keeping its bundle in DIR; prints what happened:
//   node node_sync.mjs URL PUBLIC_KEY TOKEN DIR [PROJECT]   (default: the project the URL names)
import * as ort from 'onnxruntime-node';
import { Device, fileStore } from '../pgmodels-edge.js';

const [url, publicKey, token, dir, project] = process.argv.slice(2);
const device = new Device({ url, publicKey, ort, token: token || null, store: await fileStore(dir), project: project || null });
await device.open(); // the last good bundle, if any (offline start)
const statuses = [], versions = [], errors = [];
for (let i = 0; i < 2; i++) {
  let r;
  try { r = await device.sync(); } catch (e) { r = { status: 'error', model: device.model, error: e.message }; }
  statuses.push(r.status);
  versions.push(r.model ? r.model.version : null);
  errors.push(r.error ?? null);
}
console.log(JSON.stringify({ statuses, versions, errors }));

// pgmodels-edge: run a pgmodels edge bundle in Node.js (onnxruntime-node) or a browser
// (onnxruntime-web), with the calls and input rules of the Python runtime and SQL predict().
//
//   import * as ort from 'onnxruntime-node';            // or 'onnxruntime-web'
//   import { EdgeModel, Device } from 'pgmodels-edge';
//   const model = await EdgeModel.fromBundle(bytes, { publicKey: KEY, ort });
//   await model.predict({ age: 41, plan: 'pro' });
//
// A bundle is a zip archive of manifest.json, model.onnx and manifest.sig (the raw Ed25519
// signature of manifest.json's bytes); the manifest holds model.onnx's sha256. Both are
// checked with WebCrypto (Node 20+, current browsers) before onnxruntime sees a byte.

const FLOAT32_MAX = 3.4028234663852886e38;
const FORMAT = 'pgmodels-edge-bundle/1';

export class EdgeError extends Error {
  constructor(message, { detail = null, hint = null, sqlstate = '22023' } = {}) {
    super(message);
    this.name = 'EdgeError';
    this.detail = detail;
    this.hint = hint;
    this.sqlstate = sqlstate;
  }
}

export class BundleError extends EdgeError {
  constructor(message, opts = {}) { super(message, { ...opts, sqlstate: 'XX001' }); this.name = 'BundleError'; }
}

// -- the archive (stored entries, as export_bundle() writes them) -------------------
export function unzip(bytes) {
  const u8 = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  const dv = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  let eocd = -1;
  for (let i = u8.length - 22; i >= Math.max(0, u8.length - 22 - 65535); i--) {
    if (dv.getUint32(i, true) === 0x06054b50) { eocd = i; break; }
  }
  if (eocd < 0) throw new BundleError('the bundle is not a valid archive', { hint: 'The download may have been truncated; fetch it again.' });
  const count = dv.getUint16(eocd + 10, true);
  let p = dv.getUint32(eocd + 16, true);
  const files = {};
  for (let n = 0; n < count; n++) {
    if (p + 46 > u8.length || dv.getUint32(p, true) !== 0x02014b50) throw new BundleError('the bundle is not a valid archive');
    const method = dv.getUint16(p + 10, true), size = dv.getUint32(p + 20, true), csize = dv.getUint32(p + 24, true);
    const nameLen = dv.getUint16(p + 28, true), extraLen = dv.getUint16(p + 30, true), commentLen = dv.getUint16(p + 32, true);
    const local = dv.getUint32(p + 42, true);
    const name = new TextDecoder().decode(u8.subarray(p + 46, p + 46 + nameLen));
    if (method !== 0 || csize !== size) throw new BundleError('the bundle is not a valid archive', { detail: 'Its entries must be stored, not compressed.' });
    if (local + 30 > u8.length) throw new BundleError('the bundle is not a valid archive');
    const start = local + 30 + dv.getUint16(local + 26, true) + dv.getUint16(local + 28, true);
    if (start + size > u8.length) throw new BundleError('the bundle is not a valid archive', { hint: 'The download may have been truncated; fetch it again.' });
    files[name] = u8.subarray(start, start + size);
    p += 46 + nameLen + extraLen + commentLen;
  }
  const missing = ['manifest.json', 'model.onnx', 'manifest.sig'].filter((f) => !(f in files));
  if (missing.length) throw new BundleError('the bundle is incomplete', { detail: `Missing: ${missing.join(', ')}.` });
  return { manifest: files['manifest.json'], model: files['model.onnx'], signature: files['manifest.sig'] };
}

function hex(u8) { return Array.from(u8, (b) => b.toString(16).padStart(2, '0')).join(''); }

function parseKey(key) {
  if (key == null) throw new EdgeError('no public key is pinned', { hint: 'Pass publicKey (SELECT edge_public_key()).', sqlstate: '28000' });
  if (key instanceof Uint8Array && key.length === 32) return key;
  const text = String(key).trim().replace(/^ed25519:/, '');
  if (!/^[0-9a-fA-F]{64}$/.test(text)) throw new EdgeError('the public key must be 64 hexadecimal digits');
  return new Uint8Array(text.match(/../g).map((h) => parseInt(h, 16)));
}

// The manifest, once the signature and the model's sha256 check out.
// WebCrypto: global in browsers and Node.js 19+, node:crypto's webcrypto in Node.js 18
// (Debian 12's), whose Ed25519 is there too.
async function webcrypto() {
  if (globalThis.crypto?.subtle) return globalThis.crypto.subtle;
  return (await import('node:crypto')).webcrypto.subtle;
}

// With a project, a bundle of another project is refused: one server key signs every
// project's bundles, so the signature alone does not say which project's model it is.
export async function verify({ manifest, model, signature }, publicKey, project = null) {
  const subtle = await webcrypto();
  const raw = parseKey(publicKey);
  if (signature.length !== 64) throw new BundleError('the bundle is not signed', { detail: `manifest.sig holds ${signature.length} bytes, not 64.` });
  const key = await subtle.importKey('raw', raw, { name: 'Ed25519' }, false, ['verify']);
  if (!(await subtle.verify({ name: 'Ed25519' }, key, signature, manifest))) {
    throw new BundleError("the bundle's signature does not verify", { detail: 'It was not signed by the key this device pins, or its manifest was changed after signing.' });
  }
  let m;
  try { m = JSON.parse(new TextDecoder().decode(manifest)); } catch { throw new BundleError("the bundle's manifest is not JSON"); }
  if (!m || m.format !== FORMAT) throw new BundleError("the bundle's manifest is not a pgmodels edge manifest");
  if (project != null && m.project !== project) {
    throw new BundleError(`the bundle is for project "${m.project}", not "${project}"`,
      { detail: "Its signature is valid, but the device expects another project's model.",
        hint: "Sync from the expected project's URL, or pass the right project." });
  }
  if (!m.artifact || m.artifact.bytes !== model.length) {
    throw new BundleError("the bundle's model has the wrong size", { hint: 'The download was truncated or the file was changed; fetch the bundle again.' });
  }
  const got = hex(new Uint8Array(await subtle.digest('SHA-256', model)));
  if (got !== m.artifact.sha256) {
    throw new BundleError("the bundle's model fails its sha256 check", { hint: 'The download was truncated or the file was changed; fetch the bundle again.' });
  }
  return m;
}

// -- input rules: pgmodels/serving/inputs.py, message for message --------------------
// A number as Python's repr() writes it in the server's messages (nan, inf, 1e+39, 1e-05).
const pyRepr = (v) => {
  if (Number.isNaN(v)) return 'nan';
  if (!Number.isFinite(v)) return v > 0 ? 'inf' : '-inf';
  const m = /^(-?[\d.]+)e([+-])(\d+)$/.exec(String(v));
  return m ? `${m[1]}e${m[2]}${m[3].padStart(2, '0')}` : String(v);
};
const isNum = (v) => typeof v === 'number';
// A BigInt is the number Python's float() makes of an int; past float32 it is out of range
// (22003), written as the Python runtime writes it.
function bigRepr(v) {
  if (Number.isFinite(Number(v))) return pyRepr(Number(v));
  const digits = (v < 0n ? -v : v).toString();
  return `${v < 0n ? '-' : ''}${digits[0]}.${digits.slice(1, 3)}e+${digits.length - 1}`;
}
function flatten(values) {
  return values.some(Array.isArray) ? values.flatMap((v) => (Array.isArray(v) ? flatten(v) : [v])) : values;
}
function numericList(values) {
  return values.every((v) => v === null || v === undefined || isNum(v) || (Array.isArray(v) && numericList(v)));
}

export class EdgeModel {
  constructor(manifest, session, ort) {
    this.manifest = manifest;
    this.session = session;
    this.ort = ort;
    this.project = manifest.project;
    this.version = manifest.version;
    this.id = manifest.model_id;
    this.task = manifest.task;
    this.sha256 = manifest.artifact.sha256;
    this.featureNames = manifest.features.map((f) => f.name);
    this.featureTypes = manifest.features.map((f) => f.type);
    this.nullable = new Set(manifest.nullable || []);
    this.labels = manifest.labels;
    const answers = manifest.answers || {};
    const outs = new Set(session.outputNames);
    [this.labelOutput, this.probaOutput, this.valueOutput] = ['label', 'probabilities', 'value']
      .map((k) => (answers[k] && outs.has(answers[k]) ? answers[k] : null));
    const inputs = session.inputNames;
    this.singleInput = inputs.length === 1 && this.featureTypes.every((t) => t === 'float') ? inputs[0] : null;
  }

  static async fromBundle(bytes, { publicKey, ort, project = null }) {
    const parts = unzip(bytes);
    const manifest = await verify(parts, publicKey, project);
    let session;
    try {
      session = await ort.InferenceSession.create(parts.model.slice(), { intraOpNumThreads: 1 });
    } catch (e) {
      throw new EdgeError("the bundle's model does not load in onnxruntime", { detail: String(e).slice(0, 500), sqlstate: 'XX001' });
    }
    const model = new EdgeModel(manifest, session, ort);
    // the ETag pgmodels serve answers: the sha256 of manifest.json
    model.etag = hex(new Uint8Array(await (await webcrypto()).digest('SHA-256', parts.manifest)));
    return model;
  }

  get allFloat() { return !this.featureTypes.includes('text'); }

  describe() { return `model ${this.id} (version ${this.version} of project "${this.project}")`; }

  _wrongCount(got) {
    return new EdgeError(`${this.describe()} takes ${this.featureNames.length} features, got ${got}`,
      { detail: `Features, in order: ${this.featureNames.slice(0, 50).join(', ')}.` });
  }

  _null(i) {
    const name = this.featureNames[i];
    if (this.nullable.has(name)) return NaN;
    throw new EdgeError(`feature "${name}" is NULL`, {
      detail: `${this.describe()} was trained with impute "error" for this feature.`,
      hint: `Pass a value, or retrain with preprocess => '{"${name}": {"impute": "mean"}}'.`, sqlstate: '22004' });
  }

  _number(name, v) {
    if (typeof v === 'boolean') return v ? 1 : 0;
    if (!isNum(v)) {
      const py = typeof v === 'string' ? 'str' : Array.isArray(v) ? 'list' : 'dict';
      const shown = typeof v === 'string' ? `'${v.slice(0, 40)}'` : JSON.stringify(v).slice(0, 40);
      throw new EdgeError(`feature "${name}" must be a number, not ${py} ${shown}`,
        { detail: `${this.describe()} was trained with "${name}" as a numeric feature.`, sqlstate: '22P02' });
    }
    if (!Number.isFinite(v)) {
      throw new EdgeError(`feature "${name}" is ${pyRepr(v)}`, { detail: 'Features must be finite numbers; NaN and Infinity are not accepted.' });
    }
    if (Math.abs(v) > FLOAT32_MAX) throw this._outOfRange(name, v);
    return v;
  }

  _big(name, v) {
    if (typeof v !== 'bigint') return v;
    if (Math.abs(Number(v)) > FLOAT32_MAX) throw this._outOfRange(name, bigRepr(v));
    return Number(v);
  }

  _outOfRange(name, v) {
    return new EdgeError(`feature "${name}" is ${typeof v === 'string' ? v : pyRepr(v)}, outside the single-precision range`,
      { detail: 'Models take single-precision (real) inputs, whose magnitude is at most 3.4028235e38.', sqlstate: '22003' });
  }

  // One row: an array of numbers (a float8[]), an array holding text (a jsonb array), or
  // an object by feature name. Returns the row's values in feature order.
  _row(features) {
    const n = this.featureNames.length;
    if (ArrayBuffer.isView(features) && !(features instanceof DataView)) features = Array.from(features);
    if (typeof features === 'bigint' || typeof features === 'number' || typeof features === 'string' || typeof features === 'boolean') {
      const kind = { bigint: 'number', number: 'number', string: 'string', boolean: 'boolean' }[typeof features];
      throw new EdgeError('jsonb features must be an object keyed by feature name, or an array', { detail: `Got a JSON ${kind}.` });
    }
    if (Array.isArray(features)) features = features.map((v) => (ArrayBuffer.isView(v) ? Array.from(v) : v));
    if (Array.isArray(features) && features.some((v) => typeof v === 'bigint')) {
      features = features.map((v, i) => this._big(this.featureNames[i] ?? String(i), v));
    } else if (features && typeof features === 'object' && !Array.isArray(features)
             && Object.values(features).some((v) => typeof v === 'bigint')) {
      features = Object.fromEntries(Object.entries(features).map(([k, v]) => [k, this._big(k, v)]));
    }
    if (Array.isArray(features)) {
      if (numericList(features)) {
        const values = flatten(features);
        if (features.length && Array.isArray(features[0]) && values.length !== n) {
          throw new EdgeError(`${this.describe()} takes ${n} features, got a multi-dimensional array of ${values.length} elements`,
            { detail: 'A multi-dimensional array is one row, read in row-major order.', hint: 'Use predict_batch() for many rows.' });
        }
        if (values.length !== n) throw this._wrongCount(values.length);
        if (!this.allFloat) {
          const texts = this.featureNames.filter((_, i) => this.featureTypes[i] === 'text');
          throw new EdgeError(`${this.describe()} needs text features, which a numeric array cannot carry`, {
            detail: `Text features: ${texts.join(', ')}.`,
            hint: 'Pass a row (predict(project, t) FROM t) or a jsonb object keyed by feature name.', sqlstate: '42804' });
        }
        const bad = values.findIndex((v) => v != null && !Number.isFinite(v));
        if (bad >= 0) {
          throw new EdgeError(`feature "${this.featureNames[bad]}" is ${pyRepr(values[bad])}`, {
            detail: 'Features must be finite numbers; NaN and Infinity are not accepted.',
            hint: 'Pass NULL for a missing value if the model imputes it.' });
        }
        const big = values.findIndex((v) => v != null && Math.abs(v) > FLOAT32_MAX);
        if (big >= 0) throw this._outOfRange(this.featureNames[big], values[big]);
        return values.map((v, i) => (v == null ? this._null(i) : v));
      }
      const flat = flatten(features);
      if (flat.length !== n) throw this._wrongCount(flat.length);
      features = Object.fromEntries(this.featureNames.map((name, i) => [name, flat[i]]));
    }
    if (features === null || typeof features !== 'object') {
      throw new EdgeError('features must be a numeric array, a row or a jsonb object', { sqlstate: '42804' });
    }
    const missing = this.featureNames.filter((name) => !(name in features));
    if (missing.length) {
      throw new EdgeError(`features missing from the input: ${missing.join(', ')}`, {
        detail: `${this.describe()} takes: ${this.featureNames.join(', ')}.`,
        hint: "Name the row's columns or the object's keys after the features." });
    }
    return this.featureNames.map((name, i) => {
      const v = features[name];
      if (this.featureTypes[i] === 'text') {
        if (v == null) { this._null(i); return ''; }
        if (typeof v === 'object') this._number(name, v);
        return typeof v === 'string' ? v : typeof v === 'boolean' ? (v ? 'True' : 'False') : String(v);
      }
      return v == null ? this._null(i) : this._number(name, v);
    });
  }

  _feed(rows) {
    const { Tensor } = this.ort;
    const values = rows.map((r) => this._row(r));
    const n = this.featureNames.length, m = values.length;
    if (this.singleInput) return { [this.singleInput]: new Tensor('float32', Float32Array.from(values.flat()), [m, n]) };
    const feed = {};
    this.featureNames.forEach((name, j) => {
      const column = values.map((r) => r[j]);
      feed[name] = this.featureTypes[j] === 'text' ? new Tensor('string', column, [m, 1])
        : new Tensor('float32', Float32Array.from(column), [m, 1]);
    });
    return feed;
  }

  _classifier(fn) {
    if (this.task !== 'classification') {
      throw new EdgeError(`${this.describe()} is a regression model; ${fn} needs a classifier`, { hint: 'Use predict() for its values.', sqlstate: '0A000' });
    }
  }

  async _run(rows, names) {
    // every output, picked by name: onnxruntime-node 1.22 names a requested subset wrongly
    const out = await this.session.run(this._feed(rows));
    return names.map((k) => out[k]);
  }

  async _indices(rows) {
    if (this.labelOutput) return Array.from((await this._run(rows, [this.labelOutput]))[0].data, Number);
    const p = await this.predictProbaBatch(rows);
    return p.map((r) => r.indexOf(Math.max(...r)));
  }

  async predictBatch(rows) {
    if (this.task === 'classification') {
      return (await this._indices(rows)).map((i) => (this.labels && typeof this.labels[i] === 'number' ? this.labels[i] : typeof this.labels?.[i] === 'boolean' ? Number(this.labels[i]) : i));
    }
    return Array.from((await this._run(rows, [this.valueOutput]))[0].data, Number);
  }

  async predictProbaBatch(rows) {
    this._classifier('predict_proba');
    if (!this.probaOutput) throw new EdgeError('the model has no probability output', { hint: 'Use predict() for its labels.', sqlstate: '0A000' });
    const t = (await this._run(rows, [this.probaOutput]))[0];
    const k = t.dims[1];
    return Array.from({ length: t.dims[0] }, (_, i) => Array.from(t.data.slice(i * k, (i + 1) * k), Number));
  }

  async predictLabelBatch(rows) {
    this._classifier('predict_label');
    return (await this._indices(rows)).map((i) => {
      if (!this.labels || i < 0 || i >= this.labels.length) return String(i);
      const l = this.labels[i];
      return typeof l === 'boolean' ? String(l) : String(l);
    });
  }

  async predict(features) { return (await this.predictBatch([features]))[0]; }
  async predictProba(features) { return (await this.predictProbaBatch([features]))[0]; }
  async predictLabel(features) { return (await this.predictLabelBatch([features]))[0]; }
}

// -- over-the-air updates -----------------------------------------------------------
// A store keeps the last good bundle's bytes: memoryStore() in a browser (or your own over
// IndexedDB), fileStore(dir) in Node.js (written to a temporary file, then renamed).
export function memoryStore() {
  let saved = null;
  return { async read() { return saved; }, async write(bytes) { saved = bytes; } };
}

export async function fileStore(dir) {
  const fs = await import('node:fs/promises');
  const path = await import('node:path');
  await fs.mkdir(dir, { recursive: true });
  const file = path.join(dir, 'bundle.zip');
  return {
    async read() { try { return new Uint8Array(await fs.readFile(file)); } catch { return null; } },
    async write(bytes) {
      const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
      await fs.writeFile(tmp, bytes);
      await fs.rename(tmp, file);
    },
  };
}

// The project a pgmodels serve bundle URL names (/v2/models/{name}/bundle), or null.
export function projectFromUrl(url) {
  if (!url) return null;
  let path;
  try { path = new URL(url, globalThis.location?.href).pathname; } catch { return null; }
  const m = /\/v2\/models\/([^/]+)\/bundle\/?$/.exec(path);
  if (!m) return null;
  try { return decodeURIComponent(m[1]); } catch { return null; }
}

export const MAX_BYTES = 1 << 30;

// A device runs one project's model: `project`, or the one the URL names. A validly signed
// bundle of another project is refused (one server key signs every project's bundles).
// A signature does not prove a bundle is the newest, so the deployed model's bundle
// carries the server's deployment number (raised by every deploy and rollback): sync()
// refuses a bundle of a lower one than the device runs (an older bundle replayed).
export function checkNotOlder(manifest, running) {
  const have = running?.deployment;
  const offered = manifest.deployment;
  if (Number.isInteger(have) && !(Number.isInteger(offered) && offered >= have)) {
    throw new BundleError('the bundle is older than the one this device runs', {
      detail: `It is of deployment ${offered ?? '(none)'}; the device runs deployment ${have}. An older signed bundle is refused as an update, so that nobody can replay one to take the device back.`,
      hint: 'Deploy or roll back on the server (a new deployment is numbered higher).' });
  }
}

export class Device {
  constructor({ url, publicKey, ort, store = memoryStore(), token = null, fetch: f = null, project = null,
    maxBytes = MAX_BYTES }) {
    // a browser's fetch must be called as a function of the window, not as this.fetch
    Object.assign(this, { url, publicKey, ort, store, token, maxBytes, fetch: f ?? ((...args) => globalThis.fetch(...args)) });
    this.project = project ?? projectFromUrl(url);
    this.model = null;
    this.opened = false;
    this.queue = Promise.resolve(); // syncs of one device run one after another
  }

  // The stored bundle, verified again (offline start).
  async open() {
    this.opened = true;
    const bytes = await this.store.read();
    if (bytes) {
      try {
        this.model = await EdgeModel.fromBundle(bytes, { publicKey: this.publicKey, ort: this.ort, project: this.project });
        this.project ??= this.model.project;
      } catch { this.model = null; }
    }
    return this.model;
  }

  // One poll: {status: 'updated' | 'unchanged' | 'offline' | 'refused', model, error}.
  // Syncs run one at a time per device, so that one never checks against a model another
  // is replacing; the stored bundle is opened first if open() was not called.
  sync(url = this.url) {
    const run = this.queue.then(() => this.syncNow(url));
    this.queue = run.catch(() => {});
    return run;
  }

  async syncNow(url) {
    if (!this.opened) await this.open();
    const project = this.project ?? projectFromUrl(url);
    if (project == null) {
      throw new EdgeError('sync needs the project this device runs', { detail: `The URL ${url} does not name one (/v2/models/{name}/bundle).`, hint: 'Pass project to new Device().' });
    }
    const headers = { Accept: 'application/zip' };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    if (this.model?.etag) headers['If-None-Match'] = `"${this.model.etag}"`;
    let response, bytes;
    try {
      response = await this.fetch(url, { headers, cache: 'no-store' });
      if (response.status === 304) return { status: 'unchanged', model: this.model, httpStatus: 304 };
      const declared = response.headers.get('content-length');
      if (declared !== null && Number(declared) > this.maxBytes) {
        return { status: 'refused', model: this.model, httpStatus: response.status, error: `the bundle is larger than ${this.maxBytes} bytes (Content-Length ${declared})` };
      }
      bytes = new Uint8Array(await response.arrayBuffer());
      if (bytes.length > this.maxBytes) {
        return { status: 'refused', model: this.model, httpStatus: response.status, error: `the bundle is larger than ${this.maxBytes} bytes` };
      }
    } catch (e) {
      return { status: 'offline', model: this.model, error: String(e) };
    }
    if (response.status !== 200) {
      return { status: response.status >= 500 ? 'offline' : 'refused', model: this.model, httpStatus: response.status,
        error: new TextDecoder().decode(bytes).slice(0, 300) };
    }
    const length = response.headers.get('content-length');
    if (length !== null && Number(length) !== bytes.length) {
      return { status: 'refused', model: this.model, httpStatus: 200, error: `truncated download: ${bytes.length} of ${length} bytes` };
    }
    try {
      const model = await EdgeModel.fromBundle(bytes, { publicKey: this.publicKey, ort: this.ort, project });
      if (this.model) checkNotOlder(model.manifest, this.model.manifest);
      await this.store.write(bytes);
      this.project = project;
      this.model = model;
      return { status: 'updated', model, httpStatus: 200 };
    } catch (e) {
      return { status: 'refused', model: this.model, httpStatus: 200, error: e.message };
    }
  }
}

// fm2onnx serving client for JavaScript: onnxruntime-node (native) and onnxruntime-web (WebAssembly,
// in a browser or under Node). This is the code the README's "Serving from Node.js and the browser"
// shows, and the code runtime_tests/test_js_client.py runs against fixtures written by Python.

export const SERVING_SCHEMA_VERSION = '1';
export const RAW_INPUT_VERSION = '1';

// ---------------------------------------------------------------------------------- metadata

// onnxruntime's JavaScript API does not expose a model's metadata_props, so read them from the
// protobuf: ModelProto field 14, repeated StringStringEntryProto {1: key, 2: value}.
export function readMetadata(modelBytes) {
  const bytes = modelBytes instanceof Uint8Array ? modelBytes : new Uint8Array(modelBytes);
  if (isOrtFormat(bytes)) return readOrtMetadata(bytes);
  const text = new TextDecoder();
  const props = {};
  for (const [field, body] of protobufFields(bytes, 0, bytes.length)) {
    if (field !== 14) continue;
    const entry = {};
    for (const [f, value] of protobufFields(bytes, body.start, body.end)) {
      entry[f] = text.decode(bytes.subarray(value.start, value.end));
    }
    props[entry[1]] = entry[2] ?? '';
  }
  return props;
}

// An ORT-format file (`fm2onnx package`) is a FlatBuffer with the identifier "ORTM" after the root offset.
function isOrtFormat(bytes) {
  return bytes.length >= 8 && new TextDecoder().decode(bytes.subarray(4, 8)) === 'ORTM';
}

// Its metadata_props, read along onnxruntime's ort.fbs: the root InferenceSession's model (field 1),
// the Model's metadata_props (field 9), each a StringStringEntry { key, value }.
function readOrtMetadata(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const u32 = (pos) => view.getUint32(pos, true);
  const field = (table, index) => { // the position of a table's field, or 0 when absent
    const vtable = table - view.getInt32(table, true);
    const slot = 4 + 2 * index;
    const offset = slot < view.getUint16(vtable, true) ? view.getUint16(vtable + slot, true) : 0;
    return offset && table + offset;
  };
  const follow = (pos) => pos + u32(pos);
  const string = (pos) => (pos ? new TextDecoder().decode(bytes.subarray(follow(pos) + 4, follow(pos) + 4 + u32(follow(pos)))) : '');
  const model = field(follow(0), 1);
  const props = {};
  const entries = model && field(follow(model), 9);
  if (!entries) return props;
  const vector = follow(entries);
  for (let j = 0; j < u32(vector); j += 1) {
    const entry = follow(vector + 4 + 4 * j);
    props[string(field(entry, 0))] = string(field(entry, 1));
  }
  return props;
}

function* protobufFields(bytes, start, end) {
  let pos = start;
  const varint = () => {
    let value = 0;
    let scale = 1;
    for (;;) {
      const byte = bytes[pos++];
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) return value;
      scale *= 128;
    }
  };
  while (pos < end) {
    const key = varint();
    const field = Math.floor(key / 8);
    const wireType = key % 8;
    if (wireType === 0) varint();
    else if (wireType === 1) pos += 8;
    else if (wireType === 5) pos += 4;
    else if (wireType === 2) {
      const length = varint();
      yield [field, { start: pos, end: pos + length }];
      pos += length;
    } else throw new Error(`unsupported protobuf wire type ${wireType} in the model file`);
  }
}

// Refuse a model this client was not written for, before serving anything with it.
export function checkMetadata(meta) {
  if (meta.serving_schema_version !== SERVING_SCHEMA_VERSION) {
    throw new Error(`serving_schema_version ${meta.serving_schema_version}: this client speaks ${SERVING_SCHEMA_VERSION}`);
  }
  if (meta.input === 'raw' && meta.raw_input_version !== RAW_INPUT_VERSION) {
    throw new Error(`raw_input_version ${meta.raw_input_version}: this client speaks ${RAW_INPUT_VERSION}`);
  }
  const contract = {
    kind: meta.model_kind,
    form: meta.form,
    input: meta.input ?? 'ids',
    fieldNames: JSON.parse(meta.field_names),
    vocabSizes: JSON.parse(meta.vocab_sizes),
  };
  if (contract.input === 'raw') {
    contract.numericColumns = JSON.parse(meta.numeric_columns);
    contract.categoricalColumns = JSON.parse(meta.categorical_columns);
  }
  if (contract.form === 'request') Object.assign(contract, requestRoles(meta, contract.fieldNames));
  return contract;
}

// A request graph's field_roles: "context" or "item" per field, in field_names order. Its inputs take
// the context fields' ids and the item fields' ids, each in that order.
function requestRoles(meta, fieldNames) {
  let roles;
  try {
    roles = JSON.parse(meta.field_roles);
  } catch {
    throw new Error(`form request without a readable field_roles in its metadata: ${meta.field_roles}`);
  }
  if (!Array.isArray(roles) || roles.length !== fieldNames.length
      || !roles.every((role) => role === 'context' || role === 'item')) {
    throw new Error(`field_roles ${meta.field_roles}: expected "context" or "item" for each of the `
      + `${fieldNames.length} fields`);
  }
  const named = (role) => fieldNames.filter((_, f) => roles[f] === role);
  return { fieldRoles: roles, contextFields: named('context'), itemFields: named('item') };
}

// ---------------------------------------------------------------------------------- loading

// source: { path } -- onnxruntime-node reads the file, and its external-data sidecar beside it;
//         { bytes, externalData? } -- onnxruntime-web (or bytes already in memory): externalData is
//         [{ path: '<model>.onnx.data', data: Uint8Array }], path as written in the model.
export async function loadModel(ort, source, { threads = 1 } = {}) {
  const bytes = source.bytes ?? await (await import('node:fs/promises')).readFile(source.path);
  const meta = readMetadata(bytes);
  const contract = checkMetadata(meta);
  const options = {
    graphOptimizationLevel: 'all',
    intraOpNumThreads: threads, // onnxruntime-node; onnxruntime-web takes ort.env.wasm.numThreads
    interOpNumThreads: 1,
    executionMode: 'sequential',
  };
  if (source.externalData) options.externalData = source.externalData;
  const session = await ort.InferenceSession.create(source.path ?? source.bytes, options);
  return { ort, session, meta, contract };
}

// ---------------------------------------------------------------------------------- inputs

// ids: one array of field ids per row, in field_names order (numbers or BigInts). Ids outside a
// field's vocabulary, negative included, read the unknown row 0 inside the graph.
export function idFeeds(model, rows) {
  if (model.contract.form === 'request') {
    throw new Error('feature_ids: a request graph takes context_ids and candidate_ids: use requestFeeds');
  }
  return { feature_ids: int64Tensor(model, 'feature_ids', rows, model.contract.fieldNames, 'row') };
}

// A request graph: the ids of one context (contextRow: the contract's contextFields, in that order)
// and of N candidates (candidateRows: N arrays of the itemFields' ids; N = 0 answers with no rows).
// Row i of the outputs scores the full row (context, candidate i).
export function requestFeeds(model, contextRow, candidateRows) {
  const { form, contextFields, itemFields } = model.contract;
  if (form !== 'request') {
    throw new Error(`context_ids: the model is not a request graph (form ${form}): use idFeeds`);
  }
  return {
    context_ids: int64Tensor(model, 'context_ids', [contextRow], contextFields, 'context'),
    candidate_ids: int64Tensor(model, 'candidate_ids', candidateRows, itemFields, 'candidate'),
  };
}

// rows of ids (numbers or BigInts) -> int64 [rows, fields]; a row of the wrong length or an id that
// is not an integer is refused with the input's name, the row and the field.
function int64Tensor(model, input, rows, fields, what) {
  const n = fields.length;
  const data = new BigInt64Array(rows.length * n);
  rows.forEach((row, r) => {
    const which = what === 'context' ? 'the context' : `${what} ${r}`;
    if (row.length !== n) {
      throw new Error(`${input}: ${which} has ${row.length} ids, the model takes ${n} (${fields.join(', ')})`);
    }
    row.forEach((id, f) => { data[r * n + f] = int64Id(id, () => `${input}: ${which}, field ${fields[f]}`); });
  });
  return new model.ort.Tensor('int64', data, [rows.length, n]);
}

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

// An integer id as int64. One past int64's range is past every vocabulary, so it becomes -1, which
// reads the unknown row as such ids do inside the graph; a BigInt64Array would wrap it around to
// another feature's row.
function int64Id(id, where) {
  if (!(typeof id === 'bigint' || Number.isInteger(id))) {
    throw new Error(`${where()}: id ${String(id)} is not an integer`);
  }
  const value = BigInt(id);
  return value < INT64_MIN || value > INT64_MAX ? -1n : value;
}

// raw: one object per row, { column: value }: numbers for numeric_columns (null, undefined or NaN
// = missing), strings for categorical_columns ('' or null = missing; Avazu's hour as 'YYMMDDHH').
export function rawFeeds(model, rows) {
  const { numericColumns, categoricalColumns } = model.contract;
  const feeds = {};
  if (numericColumns.length) {
    const data = new Float64Array(rows.length * numericColumns.length);
    rows.forEach((row, r) => numericColumns.forEach((column, c) => {
      const value = row[column];
      data[r * numericColumns.length + c] = value === null || value === undefined ? NaN : Number(value);
    }));
    feeds.numeric = new model.ort.Tensor('float64', data, [rows.length, numericColumns.length]);
  }
  if (categoricalColumns.length) {
    const data = [];
    for (const row of rows) for (const column of categoricalColumns) data.push(row[column] == null ? '' : String(row[column]));
    feeds.categorical = new model.ort.Tensor('string', data, [rows.length, categoricalColumns.length]);
  }
  return feeds;
}

// ---------------------------------------------------------------------------------- outputs

// -> { probability: Float32Array, logit: Float32Array, featureIds?: BigInt64Array (raw graphs) }
export async function predict(model, feeds) {
  const out = await model.session.run(feeds);
  const result = { probability: out.probability.data, logit: out.logit.data };
  if (out.feature_ids) result.featureIds = out.feature_ids.data;
  return result;
}

// Parity of one runtime against the fixtures that runtime_tests/test_js_client.py wrote from
// Python's onnxruntime: manifest.json lists the cases, each a model, its rows and the outputs
// expected (for raw graphs: the id graph's outputs on the Python preprocessing of the same rows; for
// request graphs: the id graph's outputs on the full rows of all the requests, concatenated).

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { idFeeds, loadModel, predict, rawFeeds, requestFeeds } from '../client.mjs';

// the tolerance of `fm2onnx check`: |Δ| <= tol + tol·|expected|; or |Δ| <= tol ({ relative: false })
function assertClose(got, want, tolerance, what, { relative = true } = {}) {
  assert.equal(got.length, want.length, `${what}: ${got.length} values, expected ${want.length}`);
  for (let i = 0; i < want.length; i++) {
    const limit = tolerance + (relative ? tolerance * Math.abs(want[i]) : 0);
    if (!(Math.abs(got[i] - want[i]) <= limit)) {
      assert.fail(`${what}[${i}]: ${got[i]}, expected ${want[i]} (tolerance ${limit.toExponential(2)})`);
    }
  }
}

// JSON has no NaN or infinities: the fixtures spell them as strings
const number = (v) => (typeof v === 'string' ? Number(v) : v);

function rawRows(testCase) {
  return testCase.rows.map((row) => {
    const out = { ...row };
    for (const column of testCase.numeric_columns) out[column] = number(row[column]);
    return out;
  });
}

async function openCase(ort, backend, dir, testCase) {
  const path = join(dir, testCase.model);
  if (backend === 'node') return loadModel(ort, { path });
  const externalData = testCase.external_data
    ? [{ path: testCase.external_data, data: readFileSync(join(dir, testCase.external_data)) }]
    : undefined;
  return loadModel(ort, { bytes: readFileSync(path), externalData });
}

export async function runParity(backend) {
  const dir = process.env.FM2ONNX_JS_FIXTURES;
  assert.ok(dir, 'FM2ONNX_JS_FIXTURES must name the fixtures directory (runtime_tests/test_js_client.py sets it)');
  const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'));
  const ort = (await import(backend === 'node' ? 'onnxruntime-node' : 'onnxruntime-web')).default;
  if (backend === 'web') ort.env.wasm.numThreads = 1;

  for (const testCase of manifest.cases) {
    await test(`${backend}: ${testCase.name}`, async () => {
      const model = await openCase(ort, backend, dir, testCase);
      if (testCase.form === 'request') return checkRequests(model, testCase);
      assert.equal(model.contract.input, testCase.input);
      assert.deepEqual(model.contract.fieldNames, testCase.field_names);
      const feeds = testCase.input === 'raw' ? rawFeeds(model, rawRows(testCase)) : idFeeds(model, testCase.rows);
      const got = await predict(model, feeds);
      if (testCase.input === 'raw') {
        assert.deepEqual(Array.from(got.featureIds, Number), testCase.expected.feature_ids.flat(),
          'feature ids differ from the Python preprocessing');
      }
      assertClose(got.logit, testCase.expected.logit, manifest.tolerance, 'logit');
      assertClose(got.probability, testCase.expected.probability, manifest.tolerance, 'probability');
      if (testCase.input === 'ids') await checkOutOfRangeIds(model);
    });
  }
}

// Negative and past-the-vocabulary ids read row 0: such a row scores exactly as the all-zeros row.
// One row per run: rows of one batch may take different SIMD paths and differ in the last bits.
async function checkOutOfRangeIds(model) {
  const sizes = model.contract.vocabSizes;
  const zeros = await predict(model, idFeeds(model, [sizes.map(() => 0)]));
  const past = [-1, (v) => v, (v) => v + 2 ** 40, -(2 ** 40), 2n ** 64n + 1n, -(2n ** 70n)];
  const ids = sizes.map((v, f) => { const id = past[f % past.length]; return typeof id === 'function' ? id(v) : id; });
  const outside = await predict(model, idFeeds(model, [ids]));
  assert.equal(outside.logit[0], zeros.logit[0], 'out-of-range ids do not read the unknown row');
  assert.equal(outside.probability[0], zeros.probability[0]);
  const field = model.contract.fieldNames[1];
  for (const bad of [null, NaN, 1.5, 'x']) {
    const row = sizes.map(() => 0);
    row[1] = bad;
    assert.throws(() => idFeeds(model, [row]), { message: `feature_ids: row 0, field ${field}: id ${String(bad)} is not an integer` });
  }
}

// One request per run, each answering with one row per candidate; the rows of all the requests
// against the full rows' expected outputs. Then the refusals of a wrong field count.
async function checkRequests(model, testCase) {
  assert.equal(model.contract.form, 'request');
  assert.deepEqual(model.contract.fieldNames, testCase.field_names);
  assert.deepEqual(model.contract.contextFields, testCase.context_fields);
  assert.deepEqual(model.contract.itemFields, testCase.item_fields);
  const logit = [];
  const probability = [];
  for (const { context, candidates } of testCase.requests) {
    const got = await predict(model, requestFeeds(model, context, candidates));
    assert.equal(got.logit.length, candidates.length, `a request of ${candidates.length} candidates`);
    logit.push(...got.logit);
    probability.push(...got.probability);
  }
  assert.ok(testCase.requests.some((r) => r.candidates.length === 0), 'the cases include an empty request');
  assertClose(logit, testCase.expected.logit, testCase.tolerance, 'logit', { relative: false });
  assertClose(probability, testCase.expected.probability, testCase.tolerance, 'probability', { relative: false });

  const [{ context, candidates }] = testCase.requests.filter((r) => r.candidates.length > 1);
  const [nc, ni] = [testCase.context_fields.length, testCase.item_fields.length];
  const named = (fields) => `(${fields.join(', ')})`;
  assert.throws(() => requestFeeds(model, context.slice(1), candidates),
    { message: `context_ids: the context has ${nc - 1} ids, the model takes ${nc} ${named(testCase.context_fields)}` });
  assert.throws(() => requestFeeds(model, context, [candidates[0], [...candidates[1], 0]]),
    { message: `candidate_ids: candidate 1 has ${ni + 1} ids, the model takes ${ni} ${named(testCase.item_fields)}` });
  assert.throws(() => idFeeds(model, [testCase.field_names.map(() => 0)]),
    /^Error: feature_ids: a request graph takes/);
}

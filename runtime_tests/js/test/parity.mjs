// Parity of one runtime against the fixtures that runtime_tests/test_js_client.py wrote from
// Python's onnxruntime: manifest.json lists the cases, each a model, its rows and the outputs
// expected (for raw graphs: the id graph's outputs on the Python preprocessing of the same rows).

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { idFeeds, loadModel, predict, rawFeeds } from '../client.mjs';

// the tolerance of `fm2onnx check`: |Δ| <= tol + tol·|expected|
function assertClose(got, want, tolerance, what) {
  assert.equal(got.length, want.length, `${what}: ${got.length} values, expected ${want.length}`);
  for (let i = 0; i < want.length; i++) {
    const limit = tolerance + tolerance * Math.abs(want[i]);
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
  const outside = await predict(model, idFeeds(model, [sizes.map((v, f) => [-1, v, v + 2 ** 40, -(2 ** 40)][f % 4])]));
  assert.equal(outside.logit[0], zeros.logit[0], 'out-of-range ids do not read the unknown row');
  assert.equal(outside.probability[0], zeros.probability[0]);
}

// Scores the cases of a manifest with the fm2onnx JavaScript client on onnxruntime-web, then puts
// the outputs into <pre id=result> as JSON and sets document.title to "fm2onnx: done" (or
// "fm2onnx: error", with the message in the JSON). runtime_tests/test_browser.py reads both.
//
// manifest: { cases: [{ name, model, externalData?, batches: [[[id, ...], ...], ...] }] }; URLs
// relative to the manifest; each batch is one run, so a cached graph's batch-size branches all run.

import * as ort from 'onnxruntime-web';

import { idFeeds, loadModel, predict } from '../js/client.mjs';

// one thread: more need SharedArrayBuffer, which only a cross-origin-isolated page has
ort.env.wasm.numThreads = 1;

async function fetchOk(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response;
}

const bytesOf = async (url) => new Uint8Array(await (await fetchOk(url)).arrayBuffer());

// the sidecar goes in under the name the model records for it, i.e. its file name
async function openCase(base, testCase) {
  const bytes = await bytesOf(new URL(testCase.model, base));
  const externalData = testCase.externalData
    ? [{ path: testCase.externalData.split('/').pop(), data: await bytesOf(new URL(testCase.externalData, base)) }]
    : undefined;
  return loadModel(ort, { bytes, externalData });
}

async function scoreCase(base, testCase) {
  const model = await openCase(base, testCase);
  const logit = [];
  const probability = [];
  for (const batch of testCase.batches) {
    const out = await predict(model, idFeeds(model, batch));
    logit.push(...out.logit);
    probability.push(...out.probability);
  }
  return { name: testCase.name, fieldNames: model.contract.fieldNames, logit, probability };
}

async function main() {
  const base = new URL(new URLSearchParams(location.search).get('manifest') ?? '../fixtures/manifest.json', location.href);
  const manifest = await (await fetchOk(base)).json();
  const cases = [];
  for (const testCase of manifest.cases) cases.push(await scoreCase(base, testCase));
  return { ortVersion: ort.env.versions.web, userAgent: navigator.userAgent, cases };
}

function report(title, result) {
  document.getElementById('result').textContent = JSON.stringify(result);
  document.title = title;
}

main().then((result) => report('fm2onnx: done', result),
  (error) => report('fm2onnx: error', { error: String(error?.stack ?? error) }));

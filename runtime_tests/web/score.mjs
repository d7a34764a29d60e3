// Scores the cases of a manifest with the fm2onnx JavaScript client on onnxruntime-web, then puts
// the outputs into <pre id=result> as JSON and sets document.title to "fm2onnx: done" (or
// "fm2onnx: error", with the message in the JSON). runtime_tests/test_browser.py reads both.
//
// manifest: { cases: [{ name, model, externalData?, batches: [[[id, ...], ...], ...] }] }; URLs
// relative to the manifest; each batch is one run, so a cached graph's batch-size branches all run.
// A request graph's case has requests: [{ context: [id, ...], candidates: [[id, ...], ...] }]
// instead of batches, one run each; its result adds the message refusing a context one id short.

import * as ort from 'onnxruntime-web';

import { idFeeds, loadModel, predict, requestFeeds } from '../js/client.mjs';

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
  const runs = testCase.requests
    ? testCase.requests.map(({ context, candidates }) => requestFeeds(model, context, candidates))
    : testCase.batches.map((batch) => idFeeds(model, batch));
  for (const feeds of runs) {
    const out = await predict(model, feeds);
    logit.push(...out.logit);
    probability.push(...out.probability);
  }
  const result = { name: testCase.name, fieldNames: model.contract.fieldNames, logit, probability };
  if (testCase.requests) {
    result.contextFields = model.contract.contextFields;
    const [{ context, candidates }] = testCase.requests;
    try {
      requestFeeds(model, context.slice(1), candidates);
    } catch (error) {
      result.refusal = error.message;
    }
  }
  return result;
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

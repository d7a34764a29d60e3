// Latency of one fm2onnx model through the client (not a test): median milliseconds per run.
//
//   node bench.mjs model.onnx [--backend node|web] [--batch 1,1024] [--threads 1,2] [--runs 200]
//
// Id graphs get random in-vocabulary ids; raw graphs get random integers (10% missing) and random
// 8-hex strings (mostly unseen), which cost the lookups as much as real values.

import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

import { idFeeds, loadModel, predict, rawFeeds } from './client.mjs';

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
const path = args[0];
const backend = option('backend', 'node');
const batches = option('batch', '1,1024').split(',').map(Number);
const threadCounts = option('threads', '1,2').split(',').map(Number);
const runs = Number(option('runs', '200'));

const ort = (await import(backend === 'node' ? 'onnxruntime-node' : 'onnxruntime-web')).default;

function randomRows(model, n) {
  const { contract } = model;
  if (contract.input === 'ids') {
    return Array.from({ length: n }, () => contract.vocabSizes.map((v) => Math.floor(Math.random() * v)));
  }
  return Array.from({ length: n }, () => {
    const row = {};
    for (const c of contract.numericColumns) row[c] = Math.random() < 0.1 ? NaN : Math.floor(Math.random() * 5000);
    for (const c of contract.categoricalColumns) row[c] = Math.floor(Math.random() * 2 ** 32).toString(16).padStart(8, '0');
    return row;
  });
}

for (const threads of threadCounts) {
  if (backend === 'web') ort.env.wasm.numThreads = threads;
  const source = backend === 'node' ? { path } : { bytes: readFileSync(path) };
  const model = await loadModel(ort, source, { threads });
  for (const batch of batches) {
    const rows = randomRows(model, batch);
    const feeds = model.contract.input === 'ids' ? idFeeds(model, rows) : rawFeeds(model, rows);
    for (let i = 0; i < 10; i++) await predict(model, feeds);
    const times = [];
    for (let i = 0; i < runs; i++) {
      const start = performance.now();
      await predict(model, feeds);
      times.push(performance.now() - start);
    }
    times.sort((a, b) => a - b);
    const median = times[Math.floor(times.length / 2)];
    console.log(`${backend} threads=${threads} batch=${batch}: ${median.toFixed(3)} ms median, ` +
      `${Math.round((batch / median) * 1000).toLocaleString('en-US')} rows/s`);
  }
  await model.session.release();
}

// onnxruntime-node (native CPU). Each runtime runs in its own process: node --test gives every file one.
import { runParity } from './parity.mjs';

await runParity('node');

// onnxruntime-web's WebAssembly backend, as a browser runs it, here under Node.
import { runParity } from './parity.mjs';

await runParity('web');

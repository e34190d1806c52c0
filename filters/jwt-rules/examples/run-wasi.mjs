// Runs a wasm32-wasip1 program in Node's V8 (the engine Envoy embeds):
//   node run-wasi.mjs program.wasm [args...]
// Non-WASI imports (proxy-wasm host calls linked in through filter-kit) are stubs that trap.
import { readFile } from 'node:fs/promises';
import { WASI } from 'node:wasi';
import { argv, env } from 'node:process';

const wasi = new WASI({ version: 'preview1', args: argv.slice(2), env });
const module = await WebAssembly.compile(await readFile(argv[2]));
const imports = wasi.getImportObject();
for (const i of WebAssembly.Module.imports(module)) {
  if (i.kind === 'function' && !(imports[i.module] && i.name in imports[i.module])) {
    imports[i.module] ??= {};
    imports[i.module][i.name] = () => { throw new Error(`${i.module}.${i.name} is a stub`); };
  }
}
wasi.start(await WebAssembly.instantiate(module, imports));

// Vite build of the dashboard: one page, everything bundled, output served by Flask.
//
// `npm run build` writes to ../serving/static (index.html + assets/*), which the
// serving app (darkpool serve) returns at / and /assets/*. Nothing is loaded from
// the internet at run time: Tailwind, Chart.js, kepler.gl (React/Redux, deck.gl,
// maplibre-gl) and the US state outlines (us-atlas) are all bundled here.
import tailwindcss from '@tailwindcss/vite';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

// kepler.gl's packages each carry a nested copy of react-palm (its task runner);
// tasks created by one copy are not run by another's middleware, so bundle one.
const REACT_PALM = fileURLToPath(new URL('./node_modules/@kepler.gl/reducers/node_modules/react-palm', import.meta.url));

const MESHOPT_JS_DECODER = fileURLToPath(
  new URL('./node_modules/meshoptimizer/meshopt_decoder_reference.js', import.meta.url),
);

export default defineConfig({
  plugins: [tailwindcss()],
  resolve: {
    alias: [
      { find: /^react-palm(\/.*)?$/, replacement: `${REACT_PALM}$1` },
      // meshoptimizer's WebAssembly decoder compiles itself as soon as it is
      // imported (by @loaders.gl/gltf inside kepler.gl's layers), which the CSP
      // (script-src 'self', no 'wasm-unsafe-eval') forbids. The same package's
      // pure-JS reference decoder is its documented drop-in replacement; the
      // dashboard never loads glTF models, so its speed does not matter.
      { find: /^meshoptimizer\/decoder$/, replacement: MESHOPT_JS_DECODER },
    ],
  },
  // kepler.gl and some of its dependencies still read Node-style globals.
  define: {
    global: 'globalThis',
    'process.env.NODE_ENV': JSON.stringify(process.env.NODE_ENV || 'production'),
  },
  build: {
    outDir: '../serving/static',
    emptyOutDir: true,
    sourcemap: false,
    chunkSizeWarningLimit: 8000,
  },
  server: {
    // `npm run dev` proxies the API to a running `darkpool serve` (default port 5001).
    proxy: {
      '/api': process.env.DARKPOOL_API || 'http://127.0.0.1:5001',
      '/metrics': process.env.DARKPOOL_API || 'http://127.0.0.1:5001',
    },
  },
});

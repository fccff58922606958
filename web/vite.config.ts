import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

// The gateway serves web/dist at `/` under a strict CSP (default-src 'self'): nothing inline.
// `npm run dev` and `npm run preview` serve on :5173 and pass the API paths to the gateway at
// GETLOOD_URL (default http://127.0.0.1:8080), so the app is same-origin there as in production.
const gateway = process.env.GETLOOD_URL ?? 'http://127.0.0.1:8080';
const proxy = Object.fromEntries(
  ['/api', '/v1', '/graphql', '/openapi.json', '/.well-known'].map((p) => [p, { target: gateway, changeOrigin: true }]),
);
const socketProxy = { '/ws': { target: gateway.replace(/^http/, 'ws'), ws: true, changeOrigin: true } };
// `npm run preview` answers with a policy stricter than the gateway's (no inline style either),
// so the browser tests catch anything the app would need to relax it for.
const strictCsp =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; font-src 'self' data:; " +
  "connect-src 'self' ws://127.0.0.1:5173; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'";

export default defineConfig({
  plugins: [react()],
  build: {
    target: 'es2022',
    // The modulepreload polyfill would be an inline script in index.html; every browser this
    // app supports has modulepreload.
    modulePreload: { polyfill: false },
    sourcemap: false,
    assetsInlineLimit: 0,
  },
  server: { port: 5173, strictPort: true, host: '127.0.0.1', proxy: { ...proxy, ...socketProxy } },
  preview: { port: 5173, strictPort: true, host: '127.0.0.1', proxy: { ...proxy, ...socketProxy }, headers: { 'Content-Security-Policy': strictCsp } },
});

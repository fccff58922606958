import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

// The gateway serves web/dist at `/` under a strict CSP (default-src 'self'): nothing inline.
// `npm run dev` serves on :5173, the origin `getlood dev` allows for CORS, and talks to the
// gateway named by GETLOOD_URL (default http://127.0.0.1:8080) directly.
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
  server: { port: 5173, strictPort: true, host: '127.0.0.1' },
  preview: { port: 5173, strictPort: true, host: '127.0.0.1' },
});

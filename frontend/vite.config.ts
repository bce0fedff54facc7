/// <reference types="vitest/config" />
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

// Django serves the built assets through whitenoise under /static/studio/
// and serves dist/index.html itself for every URL under /studio/.
// The dev server keeps base '/' so that http://localhost:5173/studio/... works
// with SPA fallback; /api is proxied to the Django dev server.
export default defineConfig(({ command }) => ({
  base: command === 'build' ? '/static/studio/' : '/',
  plugins: [react()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    // Hashed file names come from content only, so identical sources give
    // identical output. Django reads dist/index.html directly; no manifest.
    sourcemap: false,
  },
  server: {
    proxy: {
      '/api': { target: 'http://127.0.0.1:8000', changeOrigin: false },
    },
  },
  test: {
    environment: 'jsdom',
    setupFiles: ['./src/test/setup.ts'],
    include: ['src/**/*.test.{ts,tsx}'],
    restoreMocks: true,
    testTimeout: 20000,
  },
}));

import { defineConfig } from 'vitest/config';

export default defineConfig({
  esbuild: {
    jsx: 'transform',
    jsxFactory: 'React.createElement',
    jsxFragment: 'React.Fragment',
  },
  test: {
    globals: true,
    environment: 'jsdom',
    setupFiles: ['./test/setup.ts'],
    globalSetup: ['./test/global-setup.ts'],
    include: ['src/**/*.test.{ts,tsx}', 'test/**/*.test.{ts,tsx}'],
    // @grafana/ui is large; the first import in each worker dominates the run time.
    testTimeout: 30_000,
    hookTimeout: 120_000,
    pool: 'forks',
    server: {
      deps: {
        // @grafana/ui imports CSS files (uPlot, rc-*) from its ESM build: let Vite transform it.
        inline: [/@grafana\//],
      },
    },
    reporters: ['default'],
  },
});

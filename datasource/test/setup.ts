import '@testing-library/jest-dom/vitest';

// jsdom lacks a few browser APIs @grafana/ui touches when rendering.
// test/browser.test.ts runs in node (the browser is a real Chromium): no window there.
const jsdom = typeof window !== 'undefined';

if (jsdom && !window.matchMedia) {
  Object.defineProperty(window, 'matchMedia', {
    writable: true,
    value: (query: string) => ({
      matches: false,
      media: query,
      onchange: null,
      addListener: () => {},
      removeListener: () => {},
      addEventListener: () => {},
      removeEventListener: () => {},
      dispatchEvent: () => false,
    }),
  });
}
if (jsdom && !('ResizeObserver' in window)) {
  class ResizeObserver {
    observe() {}
    unobserve() {}
    disconnect() {}
  }
  Object.defineProperty(window, 'ResizeObserver', { writable: true, value: ResizeObserver });
  Object.defineProperty(globalThis, 'ResizeObserver', { writable: true, value: ResizeObserver });
}

// @grafana/ui's Icon fetches its SVGs over HTTP with react-inlinesvg, which jsdom cannot serve
// and which updates state outside act(): draw an empty <svg> instead.
vi.mock('react-inlinesvg', async () => {
  const React = await import('react');
  const InlineSVG = ({ title }: { title?: string }) =>
    React.createElement('svg', { 'data-testid': 'icon', 'aria-label': title });
  return { default: InlineSVG, __esModule: true };
});

// @grafana/scenes (used by the interpolation tests) creates an IntersectionObserver when imported.
if (jsdom && !('IntersectionObserver' in window)) {
  class IntersectionObserver {
    observe() {}
    unobserve() {}
    disconnect() {}
    takeRecords() {
      return [];
    }
  }
  Object.defineProperty(window, 'IntersectionObserver', { writable: true, value: IntersectionObserver });
  Object.defineProperty(globalThis, 'IntersectionObserver', { writable: true, value: IntersectionObserver });
}

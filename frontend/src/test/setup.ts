import { cleanup } from '@testing-library/react';
import { afterEach, vi } from 'vitest';

export function clearCookies() {
  for (const part of document.cookie.split(';')) {
    const name = part.split('=')[0]?.trim();
    if (name) document.cookie = `${name}=; expires=Thu, 01 Jan 1970 00:00:00 GMT; path=/`;
  }
}

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
  clearCookies();
  window.localStorage.clear();
  vi.useRealTimers();
  window.history.replaceState(null, '', '/');
});

import { cleanup, configure } from '@testing-library/react';
import { afterEach, vi } from 'vitest';

// CI machines have 2 cores shared with the Python suite: wait for UI updates generously
// (a wait ends as soon as its condition holds, so fast machines lose nothing).
configure({ asyncUtilTimeout: 5000 });

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

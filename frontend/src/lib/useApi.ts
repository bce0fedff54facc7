import { useCallback, useEffect, useEffectEvent, useState } from 'react';
import { ApiError } from '../api/client';

export type Loadable<T> =
  | { status: 'loading' }
  | { status: 'error'; error: ApiError }
  | { status: 'ready'; data: T };

export function asApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  return new ApiError(0, 'client_error', err instanceof Error ? err.message : String(err));
}

export function isAbort(err: unknown): boolean {
  return err instanceof DOMException && err.name === 'AbortError';
}

/**
 * Load data with `fetcher(signal)` whenever `deps` change; `reload()` fetches again and
 * `setData` replaces the loaded value (after a mutation). Aborts on unmount.
 */
export function useApi<T>(fetcher: (signal: AbortSignal) => Promise<T>, deps: readonly unknown[]) {
  const [state, setState] = useState<Loadable<T>>({ status: 'loading' });
  const [version, setVersion] = useState(0);
  // Always call the latest `fetcher` without making it an effect dependency.
  const fetchLatest = useEffectEvent((signal: AbortSignal) => fetcher(signal));

  // When the deps or the version change, go back to 'loading' in this same render (adjusting
  // state while rendering, see https://react.dev/learn/you-might-not-need-an-effect) instead of
  // from the effect; a reload keeps data that is already shown.
  const key = [...deps, version];
  const [loadedKey, setLoadedKey] = useState(key);
  if (key.length !== loadedKey.length || key.some((value, i) => !Object.is(value, loadedKey[i]))) {
    setLoadedKey(key);
    setState((prev) => (prev.status === 'ready' && version > 0 ? prev : { status: 'loading' }));
  }

  useEffect(() => {
    const controller = new AbortController();
    fetchLatest(controller.signal)
      .then((data) => {
        if (!controller.signal.aborted) setState({ status: 'ready', data });
      })
      .catch((err: unknown) => {
        if (controller.signal.aborted || isAbort(err)) return;
        setState({ status: 'error', error: asApiError(err) });
      });
    return () => controller.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, version]);

  const reload = useCallback(() => setVersion((v) => v + 1), []);
  const setData = useCallback((data: T) => setState({ status: 'ready', data }), []);
  return { state, reload, setData };
}

/**
 * Call `tick(signal)` now and then every `intervalMs` while `active`; the next tick is scheduled
 * after the previous one settles, so slow responses never pile up.
 */
export function usePolling(
  tick: (signal: AbortSignal) => Promise<unknown>,
  intervalMs: number,
  active: boolean,
  deps: readonly unknown[] = [],
  immediate = true,
) {
  // Always call the latest `tick` without making it an effect dependency.
  const tickLatest = useEffectEvent((signal: AbortSignal) => tick(signal));
  useEffect(() => {
    if (!active) return;
    const controller = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const run = async () => {
      try {
        await tickLatest(controller.signal);
      } catch {
        // The tick reports its own errors.
      }
      if (!controller.signal.aborted) timer = setTimeout(() => void run(), intervalMs);
    };
    if (immediate) void run();
    else timer = setTimeout(() => void run(), intervalMs);
    return () => {
      controller.abort();
      if (timer !== undefined) clearTimeout(timer);
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [active, intervalMs, ...deps]);
}

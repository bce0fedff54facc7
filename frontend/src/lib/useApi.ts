import { useCallback, useEffect, useRef, useState } from 'react';
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
  const fetcherRef = useRef(fetcher);
  fetcherRef.current = fetcher;

  useEffect(() => {
    const controller = new AbortController();
    setState((prev) => (prev.status === 'ready' && version > 0 ? prev : { status: 'loading' }));
    fetcherRef
      .current(controller.signal)
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
  const tickRef = useRef(tick);
  tickRef.current = tick;
  useEffect(() => {
    if (!active) return;
    const controller = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const run = async () => {
      try {
        await tickRef.current(controller.signal);
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

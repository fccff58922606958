import { useCallback, useEffect, useState } from 'react';
import { describe } from '../../api/client';

/** Loads a list, and reloads it after a change. */
export function useList<T>(load: () => Promise<T>) {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<string | null>(null);
  const reload = useCallback(async () => {
    try {
      setData(await load());
      setError(null);
    } catch (e) {
      setError(describe(e));
    }
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);
  useEffect(() => {
    void reload();
  }, [reload]);
  /** Runs a change, then reloads; a refusal is shown instead. */
  const mutate = useCallback(
    async (change: () => Promise<unknown>): Promise<boolean> => {
      try {
        await change();
        await reload();
        return true;
      } catch (e) {
        setError(describe(e));
        return false;
      }
    },
    [reload],
  );
  return { data, error, reload, mutate };
}

// Development only (never in web/dist): sign in with a token from `make token`.
import { useState, type FormEvent } from 'react';
import { useSetAtom } from 'jotai';
import { sessionAtom, sessionFromToken } from './session';

export default function DevToken() {
  const setSession = useSetAtom(sessionAtom);
  const [value, setValue] = useState('');
  const [error, setError] = useState<string | null>(null);
  const submit = (e: FormEvent) => {
    e.preventDefault();
    const s = sessionFromToken(value.trim());
    if (!s) setError('not a JWT');
    else setSession(s);
  };
  return (
    <form onSubmit={submit} className="mt-6 border-t border-slate-200 pt-4">
      <label className="block text-sm font-medium text-slate-800">
        Development token (<code>make token</code>)
        <textarea
          className="mt-1 block h-20 w-full rounded-md border border-slate-400 p-2 font-mono text-xs text-slate-900"
          value={value}
          onChange={(e) => setValue(e.target.value)}
          data-testid="dev-token"
        />
      </label>
      <button type="submit" className="mt-2 rounded-md bg-slate-700 px-3 py-1 text-sm text-white" data-testid="dev-token-submit">
        Use token
      </button>
      {error && <p role="alert" className="text-sm text-red-800">{error}</p>}
    </form>
  );
}

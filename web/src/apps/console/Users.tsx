import { useState, type FormEvent } from 'react';
import { api, describe } from '../../api/client';
import { ErrorText, input, primary } from '../../ui/Tabs';

const ROLES = ['admin', 'builder', 'operator', 'member', 'viewer'];

interface Created {
  password?: string;
  user: { email: string; id: string; roles: string[]; tenant: string };
}

/** Admins add built-in accounts to their tenant (POST /api/v1/auth/users). */
export default function Users() {
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [roles, setRoles] = useState<string[]>(['member']);
  const [created, setCreated] = useState<Created[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    try {
      const c = await api<Created>('/api/v1/auth/users', { body: { email, roles, ...(password ? { password } : {}) } });
      setCreated((cs) => [c, ...cs]);
      setEmail('');
      setPassword('');
      setError(null);
    } catch (err) {
      setError(describe(err));
    } finally {
      setBusy(false);
    }
  };
  const toggle = (r: string) => setRoles((rs) => (rs.includes(r) ? rs.filter((x) => x !== r) : [...rs, r]));

  return (
    <div className="grid gap-4 lg:grid-cols-[18rem_1fr]">
      <form onSubmit={submit} className="space-y-2 rounded-lg border border-slate-200 p-3" aria-labelledby="new-user-h">
        <h2 id="new-user-h" className="font-semibold">Add a user to this tenant</h2>
        <label className="block text-sm">
          Email
          <input className={input} type="email" required value={email} onChange={(e) => setEmail(e.target.value)} />
        </label>
        <label className="block text-sm">
          Password (empty: one is generated and shown once)
          <input className={input} type="password" autoComplete="new-password" value={password} onChange={(e) => setPassword(e.target.value)} />
        </label>
        <fieldset className="text-sm">
          <legend>Roles</legend>
          <div className="flex flex-wrap gap-2">
            {ROLES.map((r) => (
              <label key={r} className="flex items-center gap-1">
                <input type="checkbox" checked={roles.includes(r)} onChange={() => toggle(r)} /> {r}
              </label>
            ))}
          </div>
        </fieldset>
        <button type="submit" className={primary} disabled={busy || roles.length === 0}>
          Add user
        </button>
        <ErrorText error={error} />
      </form>
      <section aria-labelledby="added-h">
        <h2 id="added-h" className="font-semibold">Added in this session</h2>
        {created.length === 0 ? (
          <p className="text-sm text-slate-700">Users you add appear here, with their generated password when there is one (it is not shown again).</p>
        ) : (
          <ul className="divide-y divide-slate-200 text-sm">
            {created.map((c) => (
              <li key={c.user.id} className="py-2">
                <p className="font-semibold">{c.user.email}</p>
                <p className="text-xs text-slate-700">Roles: {c.user.roles.join(', ')}</p>
                {c.password && (
                  <p className="text-xs">
                    Password: <code className="rounded bg-amber-100 px-1 text-slate-900">{c.password}</code>
                  </p>
                )}
              </li>
            ))}
          </ul>
        )}
      </section>
    </div>
  );
}

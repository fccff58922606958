import { useEffect } from 'react';
import { useAtom, useSetAtom } from 'jotai';
import { bindClient, sessionAtom, signOutReasonAtom, watchOtherTabs } from './auth/session';
import SignIn from './auth/SignIn';
import Desktop from './desktop/Desktop';

export default function App() {
  const [session, setSession] = useAtom(sessionAtom);
  const setReason = useSetAtom(signOutReasonAtom);

  // Bound during render so children's first requests already carry the token.
  bindClient(session, () => {
    setReason('Your session has ended; please sign in again.');
    setSession(null);
  });

  useEffect(() => watchOtherTabs(setSession), [setSession]);

  useEffect(() => {
    if (!session) return;
    const ms = session.expiresAt * 1000 - Date.now();
    const t = setTimeout(() => {
      setReason('Your session has expired; please sign in again.');
      setSession(null);
    }, Math.max(0, Math.min(ms, 2 ** 31 - 1)));
    return () => clearTimeout(t);
  }, [session, setSession, setReason]);

  return session ? <Desktop key={session.token} /> : <SignIn />;
}

import { createContext, useContext } from 'react';
import type { DesktopBridge } from './bridge';

export const BridgeContext = createContext<DesktopBridge | null>(null);

/** The desktop's bridge: apps open windows through it (chat's `open_window` action). */
export function useBridge(): DesktopBridge {
  const b = useContext(BridgeContext);
  if (!b) throw new Error('useBridge outside the desktop');
  return b;
}

/**
 * Which implementation pairs an interop test runs: INTEROP_PAIRS, unless the
 * environment overrides the table:
 *
 *   WARREN_INTEROP_PAIRS=wireguard-go:wireguard-go           harness self-check
 *   WARREN_INTEROP_PAIRS=warren-wg:wireguard-go,wireguard-go:warren-wg
 *
 * A pair is [initiator, responder]: the initiator pings first and has the
 * responder's endpoint; the responder has none and must learn it (roaming).
 */
import { isWireGuardImpl, WIREGUARD_IMPLS } from './wireguard.js';
import type { WireGuardImpl } from './wireguard.js';

export type ImplPair = readonly [initiator: WireGuardImpl, responder: WireGuardImpl];

function parseImpl(text: string, variable: string): WireGuardImpl {
  if (!isWireGuardImpl(text)) {
    throw new Error(
      `${variable}: unknown implementation ${JSON.stringify(text)} (known: ${WIREGUARD_IMPLS.join(', ')})`,
    );
  }
  return text;
}

/**
 * What every interop file runs by default: warren against itself and against
 * wireguard-go, each side as the initiator.
 */
export const INTEROP_PAIRS: readonly ImplPair[] = [
  ['warren-wg', 'warren-wg'],
  ['warren-wg', 'wireguard-go'],
  ['wireguard-go', 'warren-wg'],
];

/** `table`, unless WARREN_INTEROP_PAIRS ("a:b,c:d") names other pairs. */
export function selectPairs(table: readonly ImplPair[]): readonly ImplPair[] {
  const override = process.env.WARREN_INTEROP_PAIRS;
  if (override === undefined || override.trim() === '') return table;
  return override.split(',').map((item): ImplPair => {
    const [initiator, responder, extra] = item.trim().split(':');
    if (initiator === undefined || responder === undefined || extra !== undefined) {
      throw new Error(
        `WARREN_INTEROP_PAIRS: expected "initiator:responder", got ${JSON.stringify(item)}`,
      );
    }
    return [
      parseImpl(initiator, 'WARREN_INTEROP_PAIRS'),
      parseImpl(responder, 'WARREN_INTEROP_PAIRS'),
    ];
  });
}

/** `table`, unless WARREN_IMPLS ("a,b") names other implementations. */
export function selectImpls(table: readonly WireGuardImpl[]): readonly WireGuardImpl[] {
  const override = process.env.WARREN_IMPLS;
  if (override === undefined || override.trim() === '') return table;
  return override.split(',').map((item) => parseImpl(item.trim(), 'WARREN_IMPLS'));
}

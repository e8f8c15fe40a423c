/**
 * When to renew a certificate and how long to wait after a failed order. Pure
 * functions of the certificate's validity, the policy and a random draw, so
 * the tests can pin every case.
 *
 * Renewal: when less than `renewWhenRemaining` of the lifetime is left (a third
 * by default, as Let's Encrypt advises: day 60 of 90), minus a random part of
 * `jitter` × lifetime so that certificates issued together (a relay's first
 * start) do not all renew in the same minute.
 *
 * Failures: exponential back-off per name, from `retryMinMs` doubling up to
 * `retryMaxMs`, ±25 % random, so a broken name or an unreachable CA is not
 * hammered (Let's Encrypt allows 5 failed validations per name per hour).
 */

export interface RenewalPolicy {
  /** Renew when less than this fraction of the lifetime is left (0 < x < 1). */
  readonly renewWhenRemaining: number;
  /** Renew up to this fraction of the lifetime earlier, at random (0 <= x < renewWhenRemaining, 1 - renewWhenRemaining). */
  readonly jitter: number;
}

export const DEFAULT_RENEWAL_POLICY: RenewalPolicy = { renewWhenRemaining: 1 / 3, jitter: 0.05 };

function checkDraw(draw: number): void {
  if (typeof draw !== 'number' || !(draw >= 0 && draw < 1)) {
    throw new RangeError(`draw must be a number in [0, 1), got ${String(draw)}`);
  }
}

/** Throws a RangeError naming the bad field of a policy. */
export function checkRenewalPolicy(policy: RenewalPolicy): void {
  const { renewWhenRemaining, jitter } = policy;
  if (
    typeof renewWhenRemaining !== 'number' ||
    !(renewWhenRemaining > 0 && renewWhenRemaining < 1)
  ) {
    throw new RangeError(
      `renewWhenRemaining must be between 0 and 1, got ${String(renewWhenRemaining)}`,
    );
  }
  // Both bounds keep the renewal inside the validity: after notBefore, before the last part.
  if (
    typeof jitter !== 'number' ||
    !(jitter >= 0 && jitter < renewWhenRemaining && renewWhenRemaining + jitter < 1)
  ) {
    throw new RangeError(
      `jitter must be >= 0, below renewWhenRemaining and below 1 - renewWhenRemaining, got ${String(jitter)}`,
    );
  }
}

/** When a certificate valid from notBefore to notAfter (ms) is renewed; `draw` in [0, 1). */
export function renewalTime(
  notBefore: number,
  notAfter: number,
  policy: RenewalPolicy,
  draw: number,
): number {
  if (!Number.isFinite(notBefore) || !Number.isFinite(notAfter) || notAfter <= notBefore) {
    throw new RangeError('notBefore and notAfter must be times with notBefore < notAfter');
  }
  checkRenewalPolicy(policy);
  checkDraw(draw);
  const lifetime = notAfter - notBefore;
  return Math.round(
    notAfter - lifetime * policy.renewWhenRemaining - lifetime * policy.jitter * draw,
  );
}

export interface RetryPolicy {
  /** Wait after the first failure (ms). */
  readonly retryMinMs: number;
  /** The wait doubles per failure up to this (ms). */
  readonly retryMaxMs: number;
}

/** How long to wait (ms) after the `failures`-th consecutive failure; `draw` in [0, 1). */
export function retryDelay(failures: number, policy: RetryPolicy, draw: number): number {
  if (!Number.isInteger(failures) || failures < 1) {
    throw new RangeError(`failures must be an integer >= 1, got ${String(failures)}`);
  }
  const { retryMinMs, retryMaxMs } = policy;
  if (!(retryMinMs > 0) || !(retryMaxMs >= retryMinMs) || !Number.isFinite(retryMaxMs)) {
    throw new RangeError('retryMinMs must be > 0 and retryMaxMs >= retryMinMs (finite)');
  }
  checkDraw(draw);
  // 2 ** 40 already exceeds any sane maximum; capping the exponent avoids Infinity.
  const base = Math.min(retryMaxMs, retryMinMs * 2 ** Math.min(failures - 1, 40));
  return Math.round(Math.min(retryMaxMs, base * (0.75 + 0.5 * draw)));
}

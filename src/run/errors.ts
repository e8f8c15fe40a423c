/** Failures of `warren run` before or while the tunnel comes up, each with a stable code. */
export type RunErrorCode =
  | 'ERR_RUN_USAGE'
  | 'ERR_RUN_MISSING_SETTING'
  | 'ERR_RUN_KEY_FILE'
  | 'ERR_RUN_ENDPOINT_UNRESOLVABLE';

export class RunError extends Error {
  constructor(
    readonly code: RunErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'RunError';
  }
}

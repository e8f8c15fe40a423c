/**
 * The relay's token-signing secret: DATA_DIR/token-secret, 32 random bytes in
 * base64, made once (mode 0600) and never stored anywhere else. The store
 * (./store/) keeps what tokens grant, never the secret or a token itself.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { RelaySecretError } from './errors.js';
import { MIN_SECRET_BYTES } from './token.js';

export const SECRET_FILE = 'token-secret';

/**
 * Reads the relay's secret from DIR/token-secret, creating it (32 random bytes,
 * mode 0600, exclusively) on first start. Refuses a secret file that group or
 * others may read, as ssh refuses such private keys.
 */
export async function loadOrCreateSecret(dataDir: string): Promise<Buffer> {
  if (typeof dataDir !== 'string' || dataDir.length === 0) {
    throw new TypeError('dataDir must be a non-empty string');
  }
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const path = join(dataDir, SECRET_FILE);
  try {
    const handle = await open(path, 'wx', 0o600);
    const secret = randomBytes(MIN_SECRET_BYTES);
    try {
      await handle.writeFile(secret.toString('base64') + '\n');
    } finally {
      await handle.close();
    }
    return secret;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') {
      throw new RelaySecretError(`cannot create ${path}: ${(error as Error).message}`, {
        cause: error,
      });
    }
  }
  let info;
  let text;
  try {
    info = await stat(path);
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new RelaySecretError(`cannot read ${path}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  if ((info.mode & 0o077) !== 0) {
    throw new RelaySecretError(
      `${path} is readable by group or others (mode ${(info.mode & 0o777).toString(8)}): chmod 600 it`,
    );
  }
  const secret = Buffer.from(text.trim(), 'base64');
  if (secret.length < MIN_SECRET_BYTES || !/^[A-Za-z0-9+/]+=*$/.test(text.trim())) {
    throw new RelaySecretError(
      `${path} does not hold a base64 secret of at least ${MIN_SECRET_BYTES} bytes`,
    );
  }
  return secret;
}

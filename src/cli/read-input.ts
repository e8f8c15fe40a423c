/**
 * Reading the files a user names on the command line (certificates, tokens,
 * config), with errors that name the option and the file instead of Node's
 * raw "ENOENT: no such file or directory, open ...".
 */
import { readFile } from 'node:fs/promises';

function reasonOf(error: unknown): string {
  switch ((error as NodeJS.ErrnoException).code) {
    case 'ENOENT':
      return 'no such file';
    case 'EACCES':
      return 'permission denied';
    case 'EISDIR':
      return 'it is a directory';
    default:
      return error instanceof Error ? error.message : String(error);
  }
}

/** Reads `file`; a failure says "cannot read WHAT FILE: reason" (a CLI exits 1 on it). */
export async function readInputBytes(file: string, what: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (error) {
    throw new Error(`cannot read ${what} ${file}: ${reasonOf(error)}`, { cause: error });
  }
}

/** readInputBytes as UTF-8 text. */
export async function readInput(file: string, what: string): Promise<string> {
  return (await readInputBytes(file, what)).toString('utf8');
}

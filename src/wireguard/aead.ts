/**
 * The transport-data AEAD (whitepaper §5.4.6: ChaCha20-Poly1305 with a 64-bit
 * little-endian counter as nonce) behind an interface, so the I/O layer can plug
 * in a faster implementation (the addon's) while the protocol core stays free of
 * I/O. The node:crypto version here is the reference the fast one is tested against.
 */
import { createCipheriv, createDecipheriv } from 'node:crypto';
import { AEAD_TAG_SIZE } from './constants.js';

export interface TransportAead {
  /**
   * Encrypt `plaintext` followed by zero bytes up to `paddedLength`; write ciphertext || tag
   * into `out` at `outOffset`. Returns the bytes written (paddedLength + 16).
   */
  seal(
    key: Uint8Array,
    counter: number,
    plaintext: Uint8Array,
    paddedLength: number,
    out: Uint8Array,
    outOffset: number,
  ): number;
  /**
   * Decrypt ciphertext || tag. Returns the plaintext, or null if the tag does not verify.
   * An implementation may decrypt in place, overwriting `sealed`.
   */
  open(key: Uint8Array, counter: number, sealed: Uint8Array): Uint8Array | null;
}

const ZERO_PADDING = new Uint8Array(16);

function nonceFor(counter: number): Buffer {
  const nonce = Buffer.alloc(12);
  nonce.writeUInt32LE(counter >>> 0, 4);
  nonce.writeUInt32LE(Math.floor(counter / 0x1_0000_0000), 8);
  return nonce;
}

/** ChaCha20-Poly1305 through node:crypto: correct everywhere, one cipher object per packet. */
export const nodeCryptoAead: TransportAead = {
  seal(key, counter, plaintext, paddedLength, out, outOffset) {
    const cipher = createCipheriv('chacha20-poly1305', key, nonceFor(counter), {
      authTagLength: AEAD_TAG_SIZE,
    });
    let offset = outOffset;
    const write = (chunk: Buffer): void => {
      out.set(chunk, offset);
      offset += chunk.length;
    };
    write(cipher.update(plaintext));
    for (let pad = paddedLength - plaintext.length; pad > 0; pad -= 16) {
      write(cipher.update(ZERO_PADDING.subarray(0, Math.min(pad, 16))));
    }
    write(cipher.final());
    write(cipher.getAuthTag());
    return offset - outOffset;
  },
  open(key, counter, sealed) {
    const decipher = createDecipheriv('chacha20-poly1305', key, nonceFor(counter), {
      authTagLength: AEAD_TAG_SIZE,
    });
    decipher.setAuthTag(sealed.subarray(sealed.length - AEAD_TAG_SIZE));
    const plaintext = decipher.update(sealed.subarray(0, sealed.length - AEAD_TAG_SIZE));
    try {
      decipher.final();
    } catch {
      return null;
    }
    return plaintext;
  },
};

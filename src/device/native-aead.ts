/**
 * The transport AEAD through the addon (OpenSSL EVP with a reused context), which
 * the device plugs into the engine: ~10x cheaper per packet than node:crypto.
 */
import * as native from '../native/index.js';
import type { TransportAead } from '../wireguard/aead.js';

const TAG_SIZE = 16;

export const nativeAead: TransportAead = {
  seal(key, counter, plaintext, paddedLength, out, outOffset) {
    return native.chachaSeal(
      key,
      counter,
      plaintext,
      0,
      plaintext.length,
      paddedLength,
      out,
      outOffset,
    );
  },
  open(key, counter, sealed) {
    // In place: the ciphertext's buffer (the receive slot) becomes the plaintext.
    const length = native.chachaOpen(key, counter, sealed, 0, sealed.length, sealed, 0);
    return length < 0 ? null : sealed.subarray(0, sealed.length - TAG_SIZE);
  },
};

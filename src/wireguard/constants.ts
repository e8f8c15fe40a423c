/**
 * Protocol constants, named as in the WireGuard whitepaper (Jason A. Donenfeld,
 * "WireGuard: Next Generation Kernel Network Tunnel", revision e2da747),
 * section 6.1 "Preliminaries" and 5.4 "Messages". Times are in milliseconds.
 */

// §5.4: the Noise protocol name and WireGuard identifier mixed into the handshake.
export const CONSTRUCTION = 'Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s';
export const IDENTIFIER = 'WireGuard v1 zx2c4 Jason@zx2c4.com';
// §5.4.4: labels for the MAC1 and cookie keys.
export const LABEL_MAC1 = 'mac1----';
export const LABEL_COOKIE = 'cookie--';

// §6.1 table: timers and limits.
export const REKEY_AFTER_MESSAGES = 2n ** 60n;
export const REJECT_AFTER_MESSAGES = 2n ** 64n - 2n ** 13n - 1n;
export const REKEY_AFTER_TIME = 120_000;
export const REJECT_AFTER_TIME = 180_000;
export const REKEY_ATTEMPT_TIME = 90_000;
export const REKEY_TIMEOUT = 5_000;
export const KEEPALIVE_TIMEOUT = 10_000;
// §6.2: jitter of up to 333 ms added to REKEY_TIMEOUT for handshake retries.
export const REKEY_TIMEOUT_JITTER_MAX = 334;
// §6.6 / §5.4.7: the cookie secret changes every two minutes.
export const COOKIE_SECRET_MAX_AGE = 120_000;
// A received cookie is used for at most this long (wireguard-go: CookieRefreshTime).
export const COOKIE_REFRESH_TIME = 120_000;
// §5.1: an initiation is accepted at most once per this interval per peer
// (wireguard-go HandshakeInitationRate = 50 ms).
export const HANDSHAKE_INITIATION_RATE = 50;

// §5.4 message types.
export const MESSAGE_INITIATION = 1;
export const MESSAGE_RESPONSE = 2;
export const MESSAGE_COOKIE_REPLY = 3;
export const MESSAGE_TRANSPORT_DATA = 4;

// §5.4 message sizes in bytes.
export const MESSAGE_INITIATION_SIZE = 148;
export const MESSAGE_RESPONSE_SIZE = 92;
export const MESSAGE_COOKIE_REPLY_SIZE = 64;
export const MESSAGE_TRANSPORT_HEADER_SIZE = 16;
export const MESSAGE_TRANSPORT_MIN_SIZE = 32; // header + Poly1305 tag of an empty keepalive
export const AEAD_TAG_SIZE = 16;
export const KEY_SIZE = 32;
export const MAC_SIZE = 16;
export const COOKIE_SIZE = 16;
export const COOKIE_NONCE_SIZE = 24;
export const TIMESTAMP_SIZE = 12;
// §5.4.6: plaintext is zero-padded to a multiple of 16 bytes.
export const PADDING_MULTIPLE = 16;

/**
 * Replay window in packets. The whitepaper (§5.4.6) points to RFC 6479; the Linux
 * kernel and wireguard-go both use a 8192-bit ring of which 8128 packets
 * (8192 − 64, one word kept free for the ring) are accepted out of order.
 */
export const COUNTER_WINDOW_SIZE = 8128;

// Under-load behaviour (wireguard-go device/ratelimiter.go, device/constants.go).
export const UNDER_LOAD_QUEUE_SIZE = 128; // queued handshakes that mean "under load"
export const UNDER_LOAD_AFTER_TIME = 1_000; // stay "under load" this long after it ends
export const RATELIMIT_PACKETS_PER_SECOND = 20;
export const RATELIMIT_PACKETS_BURSTABLE = 5;
export const MAX_PEERS = 1 << 16;

// wireguard-go device/timers.go: MaxTimerHandshakes = RekeyAttemptTime / RekeyTimeout.
export const MAX_TIMER_HANDSHAKES = REKEY_ATTEMPT_TIME / REKEY_TIMEOUT;
// wireguard-go device/constants.go: packets held per peer while a handshake is pending.
export const MAX_STAGED_PACKETS = 128;
/**
 * We handle handshakes synchronously instead of through a queue, so "under load"
 * (whitepaper §5.3) is judged by rate: more handshake messages than this within
 * one second switches cookie replies on for UNDER_LOAD_AFTER_TIME.
 */
export const UNDER_LOAD_HANDSHAKES_PER_SECOND = 256;

/**
 * The agent's local inspector (issue 4): a recorder of the HTTP exchanges
 * through the agent's http tunnels (./recorder.ts) and a loopback web server
 * to browse and replay them (./server.ts, ./page.ts).
 */
export {
  ChunkedDecoder,
  DEFAULT_BODY_LIMIT,
  DEFAULT_RING_SIZE,
  StreamObserver,
  TrafficRecorder,
} from './recorder.js';
export type {
  CapturedBody,
  ExchangeState,
  HttpTrafficObserver,
  RecordedExchange,
  RecordedRequest,
  RecordedResponse,
  RecorderEvents,
  RecorderOptions,
  StreamTap,
  TunnelTarget,
} from './recorder.js';
export {
  DEFAULT_INSPECTOR_PORT,
  InspectorServer,
  REPLAY_HEADER,
  ReplayError,
  exchangeDetails,
  serializeReplay,
  summarize,
} from './server.js';
export type { BodyJson, ExchangeSummary, InspectorServerOptions } from './server.js';

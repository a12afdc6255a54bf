// Public ttrpc API: frame codec, unary server and client (containerd/ttrpc wire format).
export {
  DEFAULT_MAX_DATA_LENGTH,
  FrameDecoder,
  FrameFlags,
  FrameType,
  HEADER_LENGTH,
  decodeHeader,
  encodeFrame,
  encodeHeader,
} from './frame.js';
export type { DecodedFrame, Frame, FrameHeader } from './frame.js';
export { NAMESPACE_METADATA_KEY, TtrpcServer, removeStaleSocket } from './server.js';
export type { CallContext, CallInfo, ServiceImplementation, ServiceImplementationFor, TtrpcServerOptions, UnaryHandler } from './server.js';
export { TtrpcClient, clientFor } from './client.js';
export type { CallOptions, MethodRef, ServiceClient, TtrpcClientOptions } from './client.js';

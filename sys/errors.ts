// Typed errors: every failure a caller can act on is one of these. They are mapped to
// gRPC/ttrpc status codes in exactly one place (codeOf), so transports never guess.

/** google.rpc.Code values (same numbers as gRPC). */
export const Code = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;
export type CodeValue = (typeof Code)[keyof typeof Code];

const CODE_NAMES = new Map<number, string>(Object.entries(Code).map(([k, v]) => [v, k]));
/** "NOT_FOUND" for 5; "UNKNOWN" for a number that is not a code. */
export function codeName(code: number): string {
  return CODE_NAMES.get(code) ?? 'UNKNOWN';
}

export class SporeError extends Error {
  readonly code: CodeValue;
  constructor(code: CodeValue, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

export class InvalidArgument extends SporeError {
  constructor(message: string, options?: { cause?: unknown }) { super(Code.INVALID_ARGUMENT, message, options); }
}
export class NotFound extends SporeError {
  constructor(message: string, options?: { cause?: unknown }) { super(Code.NOT_FOUND, message, options); }
}
export class AlreadyExists extends SporeError {
  constructor(message: string, options?: { cause?: unknown }) { super(Code.ALREADY_EXISTS, message, options); }
}
export class FailedPrecondition extends SporeError {
  constructor(message: string, options?: { cause?: unknown }) { super(Code.FAILED_PRECONDITION, message, options); }
}
export class Unimplemented extends SporeError {
  constructor(message: string, options?: { cause?: unknown }) { super(Code.UNIMPLEMENTED, message, options); }
}
export class Unavailable extends SporeError {
  constructor(message: string, options?: { cause?: unknown }) { super(Code.UNAVAILABLE, message, options); }
}
export class DeadlineExceeded extends SporeError {
  constructor(message: string, options?: { cause?: unknown }) { super(Code.DEADLINE_EXCEEDED, message, options); }
}
export class ResourceExhausted extends SporeError {
  constructor(message: string, options?: { cause?: unknown }) { super(Code.RESOURCE_EXHAUSTED, message, options); }
}
/**
 * Too much work right now (a function's or the node's concurrency and queue are full):
 * RESOURCE_EXHAUSTED, which the gateway answers with 429 and Retry-After. Answered at once,
 * never after a wait.
 */
export class Overloaded extends ResourceExhausted {
  constructor(message: string, readonly retryAfterMs = 100, options?: { cause?: unknown }) { super(message, options); }
}
export class Cancelled extends SporeError {
  constructor(message: string, options?: { cause?: unknown }) { super(Code.CANCELLED, message, options); }
}
export class Internal extends SporeError {
  constructor(message: string, options?: { cause?: unknown }) { super(Code.INTERNAL, message, options); }
}

/** The single mapping from any thrown value to a status code + message. */
export function statusOf(err: unknown): { code: CodeValue; message: string } {
  if (err instanceof SporeError) return { code: err.code, message: err.message };
  if (err instanceof Error) return { code: Code.UNKNOWN, message: err.message };
  return { code: Code.UNKNOWN, message: String(err) };
}

/**
 * Error from a failed system call, carrying errno so callers can branch on it. It is a
 * SporeError, so one that escapes to a transport is still a status, not UNKNOWN: exhaustion
 * errnos (ENOMEM, ENOSPC, EMFILE, EAGAIN) are RESOURCE_EXHAUSTED, ETIMEDOUT is
 * DEADLINE_EXCEEDED, ENOSYS/EOPNOTSUPP UNIMPLEMENTED, anything else INTERNAL (a syscall that
 * fails after validation is spore's failure, not the caller's input).
 */
export class SyscallError extends SporeError {
  readonly errno: number;
  readonly syscall: string;
  constructor(syscall: string, errno: number, detail?: string) {
    super(codeOfErrno(errno), `${syscall}${detail ? `(${detail})` : ''}: ${errnoName(errno)} (errno ${errno})`);
    this.errno = errno;
    this.syscall = syscall;
    this.name = 'SyscallError';
  }
}

function codeOfErrno(errno: number): CodeValue {
  switch (errno) {
    case 11: case 12: case 24: case 28: return Code.RESOURCE_EXHAUSTED;
    case 110: return Code.DEADLINE_EXCEEDED;
    case 38: case 95: return Code.UNIMPLEMENTED;
    default: return Code.INTERNAL;
  }
}

const ERRNO_NAMES: Record<number, string> = {
  1: 'EPERM', 2: 'ENOENT', 3: 'ESRCH', 4: 'EINTR', 5: 'EIO', 7: 'E2BIG', 8: 'ENOEXEC', 9: 'EBADF', 10: 'ECHILD', 11: 'EAGAIN',
  12: 'ENOMEM', 13: 'EACCES', 14: 'EFAULT', 16: 'EBUSY', 17: 'EEXIST', 18: 'EXDEV', 19: 'ENODEV',
  20: 'ENOTDIR', 21: 'EISDIR', 22: 'EINVAL', 24: 'EMFILE', 25: 'ENOTTY', 26: 'ETXTBSY', 28: 'ENOSPC', 30: 'EROFS',
  32: 'EPIPE', 36: 'ENAMETOOLONG', 38: 'ENOSYS', 39: 'ENOTEMPTY', 40: 'ELOOP', 95: 'EOPNOTSUPP',
  110: 'ETIMEDOUT', 111: 'ECONNREFUSED',
};
export function errnoName(errno: number): string {
  return ERRNO_NAMES[errno] ?? `errno${errno}`;
}

/**
 * A promise-based client for the session service over grpc-js (the gateway's and the tests'
 * way in). Rejections are grpc-js `ServiceError`s; `AppError.from(error)` turns them into
 * AppErrors with the same status.
 *
 * @example
 * ```ts
 * using client = new SessionClient("127.0.0.1:50051");
 * const { session, token } = await client.createSession({ userId: "u1" });
 * const again = await client.getSession({ selector: { $case: "token", value: token } });
 * ```
 * @module
 */
import { type ClientOptions, credentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import {
  type CreateSessionRequest,
  type CreateSessionResponse,
  type DeleteSessionRequest,
  type DeleteSessionResponse,
  type GetSessionRequest,
  type HeartbeatRequest,
  type HeartbeatResponse,
  type ListSessionsRequest,
  type ListSessionsResponse,
  type RotateTokenRequest,
  type RotateTokenResponse,
  type Session,
  SessionServiceClient,
  type UpdateSessionRequest,
} from "../proto/gen/session.ts";

/** Per-call options. */
export interface CallOptions {
  /** Deadline in ms from now. */
  timeoutMs?: number;
  /** Extra metadata (e.g. `traceparent`). */
  metadata?: Metadata;
}

type Callback<T> = (error: ServiceError | null, response: T) => void;

/** Session service client with promise methods and partial requests (defaults filled in). */
export class SessionClient implements Disposable {
  #client: SessionServiceClient;

  /** Connect (lazily) to `address` ("host:port") without TLS. */
  constructor(address: string, options: Partial<ClientOptions> = {}) {
    this.#client = new SessionServiceClient(address, credentials.createInsecure(), options);
  }

  /** The underlying generated client. */
  get raw(): SessionServiceClient {
    return this.#client;
  }

  /**
   * Resolve once the channel is connected (it connects on the first call otherwise).
   * @throws {Error} when not connected within `timeoutMs`
   */
  ready(timeoutMs = 5000): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#client.waitForReady(
        Date.now() + timeoutMs,
        (error) => (error ? reject(error) : resolve()),
      );
    });
  }

  /** CreateSession. */
  createSession(
    request: Partial<CreateSessionRequest>,
    options?: CallOptions,
  ): Promise<CreateSessionResponse> {
    const full: CreateSessionRequest = {
      userId: "",
      connectionId: "",
      clientIp: "",
      clientPort: 0,
      serverAddress: "",
      ttlSeconds: 0,
      metadata: {},
      ...request,
    };
    return this.#call(
      (cb: Callback<CreateSessionResponse>, md, opts) =>
        this.#client.createSession(full, md, opts, cb),
      options,
    );
  }

  /** GetSession. */
  getSession(request: GetSessionRequest, options?: CallOptions): Promise<Session> {
    return this.#call(
      (cb: Callback<Session>, md, opts) => this.#client.getSession(request, md, opts, cb),
      options,
    );
  }

  /** UpdateSession. */
  updateSession(
    request: Partial<UpdateSessionRequest> & { sessionId: string },
    options?: CallOptions,
  ): Promise<Session> {
    const full: UpdateSessionRequest = {
      updateMask: [],
      state: 0,
      metadata: {},
      stats: undefined,
      connectionId: "",
      serverAddress: "",
      ...request,
    };
    return this.#call(
      (cb: Callback<Session>, md, opts) => this.#client.updateSession(full, md, opts, cb),
      options,
    );
  }

  /** DeleteSession. */
  deleteSession(
    request: DeleteSessionRequest,
    options?: CallOptions,
  ): Promise<DeleteSessionResponse> {
    return this.#call(
      (cb: Callback<DeleteSessionResponse>, md, opts) =>
        this.#client.deleteSession(request, md, opts, cb),
      options,
    );
  }

  /** ListSessions. */
  listSessions(
    request: Partial<ListSessionsRequest>,
    options?: CallOptions,
  ): Promise<ListSessionsResponse> {
    const full: ListSessionsRequest = {
      userId: "",
      state: 0,
      createdAfter: 0,
      createdBefore: 0,
      pageSize: 0,
      pageToken: "",
      ...request,
    };
    return this.#call(
      (cb: Callback<ListSessionsResponse>, md, opts) =>
        this.#client.listSessions(full, md, opts, cb),
      options,
    );
  }

  /** Heartbeat. */
  heartbeat(
    request: Partial<HeartbeatRequest> & { sessionId: string },
    options?: CallOptions,
  ): Promise<HeartbeatResponse> {
    const full: HeartbeatRequest = { ttlSeconds: 0, ...request };
    return this.#call(
      (cb: Callback<HeartbeatResponse>, md, opts) => this.#client.heartbeat(full, md, opts, cb),
      options,
    );
  }

  /** RotateToken. */
  rotateToken(request: RotateTokenRequest, options?: CallOptions): Promise<RotateTokenResponse> {
    return this.#call(
      (cb: Callback<RotateTokenResponse>, md, opts) =>
        this.#client.rotateToken(request, md, opts, cb),
      options,
    );
  }

  /** Close the channel. */
  close(): void {
    this.#client.close();
  }

  /** Same as {@link close}. */
  [Symbol.dispose](): void {
    this.close();
  }

  #call<T>(
    start: (
      callback: Callback<T>,
      metadata: Metadata,
      options: { deadline?: Date },
    ) => unknown,
    options: CallOptions = {},
  ): Promise<T> {
    const callOptions = options.timeoutMs === undefined
      ? {}
      : { deadline: new Date(Date.now() + options.timeoutMs) };
    return new Promise((resolve, reject) => {
      start(
        (error, response) => (error ? reject(error) : resolve(response)),
        options.metadata ?? new Metadata(),
        callOptions,
      );
    });
  }
}

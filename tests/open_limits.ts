/**
 * Environment for stacks that tests and benchmarks load from one host: every client comes
 * from 127.0.0.1, so the gateway's abuse limits would measure themselves, not the stack.
 * @module
 */

/** The HTTP rate limits (per IP, per user) out of the way. */
export const OPEN_HTTP_LIMITS = {
  AETHERFLOW_GATEWAY_RATE_LIMIT__PER_IP__CAPACITY: "1000000",
  AETHERFLOW_GATEWAY_RATE_LIMIT__PER_IP__REFILL_PER_SECOND: "1000000",
  AETHERFLOW_GATEWAY_RATE_LIMIT__PER_USER__CAPACITY: "1000000",
  AETHERFLOW_GATEWAY_RATE_LIMIT__PER_USER__REFILL_PER_SECOND: "1000000",
};

/** The HTTP limits and the WebSocket message budgets (per connection, per user) out of the way. */
export const OPEN_LIMITS = {
  ...OPEN_HTTP_LIMITS,
  AETHERFLOW_GATEWAY_WS__MESSAGES_PER_SECOND: "1000000",
  AETHERFLOW_GATEWAY_WS__USER_MESSAGES_PER_SECOND: "1000000",
};

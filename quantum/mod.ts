/**
 * quantum: public API.
 * @module
 */
export {};

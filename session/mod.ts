/**
 * session: public API.
 * @module
 */
export {};

/**
 * gateway: public API.
 * @module
 */
export {};

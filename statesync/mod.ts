/**
 * statesync: public API.
 * @module
 */
export {};

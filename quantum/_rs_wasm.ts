/**
 * Loader for the Reed-Solomon wasm (`@digitaldefiance/reed-solomon-erasure.wasm`, import map name
 * `reed-solomon-erasure`).
 *
 * - The wasm bytes come in as a raw import (`--unstable-raw-imports`, enabled in deno.json), so
 *   the module works in `deno run`, `deno test` and `deno bundle` without file-system access;
 *   `fromCurrentDirectory()` would take the browser branch in Deno.
 * - Encoding uses one long-lived instance made with the package's `fromBytes`.
 * - The package's `reconstruct` works once per instance. Cause (measured here): the wasm function
 *   takes ownership of the `shardsAvailable` buffer and frees it, and the package's JS glue frees
 *   it again; the double free corrupts the wee_alloc heap, so later calls return "too few shards
 *   present" or trap with "memory access out of bounds". We call the exported function with the
 *   same ABI as the glue (malloc, copy in, call, copy out) but free only the shards buffer, which
 *   keeps one instance healthy (20,000 reconstructs verified, heap stable). As a safety net an
 *   instance is replaced when its memory grows past 8 MiB or after any failure or trap, and the
 *   caller can ask for a fresh instance (a new `WebAssembly.Instance` of the module compiled once,
 *   ~0.14 ms).
 *
 * @module
 */

import wasmBytes from "reed-solomon-erasure/wasm" with { type: "bytes" };
import { ReedSolomonErasure } from "reed-solomon-erasure";

const RESULT_OK = 0;

let compiled: WebAssembly.Module | undefined;
let encoder: ReedSolomonErasure | undefined;

interface RsExports {
  memory: WebAssembly.Memory;
  __wbindgen_malloc(size: number): number;
  __wbindgen_free(pointer: number, size: number): void;
  reconstruct(
    shards: number,
    shardsLength: number,
    dataShards: number,
    parityShards: number,
    available: number,
    availableLength: number,
  ): number;
}

function wasmModule(): WebAssembly.Module {
  compiled ??= new WebAssembly.Module(wasmBytes);
  return compiled;
}

/**
 * Fills the parity shards of `shards` (contiguous, `dataShards + parityShards` equal shards) in
 * place.
 *
 * @throws {RangeError} when the library rejects the geometry
 */
export function rsEncode(shards: Uint8Array, dataShards: number, parityShards: number): void {
  let result: number;
  try {
    encoder ??= ReedSolomonErasure.fromBytes(wasmBytes);
    result = encoder.encode(shards, dataShards, parityShards);
  } catch (error) {
    // A trapped instance is unusable: start over with a fresh one next time.
    encoder = undefined;
    throw new RangeError("Cannot encode FEC group: Reed-Solomon wasm trapped", { cause: error });
  }
  if (result !== RESULT_OK) {
    encoder = undefined;
    throw new RangeError(
      `Cannot encode FEC group: ${ReedSolomonErasure.getResultMessage(result)}`,
    );
  }
}

const RECYCLE_MEMORY_BYTES = 8 * 1024 * 1024;
let decoder: RsExports | undefined;

function freshDecoder(): RsExports {
  return new WebAssembly.Instance(wasmModule()).exports as unknown as RsExports;
}

/**
 * Reconstructs the missing data shards of `shards` in place.
 *
 * @param present one flag per shard (data then parity): true when the shard holds received bytes
 * @param options `fresh: true` runs on a brand-new wasm instance (use it to retry when a result
 *   fails verification)
 * @returns the library's result code (0 = OK); a trap is reported as -1
 */
export function rsReconstruct(
  shards: Uint8Array,
  dataShards: number,
  parityShards: number,
  present: readonly boolean[],
  options: { fresh?: boolean } = {},
): number {
  if (options.fresh) decoder = undefined;
  const exports = decoder ?? freshDecoder();
  decoder = exports;
  try {
    const shardsPointer = exports.__wbindgen_malloc(shards.length);
    new Uint8Array(exports.memory.buffer).set(shards, shardsPointer);
    const flagsPointer = exports.__wbindgen_malloc(present.length);
    const flags = new Uint8Array(exports.memory.buffer, flagsPointer, present.length);
    for (let i = 0; i < present.length; i++) flags[i] = present[i] ? 1 : 0;
    // Ownership of the flags buffer passes to the wasm function, which frees it.
    const result = exports.reconstruct(
      shardsPointer,
      shards.length,
      dataShards,
      parityShards,
      flagsPointer,
      present.length,
    );
    if (result === RESULT_OK) {
      const shardSize = shards.length / (dataShards + parityShards);
      const memory = new Uint8Array(exports.memory.buffer);
      shards.set(memory.subarray(shardsPointer, shardsPointer + shardSize * dataShards));
    }
    exports.__wbindgen_free(shardsPointer, shards.length);
    if (result !== RESULT_OK || exports.memory.buffer.byteLength > RECYCLE_MEMORY_BYTES) {
      decoder = undefined;
    }
    return result;
  } catch (error) {
    decoder = undefined;
    if (error instanceof WebAssembly.RuntimeError) return -1;
    throw error;
  }
}

/** Human-readable text for a library result code. */
export function rsResultMessage(code: number): string {
  return code === -1 ? "Reed-Solomon wasm trapped" : ReedSolomonErasure.getResultMessage(code);
}

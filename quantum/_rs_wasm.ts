/**
 * Loader for the Reed-Solomon wasm (`@digitaldefiance/reed-solomon-erasure.wasm`, import map name
 * `reed-solomon-erasure`).
 *
 * - The wasm bytes come in as a raw import (`--unstable-raw-imports`, enabled in deno.json), so
 *   the module works in `deno run`, `deno test` and `deno bundle` without file-system access;
 *   `fromCurrentDirectory()` would take the browser branch in Deno.
 * - Encoding uses one long-lived instance made with the package's `fromBytes`.
 * - `reconstruct` corrupts the instance's heap (the package's wee_alloc heap: a second call on one
 *   instance returns "too few shards present" or traps with "memory access out of bounds"), so
 *   every reconstruct runs on a fresh `WebAssembly.Instance` of the module compiled once here
 *   (~0.14 ms; `fromBytes` would recompile, ~0.33 ms). The call uses the same ABI as the
 *   package's JS glue: malloc, copy in, call, copy out, free.
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

/**
 * Reconstructs the missing data shards of `shards` in place, on a fresh wasm instance.
 *
 * @param present one flag per shard (data then parity): true when the shard holds received bytes
 * @returns the library's result code (0 = OK); a trap is reported as -1
 */
export function rsReconstruct(
  shards: Uint8Array,
  dataShards: number,
  parityShards: number,
  present: readonly boolean[],
): number {
  const exports = new WebAssembly.Instance(wasmModule()).exports as unknown as RsExports;
  try {
    const shardsPointer = exports.__wbindgen_malloc(shards.length);
    new Uint8Array(exports.memory.buffer).set(shards, shardsPointer);
    const flagsPointer = exports.__wbindgen_malloc(present.length);
    const flags = new Uint8Array(exports.memory.buffer, flagsPointer, present.length);
    for (let i = 0; i < present.length; i++) flags[i] = present[i] ? 1 : 0;
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
    // The instance is discarded; no need to free into its heap.
    return result;
  } catch (error) {
    if (error instanceof WebAssembly.RuntimeError) return -1;
    throw error;
  }
}

/** Human-readable text for a library result code. */
export function rsResultMessage(code: number): string {
  return code === -1 ? "Reed-Solomon wasm trapped" : ReedSolomonErasure.getResultMessage(code);
}

/**
 * Small helpers for json0 paths used by locks and error messages.
 * @module
 */
import type { Path } from "./json0/types.ts";

/** True when one path is a prefix of the other (`[]` overlaps everything). */
export function pathsOverlap(a: Path, b: Path): boolean {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** A path for messages: `/` for the root, else `/key/0/...`. */
export function formatPath(path: Path): string {
  return path.length === 0 ? "/" : path.map((step) => `/${step}`).join("");
}

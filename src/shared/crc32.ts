import * as zlib from "node:zlib";

/**
 * CRC-32 (IEEE 802.3, the zlib/PNG polynomial): the checksum of the saved-state format, the same one
 * the cache's own serialization uses (native/cpu/kv_cache_io.cc). zlib.crc32 (Node ≥ 20.15) runs at
 * gigabytes per second; older Node 20 releases get the table version, which gives the same values.
 */
export function crc32(bytes: Uint8Array, initial = 0): number {
  const native = (zlib as { crc32?: (data: Uint8Array, value?: number) => number }).crc32;
  return native !== undefined ? native(bytes, initial) >>> 0 : tableCrc32(bytes, initial);
}

let table: Uint32Array | undefined;

/** @internal The portable CRC-32 (exported for the test that holds it to zlib's). */
export function tableCrc32(bytes: Uint8Array, initial = 0): number {
  if (table === undefined) {
    table = new Uint32Array(256);
    for (let i = 0; i < 256; i++) {
      let c = i;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[i] = c >>> 0;
    }
  }
  let c = ~initial >>> 0;
  for (let i = 0; i < bytes.length; i++) c = table[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

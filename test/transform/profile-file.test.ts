import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { crc32 } from "../../src/shared/crc32.js";
import {
  PROFILE_FILE_NAME,
  TransformCalibrator,
  buildTransformProfile,
  checkProfileFor,
  decodeProfile,
  encodeProfile,
  headTransform,
  readProfile,
  validateProfile,
  writeProfile,
  type TransformProfile,
} from "../../src/transform/index.js";
import { expectCode, rejectionOf } from "../helpers.js";
import { gaussianVectors } from "./synthetic.js";

/** A small real profile: 2 layers × 2 KV heads at headDim 16 (odd-sized JSON, so padding is exercised). */
function makeProfile(): TransformProfile {
  const d = 16;
  const cal = new TransformCalibrator({ layers: 2, kvHeads: 2, headDim: d, seed: 9 });
  let seed = 0;
  for (let layer = 0; layer < 2; layer++) {
    for (let head = 0; head < 2; head++) {
      for (const kv of [0, 1] as const) cal.add(layer, head, kv, gaussianVectors(64, Array.from({ length: d }, (_, i) => 0.7 ** i), ++seed, new Array(d).fill(seed)));
    }
  }
  return buildTransformProfile(cal.finish(), { fingerprint: "sha256:abc", source: "synthetic test data, é", createdAt: "2026-12-08T00:00:00.000Z" });
}

/** A copy of `bytes` with its CRC recomputed, to reach the checks behind the checksum. */
function resealed(bytes: Uint8Array): Uint8Array {
  const out = bytes.slice();
  new DataView(out.buffer).setUint32(out.length - 4, crc32(out.subarray(0, out.length - 4)), true);
  return out;
}

describe("profile file", () => {
  const profile = makeProfile();
  const bytes = encodeProfile(profile);

  it("round-trips bit for bit", () => {
    const back = decodeProfile(bytes);
    expect(back).toEqual(profile);
    back.heads.forEach((h, i) => {
      const original = profile.heads[i]!;
      expect(Buffer.from(h.matrix.buffer, h.matrix.byteOffset, h.matrix.byteLength).equals(Buffer.from(original.matrix.buffer, original.matrix.byteOffset, original.matrix.byteLength))).toBe(true);
      expect(h.rates[2]).toBeInstanceOf(Uint8Array);
    });
    expect(Buffer.compare(encodeProfile(back), bytes)).toBe(0);
    expect(bytes.length % 4).toBe(0);
    expect(new TextDecoder().decode(bytes.subarray(0, 4))).toBe("NQTP");
  });

  it("decodes from a Buffer at an odd byte offset", () => {
    const shifted = Buffer.alloc(bytes.length + 1);
    shifted.set(bytes, 1);
    expect(decodeProfile(shifted.subarray(1))).toEqual(profile);
  });

  it("refuses a wrong magic, an unknown version, a damaged byte", () => {
    const wrongMagic = bytes.slice();
    wrongMagic[0] = "X".charCodeAt(0);
    expectCode(() => decodeProfile(wrongMagic), "CORRUPT_DATA", /not a nexusquant profile/i);
    expectCode(() => decodeProfile(new Uint8Array(0)), "CORRUPT_DATA", /not a nexusquant profile/i);

    const newer = bytes.slice();
    new DataView(newer.buffer).setUint32(4, 2, true);
    expectCode(() => decodeProfile(newer), "CORRUPT_DATA", /newer nexusquant; re-run calibrate or upgrade/);
    expectCode(() => decodeProfile(resealed(newer)), "CORRUPT_DATA", /newer nexusquant/);

    for (const at of [12, 40, bytes.length - 200, bytes.length - 5, bytes.length - 1]) {
      const flipped = bytes.slice();
      flipped[at] ^= 0x10;
      expectCode(() => decodeProfile(flipped), "CORRUPT_DATA", /CRC-32/);
    }
  });

  it("refuses a truncated file at every kind of offset", () => {
    const jsonEnd = 12 + new DataView(bytes.buffer).getUint32(8, true);
    for (const length of [3, 4, 8, 11, 15, 20, jsonEnd - 1, jsonEnd + 2, jsonEnd + 100, bytes.length - 4, bytes.length - 1]) {
      expectCode(() => decodeProfile(bytes.subarray(0, length)), "CORRUPT_DATA", length < 4 ? /not a nexusquant profile/i : /truncated/);
    }
  });

  it("refuses sizes that disagree, before allocating what the header claims", () => {
    const hugeJson = bytes.slice();
    new DataView(hugeJson.buffer).setUint32(8, 0xfffffff0, true);
    expectCode(() => decodeProfile(hugeJson), "CORRUPT_DATA", /announces 4294967280 bytes of JSON/);

    const trailing = new Uint8Array(bytes.length + 8);
    trailing.set(bytes.subarray(0, bytes.length - 4));
    expectCode(() => decodeProfile(resealed(trailing)), "CORRUPT_DATA", /8 bytes more than its header describes/);
  });

  it("refuses an invalid JSON header and invalid content behind a correct checksum", () => {
    const badJson = bytes.slice();
    badJson[12] = "[".charCodeAt(0) + 1; // "\\" instead of "{"
    expectCode(() => decodeProfile(badJson), "CORRUPT_DATA", /CRC-32/);
    expectCode(() => decodeProfile(resealed(badJson)), "CORRUPT_DATA", /invalid JSON header/);

    // A rate byte of 5 (no such code) in the first tensor's rates (the 1-bit budget's come first): validateProfile's message, as CORRUPT_DATA.
    const d = 16;
    const jsonEnd = 12 + new DataView(bytes.buffer).getUint32(8, true);
    const payload = Math.ceil(jsonEnd / 4) * 4;
    const badRate = bytes.slice();
    badRate[payload + 4 * (d + d * d + d / 8)] = 5;
    expectCode(() => decodeProfile(resealed(badRate)), "CORRUPT_DATA", /holds invalid data: .*rates\[1\]\[0\]/);
  });

  it("writes atomically and reads back; a read error names the path", async () => {
    const dir = await mkdtemp(join(tmpdir(), "nq-profile-"));
    try {
      const path = join(dir, PROFILE_FILE_NAME);
      await writeProfile(path, profile);
      await writeProfile(path, profile); // over an existing file
      expect(await readdir(dir)).toEqual([PROFILE_FILE_NAME]);
      expect(await readProfile(path)).toEqual(profile);
      expect(Buffer.compare(await readFile(path), bytes)).toBe(0);
      await writeFile(path, bytes.subarray(0, 100));
      const e = await rejectionOf(readProfile(path));
      expect(e.code).toBe("CORRUPT_DATA");
      expect(e.message).toContain(path);
      await expect(writeProfile(join(dir, "missing", PROFILE_FILE_NAME), profile)).rejects.toThrow(/ENOENT/);
      expect(await readdir(dir)).toEqual([PROFILE_FILE_NAME]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("profile checks", () => {
  const profile = makeProfile();

  it("headTransform picks ((layer * kvHeads + head) * 2 + kv)", () => {
    expect(headTransform(profile, 1, 0, 1)).toBe(profile.heads[5]);
    expect(headTransform(profile, 0, 1, 0)).toBe(profile.heads[2]);
    expectCode(() => headTransform(profile, 2, 0, 0), "INVALID_ARGUMENT", /layer/);
    expectCode(() => headTransform(profile, 0, 0, 3 as never), "INVALID_ARGUMENT", /kv/);
  });

  it("checkProfileFor names the field that differs and what to run", () => {
    const model = { fingerprint: "sha256:abc", layers: 2, kvHeads: 2, headDim: 16 };
    expect(() => checkProfileFor(profile, model)).not.toThrow();
    for (const [field, value] of [["fingerprint", "sha256:other"], ["layers", 3], ["kvHeads", 1], ["headDim", 64]] as const) {
      expectCode(() => checkProfileFor(profile, { ...model, [field]: value }), "PROFILE_MISMATCH", new RegExp(`its ${field} is .*nexusquant calibrate DIR`));
    }
  });

  it("validateProfile refuses each kind of bad field", () => {
    const bad = (edit: (p: TransformProfile) => void, message: RegExp): void => {
      const p = decodeProfile(encodeProfile(profile)); // a deep copy
      edit(p);
      expectCode(() => validateProfile(p), "INVALID_ARGUMENT", message);
    };
    bad((p) => ((p as { version: number }).version = 2), /profile\.version/);
    bad((p) => (p.model.headDim = 12), /headDim/);
    bad((p) => p.heads.pop(), /8 transforms/);
    bad((p) => (p.heads[1]!.mean = new Float32Array(15)), /heads\[1\]\.mean/);
    bad((p) => (p.heads[1]!.mean[3] = NaN), /heads\[1\]\.mean\[3\]/);
    bad((p) => (p.heads[2]!.bandRms[0] = 0), /bandRms\[0\]/);
    bad((p) => (p.heads[0]!.matrix[5] += 0.01), /not orthonormal/);
    bad((p) => (p.heads[0]!.rates[3][0] = 5), /rates\[3\]\[0\]/);
    bad((p) => (p.heads[0]!.rates[4][0] = 0), /summing to 2 bands \* 4 bits = 8 .* summing to 4/);
    bad((p) => ((p.heads[0]!.calibrated as Record<number, unknown>)[2] = "yes"), /calibrated\[2\]/);
    bad((p) => ((p.heads[0]!.predictedNmse[4] as { flat: number }).flat = -1), /predictedNmse\[4\]\.flat/);
    bad((p) => (p.calibration.seed = 2 ** 32), /seed/);
    bad((p) => ((p.model as { fingerprint: unknown }).fingerprint = 5), /fingerprint/);
    expectCode(() => encodeProfile({ ...profile, heads: [] }), "INVALID_ARGUMENT", /profile\.heads/);
  });
});

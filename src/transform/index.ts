// Transform coding (issue 26): a calibrated basis and bit allocation per (layer, KV head, K|V), and
// the versioned profile file that carries them to the native encoder. README.md has the method.
export { GROUP_NMSE, TRANSFORM_RATES, ALLOCATION_RATES, TRANSFORM_BUDGETS, type TransformRate, type TransformBudget } from "./codec-distortion.js";
export { symmetricEigen, orthonormalityError, hadamard, identity, MAX_EIGEN_DIM, type SymmetricEigen } from "./linalg.js";
export { GROUP_SIZE, bandSigns, bandTransform } from "./band-transform.js";
export { allocateRates, predictCalibratedNmse, predictFlatNmse, calibratedPays, GUARD_MIN_GAIN_DB } from "./allocation.js";
export {
  TransformCalibrator,
  DEFAULT_TRANSFORM_SEED,
  MIN_VECTORS_PER_DIM,
  BAND_RMS_FLOOR_FRACTION,
  BAND_RMS_FLOOR_OF_DATA,
  BAND_RMS_ABSOLUTE_FLOOR,
  type TransformCalibratorOptions,
  type FinishOptions,
} from "./calibrator.js";
export {
  TRANSFORM_PROFILE_VERSION,
  MATRIX_ORTHONORMALITY_TOLERANCE,
  buildTransformProfile,
  headIndex,
  headTransform,
  validateProfile,
  validateProfileOnce,
  checkProfileFor,
  checkProfileShape,
  type HeadTensorTransform,
  type TransformProfile,
  type TransformProfileHeads,
  type TransformModelIdentity,
} from "./profile.js";
export { PROFILE_FILE_NAME, encodeProfile, decodeProfile, writeProfile, readProfile } from "./profile-file.js";

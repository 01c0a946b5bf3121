// Rotation of head vectors before quantization: a seeded random sign flip followed by a normalized
// fast Walsh-Hadamard transform (block-diagonal over the binary expansion of headDim, see
// nq::e8::hadamardBlocks). The transform is orthonormal and its own inverse, so it preserves norms
// and dot products: attention can work on rotated queries and rotated (decoded) keys.
#pragma once
#include <cstddef>
#include <cstdint>

namespace nq {

// The sign pattern for (seed, headDim): +1/-1 per element, from nq::e8::rotationSign.
void rotationSigns(uint32_t seed, int headDim, float* signs);

// In-place normalized Walsh-Hadamard transform of one head vector (block-diagonal for headDim not a
// power of two). headDim must be a positive multiple of 8.
void hadamardTransform(float* v, int headDim);

// x -> H (D x) and its inverse x -> D (H x), with D = diag(signs); signs == nullptr means no flip.
void rotateForward(float* v, int headDim, const float* signs);
void rotateInverse(float* v, int headDim, const float* signs);

}  // namespace nq

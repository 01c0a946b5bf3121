// NativeTransform: a cache-independent handle of calibrated transform tables (cache/transform_tables.h).
// One is built per (profile, key bits, value bits) and shared by every cache built with it: the tables
// are model data, held once per process like the weights, not once per conversation.
#pragma once
#include <napi.h>

#include <memory>

#include "cache/transform_tables.h"

namespace nq {

// The tables of a NativeTransform instance (INVALID_ARGUMENT for anything else).
std::shared_ptr<const TransformTables> transformTablesOf(Napi::Env env, const Napi::Value& v);

}  // namespace nq

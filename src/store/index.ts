/**
 * nexusquant/store: conversation states that move between processes and machines. A state is what
 * `await lm.saveState()` returns (format: docs/state.md); it resumes with `withNexusQuant(model, {
 * state })` or `lm.restoreState(state)`. The stores keep states under keys (one small interface,
 * StateStore); the prefix cache shares the state of a document between conversations.
 */
export type { StateStore, PutOptions } from "./state-store.js";
export { MAX_KEY_LENGTH } from "./state-store.js";
export { FileStateStore, type FileStateStoreOptions } from "./file-store.js";
export { RedisStateStore, type RedisStateStoreOptions, type RedisClientLike } from "./redis-store.js";
export { PrefixCache, type PrefixCacheOptions, type PrefillResult, type PrefixHandle } from "./prefix-cache.js";
export { decodeConversationState, STATE_FORMAT_VERSION, STATE_MAGIC } from "../integrations/conversation-state.js";
export type { SavedConversation, StateKind, EngineConversation, NativeEngineSnapshot } from "../integrations/conversation-state.js";
export type { ModelFingerprint } from "../model/fingerprint.js";

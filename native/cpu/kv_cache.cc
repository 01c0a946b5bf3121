#include "cpu/kv_cache.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <string>

#include "cpu/attention.h"
#include "cpu/codec.h"
#include "cpu/nq_error.h"
#include "cpu/parallel.h"
#include "cpu/scratch.h"
#include "nq_half.h"

namespace nq {
namespace {

// ---- the codec, as the cache uses it --------------------------------------------------------------

void encodeRows(const CacheOptions& o, int bits, const float* rows, size_t n, uint8_t* codes, uint16_t* scales) {
  const CodecParams p{static_cast<int>(o.headDim), bits, true, o.seed};
  const EncodeResult r = encodeF32(p, rows, 0, n, codes, scales);
  if (r.status == Status::NonFinite) throw NqError("INVALID_DATA", "non-finite value in KV row " + std::to_string(r.badVector));
  if (r.status != Status::Ok) throw NqError("NATIVE_ERROR", "encode failed");
}

// rotate=false leaves the rows in the rotated domain: scale * lattice point, what attention dots with.
void decodeRows(const CacheOptions& o, int bits, const uint8_t* codes, const uint16_t* scales, size_t n, bool rotate, float* out) {
  const CodecParams p{static_cast<int>(o.headDim), bits, rotate, o.seed};
  if (decodeF32(p, codes, scales, 0, n, out) != Status::Ok) throw NqError("NATIVE_ERROR", "decode failed");
}

// Keys and values share one rotation (same seed), so one rotated query serves every key.
void rotateIn(const CacheOptions& o, float* v) { rotateVector(CodecParams{static_cast<int>(o.headDim), 2, true, o.seed}, v); }
void rotateOut(const CacheOptions& o, float* v) { unrotateVector(CodecParams{static_cast<int>(o.headDim), 2, true, o.seed}, v); }

// ---- small helpers -----------------------------------------------------------------------------

using format::PageHeader;

CategoryBytes pageSplit(const format::PageOffsets& off) {
  CategoryBytes s{};
  s[static_cast<int>(MemCategory::Headers)] = format::kPageHeaderBytes;
  s[static_cast<int>(MemCategory::Codes)] = off.keyScales - off.keyCodes;
  s[static_cast<int>(MemCategory::Scales)] = off.positions - off.keyScales;
  s[static_cast<int>(MemCategory::Positions)] = off.end - off.positions;
  return s;
}

[[noreturn]] void oom(const char* what, size_t bytes) {
  throw NqError("OUT_OF_MEMORY", std::string("could not allocate ") + std::to_string(bytes) + " bytes for " + what + ": the limit was " +
                                     allocationFailureReason() + "; dispose caches, raise the limit or use a smaller context");
}

}  // namespace

KvCache::KvCache(const CacheOptions& o) : o_(o) {
  off_ = format::pageOffsets(o.kvHeads, o.headDim, o.spec);
  pageBytes_ = format::pageBytes(o.kvHeads, o.headDim, o.spec);
  kcBytes_ = format::codeBytesPerVector(o.headDim, o.spec.keyBits);
  vcBytes_ = format::codeBytesPerVector(o.headDim, o.spec.valueBits);
  stores_.resize(o.batch * o.layers);
  if (o.ropeTheta > 0)
    for (size_t i = 0; i < o.headDim / 2; ++i) invFreq_.push_back(std::pow(o.ropeTheta, -2.0 * static_cast<double>(i) / static_cast<double>(o.headDim)));
}

void KvCache::rope(float* row, int64_t position, bool inverse) const {
  const size_t half = o_.headDim / 2;
  const double p = inverse ? -static_cast<double>(position) : static_cast<double>(position);
  for (size_t i = 0; i < half; ++i) {
    const double angle = p * invFreq_[i];
    const double c = std::cos(angle), sn = std::sin(angle);
    const double a = row[i], b = row[i + half];
    row[i] = static_cast<float>(a * c - b * sn);
    row[i + half] = static_cast<float>(b * c + a * sn);
  }
}

void KvCache::decodeKeys(const Store& s, size_t head, size_t begin, size_t end, float* out) const {
  decodeSlots(s, true, head, begin, end, true, out);
  if (o_.ropeTheta > 0)
    for (size_t t = begin; t < end; ++t) rope(out + (t - begin) * o_.headDim, slotPosition(s, head, t), false);
}

HostBuffer KvCache::newPage(size_t seq, size_t layer, size_t index) const {
  HostBuffer page;
  if (!page.allocate(pageBytes_, pageSplit(off_))) oom("a cache page", pageBytes_);
  std::memset(page.data(), 0, pageBytes_);  // unused slots of the last page are serialized: keep them defined
  PageHeader h{0, static_cast<uint32_t>(layer), static_cast<uint32_t>(seq), static_cast<uint32_t>(index)};
  std::memcpy(page.data(), &h, sizeof h);
  return page;
}

int32_t KvCache::slotPosition(const Store& s, size_t head, size_t slot) const {
  if (!format::storesPositions(o_.spec)) return static_cast<int32_t>(slot);  // nothing is ever evicted
  const size_t P = static_cast<size_t>(o_.spec.pageTokens);
  const uint8_t* page = s.pages[slot / P].data();
  int32_t pos;
  std::memcpy(&pos, page + off_.positions + (head * P + slot % P) * sizeof(int32_t), sizeof pos);
  return pos;
}

void KvCache::decodeSlots(const Store& s, bool key, size_t head, size_t begin, size_t end, bool rotate, float* out) const {
  const size_t P = static_cast<size_t>(o_.spec.pageTokens);
  const int bits = key ? o_.spec.keyBits : o_.spec.valueBits;
  const size_t cb = key ? kcBytes_ : vcBytes_;
  const size_t codesOff = key ? off_.keyCodes : off_.valueCodes;
  const size_t scalesOff = key ? off_.keyScales : off_.valueScales;
  for (size_t t = begin; t < end;) {
    const size_t page = t / P, j = t % P, n = std::min(end - t, P - j);
    const uint8_t* base = s.pages[page].data();
    const uint8_t* codes = base + codesOff + (head * P + j) * cb;
    const uint16_t* scales = reinterpret_cast<const uint16_t*>(base + scalesOff) + head * P + j;
    decodeRows(o_, bits, codes, scales, n, rotate, out + (t - begin) * o_.headDim);
    t += n;
  }
}

void KvCache::decodeSlotsF16(const Store& s, bool key, size_t head, size_t begin, size_t end, uint16_t* out) const {
  const size_t P = static_cast<size_t>(o_.spec.pageTokens);
  const int bits = key ? o_.spec.keyBits : o_.spec.valueBits;
  const size_t cb = key ? kcBytes_ : vcBytes_;
  const CodecParams p{static_cast<int>(o_.headDim), bits, true, o_.seed};
  for (size_t t = begin; t < end;) {
    const size_t page = t / P, j = t % P, n = std::min(end - t, P - j);
    const uint8_t* base = s.pages[page].data();
    const uint8_t* codes = base + (key ? off_.keyCodes : off_.valueCodes) + (head * P + j) * cb;
    const uint16_t* scales = reinterpret_cast<const uint16_t*>(base + (key ? off_.keyScales : off_.valueScales)) + head * P + j;
    if (decodeF16(p, codes, scales, 0, n, out + (t - begin) * o_.headDim) != Status::Ok) throw NqError("NATIVE_ERROR", "decode failed");
    t += n;
  }
}

// ---- residual ------------------------------------------------------------------------------------

void KvCache::setResidualCapacity(Store& s, size_t cap) {
  const size_t H = o_.kvHeads, d = o_.headDim;
  const size_t bytes = 2 * H * cap * d * sizeof(uint16_t);
  HostBuffer next;
  if (bytes > 0 && !next.allocate(bytes, oneCategory(MemCategory::Residual, bytes))) oom("the FP16 residual window", bytes);
  const size_t keep = std::min(s.residualCount, cap);
  for (size_t kv = 0; kv < 2; ++kv)
    for (size_t h = 0; h < H; ++h)
      if (keep > 0)
        std::memcpy(next.data() + ((kv * H + h) * cap) * d * 2, s.residual.data() + ((kv * H + h) * s.residualCap) * d * 2, keep * d * 2);
  s.residual = std::move(next);
  s.residualCap = cap;
  s.residualCount = keep;
}

void KvCache::growResidual(Store& s, size_t minCap) {
  if (minCap <= s.residualCap) return;
  // Grow by a quarter (not double): before the first compress() the residual is the whole FP16 cache
  // (preset "none"), and doubling would hold up to 2x the bytes it needs; amortized copying stays O(n).
  // No floor: a few tokens get a few slots, so an uncompressed cache never holds more than 1.25x FP16.
  setResidualCapacity(s, std::max(s.residualCap + s.residualCap / 4, minCap));
}

void KvCache::ensureAccumulated(Store& s, size_t slots) {
  if (o_.scorer != Scorer::Accumulated || slots <= s.accCap) return;
  const size_t H = o_.kvHeads;
  size_t cap = std::max<size_t>(s.accCap * 2, 64);
  while (cap < slots) cap *= 2;
  HostBuffer next;
  const size_t bytes = H * cap * sizeof(float);
  if (!next.allocate(bytes, oneCategory(MemCategory::Scratch, bytes))) oom("accumulated attention scores", bytes);
  std::memset(next.data(), 0, bytes);
  for (size_t h = 0; h < H && s.accCap > 0; ++h)
    std::memcpy(next.data() + h * cap * 4, s.accumulated.data() + h * s.accCap * 4, s.accCap * 4);
  s.accumulated = std::move(next);
  s.accCap = cap;
}

template <typename T>
void KvCache::appendImpl(size_t seq, size_t layer, const T* k, const T* v, size_t count) {
  if (seq >= o_.batch) throw NqError("INVALID_ARGUMENT", "sequence " + std::to_string(seq) + " is out of range [0, " + std::to_string(o_.batch) + ")");
  if (layer >= o_.layers) throw NqError("INVALID_ARGUMENT", "layer " + std::to_string(layer) + " is out of range [0, " + std::to_string(o_.layers) + ")");
  const size_t H = o_.kvHeads, d = o_.headDim, n = H * count * d;
  // Check everything before touching state: a bad append leaves the cache as it was.
  for (size_t i = 0; i < n; ++i) {
    const bool bad = [&] {
      if constexpr (std::is_same_v<T, float>) return !std::isfinite(k[i]) || !std::isfinite(v[i]) || std::fabs(k[i]) > 65504.f || std::fabs(v[i]) > 65504.f;
      else return halfIsNonFinite(k[i]) || halfIsNonFinite(v[i]);
    }();
    if (bad) {
      const size_t head = i / (count * d), token = (i / d) % count;
      throw NqError("INVALID_DATA", "keys/values hold a non-finite value or one beyond the FP16 range (+-65504) at head " + std::to_string(head) +
                                        ", token " + std::to_string(token) + " of this append; the cache was not changed");
    }
  }
  Store& s = store(seq, layer);
  size_t done = 0;
  while (done < count) {
    size_t room;
    const size_t window = static_cast<size_t>(o_.spec.residualWindow);
    if (!s.compressedOnce) {
      growResidual(s, s.residualCount + (count - done));
      room = count - done;
    } else if (s.pages.empty()) {
      // A page-less store keeps its tokens in FP16 until paging pays (flushResidual, at the window or
      // the next compress), its residual growing by a quarter (at most 1.25x their bytes). It fills up
      // to the window, then takes one token at a time, so the flush below pages it as soon as a page
      // pays, and a long append after a short compressed prompt still goes to pages window by window.
      room = s.residualCount < window ? std::min(count - done, window - s.residualCount) : 1;
      growResidual(s, s.residualCount + room);
    } else if (window == 0) {
      setResidualCapacity(s, count - done);  // no residual window: quantize straight away
      room = count - done;
    } else {
      // The window grows with the tokens waiting in it (powers of two up to its size), so a short
      // prompt's compressed cache does not carry a whole empty FP16 window.
      const size_t cap = format::residualCapacity(std::min(window, s.residualCount + (count - done)), o_.spec);
      if (cap > s.residualCap) setResidualCapacity(s, cap);
      room = s.residualCap - s.residualCount;
    }
    const size_t take = std::min(room, count - done);
    for (size_t kv = 0; kv < 2; ++kv) {
      const T* src = kv == 0 ? k : v;
      for (size_t h = 0; h < H; ++h) {
        uint16_t* dst = reinterpret_cast<uint16_t*>(s.residual.data()) + ((kv * H + h) * s.residualCap + s.residualCount) * d;
        const T* row = src + (h * count + done) * d;
        for (size_t i = 0; i < take * d; ++i) {
          if constexpr (std::is_same_v<T, float>) dst[i] = floatToHalf(row[i]);
          else dst[i] = row[i];
        }
      }
    }
    s.residualCount += take;
    s.appended += take;
    done += take;
    ensureAccumulated(s, s.compressed + s.residualCount);
    if (s.compressedOnce && s.residualCount >= window) {
      flushResidual(s, layer, seq, /*evictToBudget=*/true);
      // Flushed: back to at most the window (a page-less store may have grown past it, see above).
      if (s.residualCount == 0 && s.residualCap > window) setResidualCapacity(s, window);
    }
  }
}

void KvCache::append(size_t seq, size_t layer, const float* k, const float* v, size_t T) { appendImpl(seq, layer, k, v, T); }
void KvCache::appendF16(size_t seq, size_t layer, const uint16_t* k, const uint16_t* v, size_t T) { appendImpl(seq, layer, k, v, T); }

// Quantizes the residual into new page slots; in budget mode then evicts down to the budget. A
// page-less store whose tokens would cost more as pages than in FP16 keeps them in the residual
// (format::pagingPays): that is what holds a short prompt's ratio at >= 1.
void KvCache::flushResidual(Store& s, size_t layer, size_t seq, bool evictToBudget) {
  const size_t P = static_cast<size_t>(o_.spec.pageTokens), H = o_.kvHeads, d = o_.headDim;
  const size_t n = s.residualCount;
  if (evictToBudget && o_.budgetTokens > 0 && s.compressed + n > o_.budgetTokens) {
    compressStore(s, seq, layer, nullptr, 0, 0);
    return;
  }
  if (s.pages.empty() && !format::pagingPays(H, d, o_.spec, n)) return;
  const size_t first = s.compressed;
  while (s.pages.size() * P < first + n) s.pages.push_back(newPage(seq, layer, s.pages.size()));
  // Heads are independent: quantize them in parallel (each worker has its own row buffer).
  parallelFor(2 * H, 1, [&](size_t b, size_t e) {
    Scratch<float> rows(n * d);
    for (size_t job = b; job < e; ++job) {
      const size_t kv = job / H, h = job % H;
      const bool key = kv == 0;
      const int bits = key ? o_.spec.keyBits : o_.spec.valueBits;
      const size_t cb = key ? kcBytes_ : vcBytes_;
      const uint16_t* src = reinterpret_cast<const uint16_t*>(s.residual.data()) + ((kv * H + h) * s.residualCap) * d;
      for (size_t i = 0; i < n * d; ++i) rows[i] = halfToFloat(src[i]);
      if (key && o_.ropeTheta > 0)
        for (size_t t = 0; t < n; ++t) rope(rows.data() + t * d, static_cast<int64_t>(s.appended - n + t), true);
      for (size_t t = 0; t < n;) {
        const size_t slot = first + t, page = slot / P, j = slot % P, m = std::min(n - t, P - j);
        uint8_t* base = s.pages[page].data();
        encodeRows(o_, bits, rows.data() + t * d, m, base + (key ? off_.keyCodes : off_.valueCodes) + (h * P + j) * cb,
                   reinterpret_cast<uint16_t*>(base + (key ? off_.keyScales : off_.valueScales)) + h * P + j);
        if (key && format::storesPositions(o_.spec)) {
          int32_t* pos = reinterpret_cast<int32_t*>(base + off_.positions) + h * P + j;
          for (size_t i = 0; i < m; ++i) pos[i] = static_cast<int32_t>(s.appended - n + t + i);
        }
        t += m;
      }
    }
  });
  s.compressed += n;
  for (size_t p = 0; p < s.pages.size(); ++p) {
    PageHeader* hdr = reinterpret_cast<PageHeader*>(s.pages[p].data());
    hdr->slotsUsed = static_cast<uint32_t>(std::min(P, s.compressed > p * P ? s.compressed - p * P : 0));
  }
  s.residualCount = 0;  // accumulated scores keep their slot order: residual slots became page slots
}

// ---- compress: score -> evict -> quantize --------------------------------------------------------

void KvCache::compress(size_t seq, long layer, const std::vector<const float*>* observed, size_t queryHeads, size_t observedWindow) {
  if (seq >= o_.batch) throw NqError("INVALID_ARGUMENT", "sequence " + std::to_string(seq) + " is out of range");
  if (layer >= static_cast<long>(o_.layers)) throw NqError("INVALID_ARGUMENT", "layer " + std::to_string(layer) + " is out of range");
  for (size_t l = layer < 0 ? 0 : static_cast<size_t>(layer); l < (layer < 0 ? o_.layers : static_cast<size_t>(layer) + 1); ++l) {
    const float* q = observed && l < observed->size() ? (*observed)[l] : nullptr;
    compressStore(store(seq, l), seq, l, q, queryHeads, observedWindow);
  }
}

void KvCache::compressStore(Store& s, size_t seq, size_t layer, const float* observed, size_t queryHeads, size_t observedWindow) {
  const size_t P = static_cast<size_t>(o_.spec.pageTokens), H = o_.kvHeads, d = o_.headDim;
  const size_t nc = s.compressed, nr = s.residualCount, total = nc + nr;
  size_t target = std::min(total, format::keptTokenCount(s.appended, o_.spec));
  if (o_.budgetTokens > 0) target = std::min(target, o_.budgetTokens);

  if (target == total) {  // nothing to evict: quantize the residual onto the pages
    s.compressedOnce = true;
    if (nr > 0) flushResidual(s, layer, seq, /*evictToBudget=*/false);  // already within budget
    // Empty now (appends grow it again, format::residualCapacity), or holding the tokens of a store
    // too short for paging to pay: then trimmed to exactly them, so it holds their FP16 bytes.
    setResidualCapacity(s, s.residualCount);
    return;
  }

  // 1. Scores per head over all held tokens (pages first, then the residual, in order).
  Scratch<float> scores(H * total);
  Scratch<int32_t> positions(H * total);
  const size_t firstResidualPos = s.appended - nr;
  for (size_t h = 0; h < H; ++h) {
    for (size_t t = 0; t < nc; ++t) positions[h * total + t] = slotPosition(s, h, t);
    for (size_t r = 0; r < nr; ++r) positions[h * total + nc + r] = static_cast<int32_t>(firstResidualPos + r);
  }
  const bool needKeys = o_.scorer == Scorer::KeyNorm || o_.scorer == Scorer::KeyKey || o_.scorer == Scorer::Observed;
  parallelFor(H, 1, [&](size_t hb, size_t he) {
    Scratch<float> keys(needKeys ? total * d : 0);
    for (size_t h = hb; h < he; ++h) {
      float* sc = scores.data() + h * total;
      const ScoreShape one{1, total, d};
      if (needKeys) {
        decodeKeys(s, h, 0, nc, keys.data());
        const uint16_t* res = reinterpret_cast<const uint16_t*>(s.residual.data()) + h * s.residualCap * d;
        for (size_t i = 0; i < nr * d; ++i) keys[nc * d + i] = halfToFloat(res[i]);
      }
      switch (o_.scorer) {
        case Scorer::KeyNorm: scoreKeyNorm(one, keys.data(), sc); break;
        case Scorer::Observed:
          if (observed != nullptr) {
            const size_t group = queryHeads / H;
            scoreObserved(one, keys.data(), observed + h * group * observedWindow * d, group, observedWindow, o_.poolKernel, sc);
            break;
          }
          [[fallthrough]];  // no observation queries for this layer: fall back to key-key
        case Scorer::KeyKey: scoreKeyKey(one, keys.data(), o_.scorerWindow, sc); break;
        case Scorer::Accumulated:
          for (size_t t = 0; t < total; ++t) sc[t] = reinterpret_cast<const float*>(s.accumulated.data())[h * s.accCap + t];
          break;
        case Scorer::Random: {
          const uint64_t seed = (static_cast<uint64_t>(o_.seed) << 32) ^ (seq * 1000003ull + layer * 7919ull + h) ^ s.appended;
          scoreRandom(one, seed, sc);
          break;
        }
      }
    }
  });

  // 2. Selection per head: sinks (position < sinkTokens) and the last recentWindow held tokens are
  // protected; the rest compete on score (ties: the earlier token wins, so results are deterministic).
  std::vector<std::vector<uint32_t>> kept(H);
  const size_t recentStart = total > static_cast<size_t>(o_.spec.recentWindow) ? total - o_.spec.recentWindow : 0;
  for (size_t h = 0; h < H; ++h) {
    std::vector<uint32_t> prot, cand;
    for (size_t t = 0; t < total; ++t) {
      if (positions[h * total + t] < o_.spec.sinkTokens || t >= recentStart) prot.push_back(static_cast<uint32_t>(t));
      else cand.push_back(static_cast<uint32_t>(t));
    }
    const size_t want = target > prot.size() ? target - prot.size() : 0;
    const float* sc = scores.data() + h * total;
    auto better = [sc](uint32_t a, uint32_t b) { return sc[a] > sc[b] || (sc[a] == sc[b] && a < b); };
    if (want < cand.size()) {
      std::nth_element(cand.begin(), cand.begin() + want, cand.end(), better);
      cand.resize(want);
    }
    if (prot.size() > target) prot.resize(target);  // a budget smaller than sinks + window keeps the earliest
    kept[h] = std::move(prot);
    kept[h].insert(kept[h].end(), cand.begin(), cand.end());
    std::sort(kept[h].begin(), kept[h].end());
  }

  // 3. Quantize the residual rows (those kept land in the new pages), then build the new pages.
  Scratch<uint8_t> resKc(H * nr * kcBytes_), resVc(H * nr * vcBytes_);
  Scratch<uint16_t> resKs(H * nr), resVs(H * nr);
  if (nr > 0) {
    parallelFor(2 * H, 1, [&](size_t b, size_t e) {
      Scratch<float> rows(nr * d);
      for (size_t job = b; job < e; ++job) {
        const size_t kv = job / H, h = job % H;
        const uint16_t* src = reinterpret_cast<const uint16_t*>(s.residual.data()) + ((kv * H + h) * s.residualCap) * d;
        for (size_t i = 0; i < nr * d; ++i) rows[i] = halfToFloat(src[i]);
        if (kv == 0 && o_.ropeTheta > 0)
          for (size_t r = 0; r < nr; ++r) rope(rows.data() + r * d, static_cast<int64_t>(firstResidualPos + r), true);
        if (kv == 0) encodeRows(o_, o_.spec.keyBits, rows.data(), nr, resKc.data() + h * nr * kcBytes_, resKs.data() + h * nr);
        else encodeRows(o_, o_.spec.valueBits, rows.data(), nr, resVc.data() + h * nr * vcBytes_, resVs.data() + h * nr);
      }
    });
  }
  std::vector<HostBuffer> pages;
  const size_t newPages = (target + P - 1) / P;
  for (size_t p = 0; p < newPages; ++p) pages.push_back(newPage(seq, layer, p));
  for (size_t h = 0; h < H; ++h) {
    for (size_t t = 0; t < target; ++t) {
      const uint32_t src = kept[h][t];
      uint8_t* dst = pages[t / P].data();
      const size_t dj = h * P + t % P;
      const uint8_t *kc, *vc;
      uint16_t ks, vs;
      if (src < nc) {
        const uint8_t* sp = s.pages[src / P].data();
        const size_t sj = h * P + src % P;
        kc = sp + off_.keyCodes + sj * kcBytes_;
        vc = sp + off_.valueCodes + sj * vcBytes_;
        std::memcpy(&ks, sp + off_.keyScales + sj * 2, 2);
        std::memcpy(&vs, sp + off_.valueScales + sj * 2, 2);
      } else {
        const size_t r = src - nc;
        kc = resKc.data() + (h * nr + r) * kcBytes_;
        vc = resVc.data() + (h * nr + r) * vcBytes_;
        ks = resKs[h * nr + r];
        vs = resVs[h * nr + r];
      }
      std::memcpy(dst + off_.keyCodes + dj * kcBytes_, kc, kcBytes_);
      std::memcpy(dst + off_.valueCodes + dj * vcBytes_, vc, vcBytes_);
      std::memcpy(dst + off_.keyScales + dj * 2, &ks, 2);
      std::memcpy(dst + off_.valueScales + dj * 2, &vs, 2);
      const int32_t pos = positions[h * total + src];
      std::memcpy(dst + off_.positions + dj * 4, &pos, 4);  // eviction implies positions are stored
    }
  }
  for (size_t p = 0; p < newPages; ++p) {
    PageHeader* hdr = reinterpret_cast<PageHeader*>(pages[p].data());
    hdr->slotsUsed = static_cast<uint32_t>(std::min(P, target - p * P));
  }
  if (o_.scorer == Scorer::Accumulated) {
    float* acc = reinterpret_cast<float*>(s.accumulated.data());
    std::vector<float> row(target);
    for (size_t h = 0; h < H; ++h) {
      for (size_t t = 0; t < target; ++t) row[t] = acc[h * s.accCap + kept[h][t]];
      std::fill(acc + h * s.accCap, acc + (h + 1) * s.accCap, 0.f);
      std::copy(row.begin(), row.end(), acc + h * s.accCap);
    }
  }
  s.pages = std::move(pages);
  s.compressed = target;
  s.residualCount = 0;
  s.compressedOnce = true;
  setResidualCapacity(s, 0);  // empty now: appends grow it again (format::residualCapacity)
}

// ---- attention on codes --------------------------------------------------------------------------

namespace {

// The compressed slots of one store, read page by page: lattice points + FP16 scales, rotated domain.
// With un-RoPE'd storage the keys are decoded to the original domain (RoPE needs each position).
class CodesSource : public KvSource {
 public:
  using KeyDecoder = std::function<void(size_t head, size_t begin, size_t end, float* out)>;
  CodesSource(const std::vector<HostBuffer>& pages, size_t n, size_t P, size_t d, const format::Spec& spec, const format::PageOffsets& off,
              KeyDecoder originalKeys)
      : pages_(pages), n_(n), P_(P), d_(d), spec_(spec), off_(off), originalKeys_(std::move(originalKeys)) {
    keysRotated = !originalKeys_;
    valuesRotated = true;
    kcb_ = format::codeBytesPerVector(d, spec.keyBits);
    vcb_ = format::codeBytesPerVector(d, spec.valueBits);
  }
  size_t tokens() const override { return n_; }
  size_t blockLimit(size_t t) const override { return P_ - t % P_; }
  size_t granularity() const override { return P_; }
  void read(const AttentionOps& ops, size_t head, size_t t, size_t n, const BlockBuffers& buf, KvBlock& out) const override {
    const uint8_t* page = pages_[t / P_].data();
    const size_t slot = head * P_ + t % P_;
    const uint16_t* ks = reinterpret_cast<const uint16_t*>(page + off_.keyScales) + slot;
    const uint16_t* vs = reinterpret_cast<const uint16_t*>(page + off_.valueScales) + slot;
    if (format::storesPositions(spec_)) {
      out.positions = reinterpret_cast<const int32_t*>(page + off_.positions) + slot;
    } else {
      for (size_t i = 0; i < n; ++i) buf.positions[i] = static_cast<int32_t>(t + i);
      out.positions = buf.positions;
    }
    if (originalKeys_) {
      originalKeys_(head, t, t + n, buf.keys);
      out.keyScales = nullptr;
    } else {
      ops.decodePoints(spec_.keyBits, d_, page + off_.keyCodes + slot * kcb_, n, buf.keys);
      ops.halfToFloat(ks, n, buf.keyScales);
      out.keyScales = buf.keyScales;
    }
    ops.decodePoints(spec_.valueBits, d_, page + off_.valueCodes + slot * vcb_, n, buf.values);
    ops.halfToFloat(vs, n, buf.valueScales);
    out.keys = buf.keys;
    out.values = buf.values;
    out.valueScales = buf.valueScales;
  }

 private:
  const std::vector<HostBuffer>& pages_;
  size_t n_, P_, d_, kcb_, vcb_;
  format::Spec spec_;
  format::PageOffsets off_;
  KeyDecoder originalKeys_;
};

// The FP16 residual window [2][H][cap][d], original domain, at consecutive positions from `first`.
class ResidualSource : public KvSource {
 public:
  ResidualSource(const uint16_t* residual, size_t H, size_t cap, size_t n, size_t d, int64_t first)
      : res_(residual), H_(H), cap_(cap), n_(n), d_(d), first_(first) {}
  size_t tokens() const override { return n_; }
  void read(const AttentionOps& ops, size_t head, size_t t, size_t n, const BlockBuffers& buf, KvBlock& out) const override {
    ops.halfToFloat(res_ + (head * cap_ + t) * d_, n * d_, buf.keys);
    ops.halfToFloat(res_ + ((H_ + head) * cap_ + t) * d_, n * d_, buf.values);
    for (size_t i = 0; i < n; ++i) buf.positions[i] = static_cast<int32_t>(first_ + static_cast<int64_t>(t + i));
    out.keys = buf.keys;
    out.values = buf.values;
    out.positions = buf.positions;
  }

 private:
  const uint16_t* res_;
  size_t H_, cap_, n_, d_;
  int64_t first_;
};

}  // namespace

void KvCache::attention(size_t seq, size_t layer, const float* q, size_t qHeads, size_t nq, const int32_t* qpos, float scale, float* out) {
  if (seq >= o_.batch || layer >= o_.layers) throw NqError("INVALID_ARGUMENT", "sequence or layer out of range");
  Store& s = store(seq, layer);
  const size_t H = o_.kvHeads, d = o_.headDim;
  if (qHeads == 0 || qHeads % H != 0) throw NqError("INVALID_ARGUMENT", "query heads must be a positive multiple of the KV heads");
  if (nq == 0) return;
  const size_t nc = s.compressed, nr = s.residualCount;
  std::vector<int32_t> defaultPos;
  if (!qpos) {
    for (size_t j = 0; j < nq; ++j) defaultPos.push_back(static_cast<int32_t>(static_cast<int64_t>(s.appended) - static_cast<int64_t>(nq) + static_cast<int64_t>(j)));
    qpos = defaultPos.data();
  }
  // One rotated copy of every query: the codes' keys and values live in the rotated domain.
  Scratch<float> qRot(qHeads * nq * d);
  std::copy(q, q + qHeads * nq * d, qRot.data());
  parallelFor(qHeads * nq, 64, [&](size_t b, size_t e) {
    for (size_t i = b; i < e; ++i) rotateIn(o_, qRot.data() + i * d);
  });
  const bool unrope = o_.ropeTheta > 0;
  CodesSource codes(s.pages, nc, static_cast<size_t>(o_.spec.pageTokens), d, o_.spec, off_,
                    unrope ? CodesSource::KeyDecoder([&](size_t h, size_t b, size_t e, float* rows) { decodeKeys(s, h, b, e, rows); })
                           : CodesSource::KeyDecoder());
  ResidualSource residual(reinterpret_cast<const uint16_t*>(s.residual.data()), H, s.residualCap, nr, d,
                          static_cast<int64_t>(s.appended) - static_cast<int64_t>(nr));
  residual.slotOffset = nc;
  AttentionProblem p;
  p.kvHeads = H;
  p.group = qHeads / H;
  p.nq = nq;
  p.d = d;
  p.q = q;
  p.qRot = qRot.data();
  p.qpos = qpos;
  p.scale = scale;
  p.out = out;
  p.unrotate = [this](float* v) { rotateOut(o_, v); };
  if (o_.scorer == Scorer::Accumulated) {
    p.accumulated = reinterpret_cast<float*>(s.accumulated.data());
    p.accumulatedStride = s.accCap;
  }
  fusedAttention(attentionOps(activeIsa(), o_.headDim), p, {&codes, &residual});
}

// ---- dense view ----------------------------------------------------------------------------------

DenseKV KvCache::materialize(size_t seq, size_t layer) const {
  if (seq >= o_.batch || layer >= o_.layers) throw NqError("INVALID_ARGUMENT", "sequence or layer out of range");
  DenseKV r;
  r.tokens = tokens(seq, layer);
  r.keys.resize(o_.kvHeads * r.tokens * o_.headDim);
  r.values.resize(r.keys.size());
  r.positions.resize(o_.kvHeads * r.tokens);
  materializeInto(seq, layer, false, r.keys.data(), r.values.data(), r.positions.data());
  return r;
}

void KvCache::materializeInto(size_t seq, size_t layer, bool f16, void* keys, void* values, int32_t* positions) const {
  if (seq >= o_.batch || layer >= o_.layers) throw NqError("INVALID_ARGUMENT", "sequence or layer out of range");
  const Store& s = store(seq, layer);
  const size_t H = o_.kvHeads, d = o_.headDim, nc = s.compressed, nr = s.residualCount, n = nc + nr;
  parallelFor(2 * H, 1, [&](size_t b, size_t e) {
    for (size_t job = b; job < e; ++job) {
      const bool key = job < H;
      const size_t h = job % H;
      const uint16_t* res = reinterpret_cast<const uint16_t*>(s.residual.data()) + ((key ? 0 : H) + h) * s.residualCap * d;
      if (f16) {
        uint16_t* out = static_cast<uint16_t*>(key ? keys : values) + h * n * d;
        if (key && o_.ropeTheta > 0) {
          Scratch<float> rows(nc * d);
          decodeKeys(s, h, 0, nc, rows.data());
          for (size_t i = 0; i < nc * d; ++i) out[i] = floatToHalf(rows[i]);
        } else {
          decodeSlotsF16(s, key, h, 0, nc, out);
        }
        if (nr > 0) std::memcpy(out + nc * d, res, nr * d * sizeof(uint16_t));
      } else {
        float* out = static_cast<float*>(key ? keys : values) + h * n * d;
        if (key) decodeKeys(s, h, 0, nc, out);
        else decodeSlots(s, key, h, 0, nc, true, out);
        for (size_t i = 0; i < nr * d; ++i) out[nc * d + i] = halfToFloat(res[i]);
      }
      if (key) {
        for (size_t t = 0; t < nc; ++t) positions[h * n + t] = slotPosition(s, h, t);
        for (size_t t = 0; t < nr; ++t) positions[h * n + nc + t] = static_cast<int32_t>(s.appended - nr + t);
      }
    }
  });
}

size_t KvCache::tokens(size_t seq, size_t layer) const { return store(seq, layer).compressed + store(seq, layer).residualCount; }
size_t KvCache::appended(size_t seq, size_t layer) const { return store(seq, layer).appended; }
size_t KvCache::compressedTokens(size_t seq, size_t layer) const { return store(seq, layer).compressed; }
bool KvCache::compressed(size_t seq) const {
  for (size_t l = 0; l < o_.layers; ++l)
    if (!store(seq, l).compressedOnce) return false;
  return true;
}

CacheComponentBytes KvCache::bytes() const {
  CacheComponentBytes b;
  for (const Store& s : stores_) {
    for (const HostBuffer& p : s.pages) {
      const CategoryBytes& sp = p.split();
      b.codes += sp[static_cast<int>(MemCategory::Codes)];
      b.scales += sp[static_cast<int>(MemCategory::Scales)];
      b.positions += sp[static_cast<int>(MemCategory::Positions)];
      b.headers += sp[static_cast<int>(MemCategory::Headers)];
    }
    b.residual += s.residual.size();
    b.scratch += s.accumulated.size();
  }
  return b;
}

}  // namespace nq

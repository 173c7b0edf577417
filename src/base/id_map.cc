#include "base/id_map.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>

namespace layerfs {

IdMap IdMap::Self(uint32_t host_id) {
  IdMap m;
  m.kind_ = Kind::kSelf;
  m.self_ = host_id;
  return m;
}

Result<IdMap> IdMap::Parse(std::string_view spec, std::string_view option) {
  std::vector<uint32_t> numbers;
  size_t pos = 0;
  while (true) {
    const size_t colon = std::min(spec.find(':', pos), spec.size());
    std::string_view field = spec.substr(pos, colon - pos);
    uint64_t v = 0;
    auto [end, ec] = std::from_chars(field.data(), field.data() + field.size(), v);
    if (field.empty() || ec != std::errc() || end != field.data() + field.size() ||
        v > UINT32_MAX) {
      return Status::Invalid(fmt::format("{}={}: '{}' is not an id or a count (expected "
                                         "IMAGE:HOST:COUNT[:IMAGE:HOST:COUNT...])",
                                         option, spec, field));
    }
    numbers.push_back(static_cast<uint32_t>(v));
    if (colon == spec.size()) break;
    pos = colon + 1;
  }
  if (numbers.size() % 3 != 0) {
    return Status::Invalid(fmt::format(
        "{}={}: expected groups of three numbers, IMAGE:HOST:COUNT[:IMAGE:HOST:COUNT...]", option,
        spec));
  }
  IdMap m;
  m.kind_ = Kind::kRanges;
  for (size_t i = 0; i < numbers.size(); i += 3) {
    Range r{numbers[i], numbers[i + 1], numbers[i + 2]};
    const uint64_t image_end = uint64_t{r.image} + r.count, host_end = uint64_t{r.host} + r.count;
    if (r.count == 0 || image_end > uint64_t{UINT32_MAX} + 1 ||
        host_end > uint64_t{UINT32_MAX} + 1) {
      return Status::Invalid(fmt::format("{}={}: the range {}:{}:{} is empty or too long", option,
                                         spec, r.image, r.host, r.count));
    }
    for (const Range& o : m.ranges_) {
      const bool image_overlap = r.image < uint64_t{o.image} + o.count && o.image < image_end;
      const bool host_overlap = r.host < uint64_t{o.host} + o.count && o.host < host_end;
      if (image_overlap || host_overlap) {
        return Status::Invalid(fmt::format("{}={}: the ranges {}:{}:{} and {}:{}:{} overlap",
                                           option, spec, o.image, o.host, o.count, r.image,
                                           r.host, r.count));
      }
    }
    m.ranges_.push_back(r);
  }
  return m;
}

uint32_t IdMap::ToHostSlow(uint32_t id) const {
  if (kind_ == Kind::kSelf) return self_;
  for (const Range& r : ranges_) {
    if (id >= r.image && id - r.image < r.count) return r.host + (id - r.image);
  }
  return kOverflowId;
}

std::optional<uint32_t> IdMap::ToImage(uint32_t id) const {
  switch (kind_) {
    case Kind::kIdentity:
      return id;
    case Kind::kSelf:
      if (id == self_) return 0u;
      return std::nullopt;
    case Kind::kRanges:
      for (const Range& r : ranges_) {
        if (id >= r.host && id - r.host < r.count) return r.image + (id - r.host);
      }
      return std::nullopt;
  }
  return std::nullopt;
}

std::string IdMap::Describe() const {
  switch (kind_) {
    case Kind::kIdentity:
      return "identity";
    case Kind::kSelf:
      return fmt::format("self ({})", self_);
    case Kind::kRanges: {
      std::string s;
      for (const Range& r : ranges_) {
        s += fmt::format("{}{}:{}:{}", s.empty() ? "" : ":", r.image, r.host, r.count);
      }
      return s;
    }
  }
  return {};
}

}  // namespace layerfs

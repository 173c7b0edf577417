#include "layerfs/status.h"

#include <cstring>
#include <string>

namespace layerfs {

Status Status::FromErrno(int code, std::string_view context) {
  if (code == 0) code = EIO;
  std::string message(context);
  message += ": ";
  message += std::strerror(code);
  return Status(code, std::move(message));
}

Status Status::WithContext(std::string_view prefix) const {
  if (ok()) return *this;
  std::string message(prefix);
  message += ": ";
  message += message_;
  return Status(code_, std::move(message));
}

}  // namespace layerfs

#include "base/log.h"

#include <syslog.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <string>

namespace layerfs {
namespace {

// Process-wide logging settings: set once at start-up (and when the daemon detaches), read by
// every thread, hence atomics.
std::atomic<int> g_level{static_cast<int>(LogLevel::kWarning)};
std::atomic<bool> g_syslog{false};

}  // namespace

void SetLogLevel(LogLevel level) { g_level.store(static_cast<int>(level)); }

void LogToSyslog(std::string_view ident) {
  static std::string saved_ident;  // openlog keeps the pointer
  saved_ident = ident;
  ::openlog(saved_ident.c_str(), LOG_PID, LOG_DAEMON);
  g_syslog.store(true);
}

bool LogEnabled(LogLevel level) { return static_cast<int>(level) <= g_level.load(); }

void LogLine(LogLevel level, std::string_view message) {
  if (g_syslog.load()) {
    static constexpr int kPriority[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
    ::syslog(kPriority[static_cast<int>(level)], "%.*s", static_cast<int>(message.size()),
             message.data());
    return;
  }
  static constexpr const char* kPrefix[] = {"error: ", "warning: ", "", ""};
  std::string line = "layerfs: ";
  line += kPrefix[static_cast<int>(level)];
  line += message;
  line += '\n';
  ssize_t ignored = ::write(STDERR_FILENO, line.data(), line.size());
  (void)ignored;
}

}  // namespace layerfs

// Stand-in for the Arduino cores, for tests: every call a sketch makes on the network is recorded as one JSON
// line on stderr ({"call": ..., ...}); what it prints on Serial goes to stdout. Time is virtual (see harness.cpp).
#pragma once
#include <cstdio>
#include <string>

inline std::string kit_json(const char* text) {
  std::string out = "\"";
  for (const char* p = text ? text : ""; *p; ++p) {
    unsigned char c = (unsigned char)*p;
    if (c == '"' || c == '\\') { out += '\\'; out += (char)c; }
    else if (c < 0x20) { char buf[8]; std::snprintf(buf, sizeof buf, "\\u%04x", c); out += buf; }
    else out += (char)c;
  }
  return out + "\"";
}

inline void kit_record(const std::string& fields) {
  std::fprintf(stderr, "{%s}\n", fields.c_str());
  std::fflush(stderr);
}

// Stand-in Arduino.h for compiling kit sketches on the host (tests/unit/test_kit_firmware.py).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include "record.h"

using std::isnan;
typedef uint8_t byte;

unsigned long millis();
void delay(unsigned long ms);
long random(long low, long high);
void configTime(long gmtOffset, int daylightOffset, const char* server1, const char* server2 = nullptr,
                const char* server3 = nullptr);

class HardwareSerial {
 public:
  void begin(unsigned long baud) { kit_record("\"call\":\"Serial.begin\",\"baud\":" + std::to_string(baud)); }
  size_t print(const char* text) { return std::fputs(text, stdout), std::strlen(text); }
  size_t print(char c) { return std::fputc(c, stdout), 1; }
  size_t print(int v) { return std::printf("%d", v); }
  size_t print(long v) { return std::printf("%ld", v); }
  size_t print(unsigned long v) { return std::printf("%lu", v); }
  size_t print(double v, int digits = 2) { return std::printf("%.*f", digits, v); }
  size_t println() { return std::fputs("\r\n", stdout), 2; }  // as Arduino's Print does
  template <typename T> size_t println(T v) { size_t n = print(v); return n + println(); }
  size_t write(const uint8_t* data, size_t length) { return std::fwrite(data, 1, length, stdout); }
  void flush() { std::fflush(stdout); }
};
extern HardwareSerial Serial;

void setup();
void loop();

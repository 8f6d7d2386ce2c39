// Runs a kit sketch on the host: setup(), then loop() KIT_LOOPS times (argv[1], default 100), on a virtual
// clock that delay() and each loop pass (KIT_STEP_MS, argv[2], default 100 ms) move forward: no real waiting.
#include <cstdlib>
#include "Arduino.h"
#include "WiFi.h"

static unsigned long virtual_ms = 0;
HardwareSerial Serial;
WiFiClass WiFi;

unsigned long millis() { return virtual_ms; }
void delay(unsigned long ms) { virtual_ms += ms; }
long random(long low, long) { return low; }  // no jitter: the test's timings are exact
void configTime(long gmtOffset, int daylightOffset, const char* server1, const char*, const char*) {
  kit_record("\"call\":\"configTime\",\"gmt_offset\":" + std::to_string(gmtOffset) +
             ",\"server\":" + kit_json(server1) + ",\"daylight_offset\":" + std::to_string(daylightOffset));
}

int main(int argc, char** argv) {
  long loops = argc > 1 ? std::atol(argv[1]) : 100;
  unsigned long step = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 100;
  setup();
  for (long i = 0; i < loops; i++) {
    loop();
    virtual_ms += step;
  }
  std::fflush(stdout);
  return 0;
}

// Stand-in WiFi.h (ESP32 core): Wi-Fi is always up at once; calls are recorded.
#pragma once
#include "Arduino.h"

#define WL_CONNECTED 3
#define WL_DISCONNECTED 6
#define WIFI_STA 1

class Client {
 public:
  virtual ~Client() {}
};

class WiFiClient : public Client {};

class WiFiClass {
  int state = WL_DISCONNECTED;
 public:
  void mode(int m) { kit_record("\"call\":\"WiFi.mode\",\"mode\":" + std::to_string(m)); }
  void begin(const char* ssid, const char* password) {
    kit_record("\"call\":\"WiFi.begin\",\"ssid\":" + kit_json(ssid) + ",\"password\":" + kit_json(password));
    state = WL_CONNECTED;
  }
  int status() { return state; }
};
extern WiFiClass WiFi;
